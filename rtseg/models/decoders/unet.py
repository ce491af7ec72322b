"""UNet meta-architecture (Ronneberger et al. 2015): stage-wise up-sampling in feature space.

From the /32 map down to full resolution, each stage up-samples features by a transposed
convolution to the channels of the encoder map of the next resolution and fuses them with it
(addition, as in the paper; concatenation as an option), then BN + ReLU. A last transposed
convolution reaches full resolution and a 1x1 convolution maps to classes. Feature-space
up-sampling is why UNet costs about four times SkipNet's GFLOPs. An encoder without a /2 map
(stride-4-first backbones) gets one stage fewer and a x4 last up-sampling.
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


@register_decoder("unet")
class UNet(Decoder):
    def __init__(self, feature_info: Sequence[FeatureInfo], num_classes: int, fusion: str = "add"):
        super().__init__()
        if fusion not in FUSIONS:
            raise RtsegError(f"unet fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
        self.fusion = fusion
        # A level the encoder lacks (the /2 map of ConvNeXt and most transformers) is skipped:
        # the stage above it up-samples straight to the next map that exists.
        self.levels = present_levels(feature_info)
        infos = [feature_info[level] for level in self.levels]
        stages = []
        channels = infos[-1].channels
        for deeper, skip in zip(infos[:0:-1], infos[-2::-1]):
            stage = _Stage(channels, skip, stride_ratio(deeper, skip), fusion)
            stages.append(stage)
            channels = stage.out_channels
        self.stages = nn.ModuleList(stages)
        # Full resolution: half the channels of the shallowest map, as cheap as the stages above it.
        head_channels = max(infos[0].channels // 2, 16)
        self.final_up = nn.Sequential(upsampler(channels, head_channels, infos[0].stride),
                                      nn.BatchNorm2d(head_channels), nn.ReLU(inplace=True))
        self.classify = nn.Conv2d(head_channels, num_classes, 1)

    def forward(self, features: Sequence[torch.Tensor | None], size: tuple[int, int]) -> torch.Tensor:
        maps = [features[level] for level in self.levels]
        x = maps[-1]
        for stage, skip in zip(self.stages, maps[-2::-1]):
            x = stage(x, skip)
        return self.classify(fit_to(self.final_up(x), size))
