"""LR-ASPP, Lite Reduced Atrous Spatial Pyramid Pooling (Howard et al. 2019, "Searching for
MobileNetV3", arXiv 1905.02244, Section 6.3 and Figure 10).

Two maps: the deepest (``high``) and the /8 one (``low``). The high map goes through a 1x1
convolution to 128 channels with BN and ReLU, multiplied by a squeeze-and-excitation style
attention computed from the same map (average pool, 1x1 convolution to 128, sigmoid); the
product is up-sampled bilinearly to the low map, scored by a 1x1 convolution and added to a
1x1 convolution's class scores of the low map; a bilinear up-sampling reaches the input
size. It follows torchvision's ``LRASPPHead`` (torchvision/models/segmentation/lraspp.py,
the implementation whose released weights ``lraspp_mobilenet_v3_large`` loads), including
its two departures from the paper's figure, both documented in docs/timm.md:

* the attention pools globally; the paper pools with a 49x49 kernel at stride (16, 20) on
  1024x2048 Cityscapes crops, which is nearly global there and undefined at other sizes;
* the paper's high map has stride 16 (MobileNetV3's last block dilated). The decoder takes
  the deepest map at whatever stride the encoder gives: 32 by default for every encoder,
  16 with ``output_stride=16`` for the timm backbones that dilate, which is the paper's and
  torchvision's setting. The parameters are the same either way; the cost is not.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from rtseg.models.decoders.base import Decoder
from rtseg.models.encoders.base import FeatureInfo
from rtseg.models.registry import register_decoder

LOW_LEVEL = 2  # the /8 map in feature_info
INTER_CHANNELS = 128  # the paper's and torchvision's width of the high branch


@register_decoder("lraspp")
class LRASPP(Decoder):
    def __init__(self, feature_info: Sequence[FeatureInfo | None], num_classes: int,
                 inter_channels: int = INTER_CHANNELS):
        super().__init__()
        low, high = feature_info[LOW_LEVEL], feature_info[-1]
        self.project = nn.Sequential(nn.Conv2d(high.channels, inter_channels, 1, bias=False),
                                     nn.BatchNorm2d(inter_channels), nn.ReLU(inplace=True))
        self.attention = nn.Sequential(nn.AdaptiveAvgPool2d(1),
                                       nn.Conv2d(high.channels, inter_channels, 1, bias=False), nn.Sigmoid())
        self.classify_low = nn.Conv2d(low.channels, num_classes, 1)
        self.classify_high = nn.Conv2d(inter_channels, num_classes, 1)

    def scores(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        """Class scores at the low map's resolution."""
        x = self.project(high) * self.attention(high)
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.classify_low(low) + self.classify_high(x)

    def forward(self, features: Sequence[torch.Tensor | None], size: tuple[int, int]) -> torch.Tensor:
        scores = self.scores(features[LOW_LEVEL], features[-1])
        return F.interpolate(scores, size=tuple(size), mode="bilinear", align_corners=False)
