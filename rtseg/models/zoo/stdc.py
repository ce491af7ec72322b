"""STDC1 and STDC2 backbones (Fan et al. 2021, "Rethinking BiSeNet For Real-time Semantic
Segmentation", CVPR, arXiv 2104.13188), shared by STDC-Seg and PP-LiteSeg.

Follows the authors' ``nets/stdcnet.py`` (github.com/MichaelFan01/STDC-Seg, commit 59ff37f):
two stride-2 3x3 ConvBNReLU (32, 64 channels), then three stages of STDC modules ("cat"
bottlenecks with four convolutions: 1x1 to C/2, 3x3 to C/4, 3x3 to C/8, 3x3 to C/8,
concatenated to C). A stage's first module halves the resolution with a 3x3 depth-wise
convolution + BN after its 1x1 (``down``) and a 3x3 stride-2 average pool of that 1x1's
output (``skip``). Channels 256, 512, 1024; STDC1 has (2, 2, 2) modules, STDC2 (4, 5, 3).
``forward`` returns the five maps at strides 2, 4, 8, 16, 32 (32, 64, 256, 512, 1024 channels).

One difference between the two official implementations decides outputs at the border:
PyTorch's ``nn.AvgPool2d`` counts the zero padding in its average, PaddlePaddle's
``nn.AvgPool2D`` (``exclusive=True``) does not; ``pool_includes_padding`` picks the one whose
weights are loaded (True for STDC-Seg's PyTorch release, False for PaddleSeg's PP-LiteSeg).

Weights: ``convert_stdc_key`` maps both official layouts (``features.<i>.conv_list.<j>...``,
``avd_layer``; PaddlePaddle's ``_mean``/``_variance``) onto ours; ``load_pretrained`` loads the
authors' ImageNet files (``STDCNet813M_73.91.tar``, ``STDCNet1446_76.47.tar``: a dict with the
weights under ``"state_dict"``; PaddleSeg's ``PP_STDCNet1/2`` ``model.pdparams`` too).

Cost (``tests/test_zoo_stdc.py``): the ImageNet classifier form (``STDCClassifier``: a 1x1
ConvBNReLU to 1024, squared, global pool, 1024x1024 fc, ReLU, 1000-way linear, as the
authors' ``forward_impl``) has the multiply-adds of the checkpoints' names, 813M (STDC1) and
1446M (STDC2) at 224x224.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from rtseg.errors import RtsegError
from rtseg.models.zoo.backbone_weights import load_backbone_weights
from rtseg.models.zoo.blocks import ConvBNReLU
from rtseg.models.zoo.pooling import global_average
from rtseg.models.zoo.release_keys import fill_batch_counts, paddle_bn_name

STDC_LAYERS = {"stdc1": (2, 2, 2), "stdc2": (4, 5, 3)}
STDC_CHANNELS = (32, 64, 256, 512, 1024)
STEM_LAYERS = 2  # the two stride-2 ConvBNReLU before the STDC stages


class STDCModule(nn.Module):
    """Four convolutions whose outputs (C/2, C/4, C/8, C/8 channels) are concatenated to C."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, pool_includes_padding: bool = True):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        c = out_channels
        self.convs = nn.ModuleList([ConvBNReLU(in_channels, c // 2, 1), ConvBNReLU(c // 2, c // 4, 3),
                                    ConvBNReLU(c // 4, c // 8, 3), ConvBNReLU(c // 8, c // 8, 3)])
        self.stride = stride
        if stride == 2:
            self.down = ConvBNReLU(c // 2, c // 2, 3, stride=2, groups=c // 2, relu=False)
            self.skip = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=pool_includes_padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.convs[0](x)
        out = self.down(first) if self.stride == 2 else first
        outputs = []
        for conv in self.convs[1:]:
            out = conv(out)
            outputs.append(out)
        if self.stride == 2:
            first = self.skip(first)
        return torch.cat([first, *outputs], dim=1)


class STDCNet(nn.Module):
    """The STDC1/STDC2 trunk: ``stages[0..4]`` give the maps at strides 2, 4, 8, 16, 32."""

    def __init__(self, variant: str = "stdc1", pool_includes_padding: bool = True):
        super().__init__()
        if variant not in STDC_LAYERS:
            raise RtsegError(f"STDC variant must be one of {sorted(STDC_LAYERS)}, got {variant!r}")
        self.variant = variant
        self.layers = STDC_LAYERS[variant]
        stages: list[nn.Module] = [ConvBNReLU(3, STDC_CHANNELS[0], 3, stride=2),
                                   ConvBNReLU(STDC_CHANNELS[0], STDC_CHANNELS[1], 3, stride=2)]
        in_channels = STDC_CHANNELS[1]
        for count, out_channels in zip(self.layers, STDC_CHANNELS[2:]):
            modules = [STDCModule(in_channels, out_channels, 2, pool_includes_padding)]
            modules += [STDCModule(out_channels, out_channels, 1, pool_includes_padding) for _ in range(count - 1)]
            stages.append(nn.Sequential(*modules))
            in_channels = out_channels
        self.stages = nn.ModuleList(stages)
        self.channels = STDC_CHANNELS
        _init_like_the_authors(self)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features

    def load_pretrained(self, pretrained: bool | str | Path | None, files: str) -> None:
        """``pretrained``: a path to the authors' ImageNet trunk ``files`` (their classifier is left
        out); their release has no download URL."""
        if pretrained:
            load_backbone_weights(self, pretrained, ("stages",), IMAGENET_CLASSIFIER,
                                  f"the {self.variant.upper()} trunk: {files}", convert=self.convert_imagenet)

    def convert_imagenet(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        converted = {convert_stdc_key(key, self.layers) or key: value for key, value in state.items()}
        return fill_batch_counts(self, converted)  # unknown keys stay as they are: loading names them


class STDCClassifier(nn.Module):
    """The authors' ImageNet classifier on an STDC trunk (``forward_impl``), to check its cost."""

    def __init__(self, variant: str = "stdc1", num_classes: int = 1000):
        super().__init__()
        self.trunk = STDCNet(variant)
        self.conv_last = ConvBNReLU(STDC_CHANNELS[-1], 1024, 1)
        self.fc = nn.Linear(1024, 1024, bias=False)
        self.linear = nn.Linear(1024, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_last(self.trunk(x)[-1]).pow(2)
        return self.linear(torch.relu(self.fc(global_average(x).flatten(1))))


def _init_like_the_authors(module: nn.Module) -> None:
    # nets/stdcnet.py init_params: Kaiming normal (fan_out) convolutions, unit BN.
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


# --- The official key layouts -------------------------------------------------------------

_FEATURE_KEY = re.compile(r"features\.(\d+)\.(.+)")
# The ImageNet head of the authors' STDCNet813/1446 and the x2..x32 aliases of ``features``
# (nn.Sequential views of the same modules, saved twice in the official state dicts).
IMAGENET_CLASSIFIER = ("conv_last", "fc", "bn", "linear", "x2", "x4", "x8", "x16", "x32")


def convert_stdc_key(key: str, layers: tuple[int, ...]) -> str | None:
    """One official STDC trunk key (``features.<i>...``) -> ours (``stages.<s>...``); None if not one."""
    match = _FEATURE_KEY.fullmatch(paddle_bn_name(key))
    if match is None:
        return None
    index, rest = int(match.group(1)), match.group(2)
    if index < STEM_LAYERS:
        return f"stages.{index}.{rest}"
    module = index - STEM_LAYERS
    for stage, count in enumerate(layers, start=STEM_LAYERS):
        if module < count:
            break
        module -= count
    else:
        return None
    rest = re.sub(r"^conv_list\.(\d+)\.", r"convs.\1.", rest)
    rest = re.sub(r"^avd_layer\.0\.", "down.conv.", rest)
    rest = re.sub(r"^avd_layer\.1\.", "down.bn.", rest)
    return f"stages.{stage}.{module}.{rest}"


def is_stdc_classifier_key(key: str) -> bool:
    return key.split(".", 1)[0] in IMAGENET_CLASSIFIER
