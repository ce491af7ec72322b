"""UNet meta-architecture (Ronneberger et al. 2015): stage-wise up-sampling in feature space.

From the /32 map down to full resolution, each stage up-samples features by a transposed
convolution to the channels of the encoder map of the next resolution and fuses them with it
(addition, as in the paper; concatenation as an option), then BN + ReLU. A last transposed
convolution reaches full resolution and a 1x1 convolution maps to classes. Feature-space
up-sampling is why UNet costs about four times SkipNet's GFLOPs. An encoder without a /2 map
(stride-4-first backbones) gets one stage fewer and a x4 last up-sampling.

``stage="tf"`` builds the RTSeg authors' TensorFlow stage instead (MSiam/TFSegmentation
``models/unet_mobilenet.py``, ``unet_shufflenet.py``): 1x1 convolution to the skip's channels
+ BN, a 4x4 stride-2 transposed convolution starting as a bilinear up-sampler + BN, fusion
with the skip, 1x1 convolution + BN, and no ReLU anywhere; at full resolution a 4x4
transposed convolution + BN keeps the /2 map's channels, a 1x1 convolution + BN reduces them
to ``head_channels`` (TF: the stem's, 32 for MobileNet and 24 for ShuffleNet) and dropout
(0.5 in TF) comes before the score convolution. ``head_channels`` defaults to half the /2
map's channels (at least 16) in both stages; ``dropout`` to 0 for the default stage.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from rtseg.errors import RtsegError
from rtseg.models.decoders.base import Decoder, fit_to, stride_ratio, upsampler
from rtseg.models.encoders.base import FeatureInfo, present_levels
from rtseg.models.registry import register_decoder

FUSIONS = ("add", "concat")
STAGES = ("transposed", "tf")
TF_DROPOUT = 0.5  # unet_mobilenet.py: expand5 has dropout_keep_prob=0.5


class _Stage(nn.Module):
    def __init__(self, in_channels: int, skip: FeatureInfo, factor: int, fusion: str):
        super().__init__()
        self.fusion = fusion
        self.up = upsampler(in_channels, skip.channels, factor)
        self.out_channels = skip.channels * (2 if fusion == "concat" else 1)
        self.norm = nn.BatchNorm2d(self.out_channels)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = fit_to(self.up(x), skip.shape[-2:])
        x = torch.cat([x, skip], dim=1) if self.fusion == "concat" else x + skip
        return self.act(self.norm(x))


def _conv1x1_bn(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))


class _TFStage(nn.Module):
    """TF's stage: 1x1 + BN -> bilinear-initialised transposed conv + BN -> fuse -> 1x1 + BN."""

    def __init__(self, in_channels: int, skip: FeatureInfo, factor: int, fusion: str):
        super().__init__()
        self.fusion = fusion
        self.reduce = _conv1x1_bn(in_channels, skip.channels)
        self.up = nn.Sequential(upsampler(skip.channels, skip.channels, factor, bilinear_init=True),
                                nn.BatchNorm2d(skip.channels))
        self.out_channels = skip.channels
        self.expand = _conv1x1_bn(skip.channels * (2 if fusion == "concat" else 1), skip.channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = fit_to(self.up(self.reduce(x)), skip.shape[-2:])
        x = torch.cat([x, skip], dim=1) if self.fusion == "concat" else x + skip
        return self.expand(x)


@register_decoder("unet")
class UNet(Decoder):
    def __init__(self, feature_info: Sequence[FeatureInfo], num_classes: int, fusion: str = "add",
                 stage: str = "transposed", head_channels: int | None = None, dropout: float | None = None):
        super().__init__()
        if fusion not in FUSIONS:
            raise RtsegError(f"unet fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
        if stage not in STAGES:
            raise RtsegError(f"unet stage must be one of {', '.join(STAGES)}, got {stage!r}")
        dropout = (TF_DROPOUT if stage == "tf" else 0.0) if dropout is None else dropout
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise RtsegError(f"unet dropout must be a number in [0, 1), got {dropout!r}")
        self.fusion = fusion
        self.stage = stage
        stage_cls = _TFStage if stage == "tf" else _Stage
        # A level the encoder lacks (the /2 map of ConvNeXt and most transformers) is skipped:
        # the stage above it up-samples straight to the next map that exists.
        self.levels = present_levels(feature_info)
        infos = [feature_info[level] for level in self.levels]
        stages = []
        channels = infos[-1].channels
        for deeper, skip in zip(infos[:0:-1], infos[-2::-1]):
            block = stage_cls(channels, skip, stride_ratio(deeper, skip), fusion)
            stages.append(block)
            channels = block.out_channels
        self.stages = nn.ModuleList(stages)
        # Full resolution: half the channels of the shallowest map, as cheap as the stages above it.
        head_channels = max(infos[0].channels // 2, 16) if head_channels is None else head_channels
        if isinstance(head_channels, bool) or not isinstance(head_channels, int) or head_channels < 1:
            raise RtsegError(f"unet head_channels must be a positive integer, got {head_channels!r}")
        if stage == "tf":
            self.final_up = nn.Sequential(
                upsampler(channels, channels, infos[0].stride, bilinear_init=True), nn.BatchNorm2d(channels),
                _conv1x1_bn(channels, head_channels))
        else:
            self.final_up = nn.Sequential(upsampler(channels, head_channels, infos[0].stride),
                                          nn.BatchNorm2d(head_channels), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()  # TF: element-wise tf.nn.dropout
        self.classify = nn.Conv2d(head_channels, num_classes, 1)

    # The 1x1 classifier is pointwise, so it commutes with ``fit_to``'s crop and replicate padding:
    # ``Decoder.forward`` fits its scores, and an engine can take the labels inside it.
    output_layer = "classify"

    def output_layer_input(self, features: Sequence[torch.Tensor | None], size: tuple[int, int]) -> torch.Tensor:
        """The full-resolution ``head_channels`` map that ``classify``, a 1x1 convolution, scores."""
        maps = [features[level] for level in self.levels]
        x = maps[-1]
        for stage, skip in zip(self.stages, maps[-2::-1]):
            x = stage(x, skip)
        return self.dropout(self.final_up(x))
