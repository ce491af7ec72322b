"""SegNet (Badrinarayanan, Kendall, Cipolla, arXiv 1511.00561), the paper's heaviest reference.

Encoder: the 13 convolutions of VGG16, each followed by BN and ReLU, in torchvision's
``vgg16_bn().features`` layout (keys ``features.N.*``), so ImageNet weights load as they do
into the grid's VGG16 encoder. Its five 2x2 max pools keep their indices. Decoder: the mirror
image, as in the authors' Caffe model (``segnet_train.prototxt``): each stage max-unpools with
the indices of the matching pool, then 3x3 convolutions with BN and ReLU (conv5_3_D ..
conv1_2_D, channels mirrored); the last one, conv1_1_D, is a 3x3 convolution to classes
without BN. Weights start from He initialisation, as in the SegNet paper.

Any input size works: pooling rounds up (``ceil_mode``, no pixel dropped) and unpooling is
told the exact size to restore, so the logits have the input's size without cropping.

Cost (checked in ``tests/test_baselines.py``): 29.45M parameters for 19 classes, against
29.46M in the ENet paper's Table 3 (Paszke et al. 2016, which measured SegNet); 286.7
GFLOPs at 360x640 (2 x multiply-adds, ``rtseg flops --model segnet --size 360x640``) against
286.03 in the RTSeg paper's Table 3, itself copied from the ENet paper's Table 3. The
remaining 0.2% is the class count of the last convolution, which neither paper states.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models.vgg import cfgs, make_layers

from rtseg.errors import RtsegError
from rtseg.normalisation import IMAGENET_MEAN, IMAGENET_STD
from rtseg.models.registry import register_model
from rtseg.models.segmentation import SegmentationNetwork
from rtseg.models.weights import fit_state_dict, read_state_dict

VGG16_CONFIG = cfgs["D"]  # 64, 64, M, 128, 128, M, 256 x3, M, 512 x3, M, 512 x3, M


def _conv_indices(features: nn.Sequential) -> list[int]:
    return [i for i, layer in enumerate(features) if isinstance(layer, nn.Conv2d)]


class SegNetEncoder(nn.Module):
    """VGG16 with BN whose max pools return indices; ``forward`` -> (x, [(indices, size)] per pool)."""

    mean = IMAGENET_MEAN
    std = IMAGENET_STD

    def __init__(self):
        super().__init__()
        self.features = make_layers(VGG16_CONFIG, batch_norm=True)
        for index, layer in enumerate(self.features):
            if isinstance(layer, nn.MaxPool2d):
                self.features[index] = nn.MaxPool2d(2, 2, ceil_mode=True, return_indices=True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Size]]]:
        pools = []
        for layer in self.features:
            if isinstance(layer, nn.MaxPool2d):
                size = x.shape[-2:]
                x, indices = layer(x)
                pools.append((indices, size))
            else:
                x = layer(x)
        return x, pools

    # --- ImageNet weights -------------------------------------------------------------
    def convert_state_dict(self, state: dict[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
        """torchvision ``vgg16_bn`` (same layout: taken as is) or ``vgg16`` (convolutions only,
        at other indices: moved to ours, BN keeps its initial values) -> our keys."""
        features = {k: v for k, v in state.items() if k.startswith("features.")}
        if not features:
            raise RtsegError(f"{source} holds no VGG16 weights: expected torchvision's vgg16_bn or "
                             "vgg16 state dict with 'features.N.*' keys")
        if any(k.endswith(".running_mean") for k in features):
            return features  # vgg16_bn: fit_state_dict checks it key by key
        with torch.device("meta"):
            plain_indices = _conv_indices(make_layers(VGG16_CONFIG, batch_norm=False))
        renamed = {f"features.{plain}.{p}": f"features.{ours}.{p}"
                   for plain, ours in zip(plain_indices, _conv_indices(self.features)) for p in ("weight", "bias")}
        foreign = sorted(set(features) - set(renamed))
        if foreign:
            shown = ", ".join(foreign[:8]) + (f", ... ({len(foreign)} in all)" if len(foreign) > 8 else "")
            raise RtsegError(f"{source} is neither a vgg16_bn nor a vgg16 state dict: unexpected keys {shown}")
        converted = {k: v for k, v in self.state_dict().items() if k not in renamed.values()}
        converted.update({renamed[k]: v for k, v in features.items()})
        return converted

    def download_state_dict(self) -> dict[str, torch.Tensor]:
        from torchvision.models import VGG16_BN_Weights

        return VGG16_BN_Weights.IMAGENET1K_V1.get_state_dict(progress=True)

    def load_pretrained(self, pretrained: bool | str | Path) -> None:
        """``True``: torchvision's ImageNet ``vgg16_bn`` (downloads); a path: a vgg16_bn or vgg16 file."""
        if pretrained is True:
            state, source = self.download_state_dict(), "torchvision's VGG16_BN ImageNet weights"
        else:
            state, source = read_state_dict(pretrained), str(pretrained)
        fit_state_dict(self, self.convert_state_dict(state, source), source)


def _conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


def _decoder_stage(channels: list[int]) -> nn.Sequential:
    layers = []
    for in_channels, out_channels in zip(channels, channels[1:]):
        layers += _conv_bn_relu(in_channels, out_channels)
    return nn.Sequential(*layers)


# Decoder stages from /32 up, channels through each: the encoder's convolutions mirrored,
# ending at conv1_2_D (64 -> 64); conv1_1_D, the classifier, follows.
DECODER_CHANNELS = ([512, 512, 512, 512], [512, 512, 512, 256], [256, 256, 256, 128], [128, 128, 64], [64, 64])


@register_model("segnet")
class SegNet(SegmentationNetwork):
    """SegNet for ``num_classes`` classes; ``pretrained`` loads VGG16 ImageNet weights into the encoder."""

    def __init__(self, num_classes: int = 19, pretrained: bool | str | Path | None = None):
        super().__init__("segnet", num_classes, SegNetEncoder.mean, SegNetEncoder.std)
        self.encoder = SegNetEncoder()
        self.decoder = nn.ModuleList(_decoder_stage(list(c)) for c in DECODER_CHANNELS)
        self.classifier = nn.Conv2d(DECODER_CHANNELS[-1][-1], num_classes, 3, padding=1)
        for module in self.modules():  # He initialisation (torchvision's VGG rule)
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
        if pretrained:
            self.encoder.load_pretrained(pretrained)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, pools = self.encoder(x)
        for stage, (indices, size) in zip(self.decoder, reversed(pools)):
            x = stage(F.max_unpool2d(x, indices, 2, 2, output_size=size))
        return self.classifier(x)
