"""Dilation frontend (Yu & Koltun 2016): keep resolution with dilated convolutions.

The encoder runs at output stride 8 (its last two stride-2 steps become stride 1, the layers
after them dilated by 2 and 4, ImageNet weights kept); a 1x1 convolution scores the last
map and one 16x16 stride-8 transposed convolution restores full resolution. The deep
layers run on 16x more pixels, which is where the cost goes.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from rtseg.models.decoders.base import Decoder, upsampler
from rtseg.models.encoders.base import FeatureInfo
from rtseg.models.registry import register_decoder


@register_decoder("dilation")
class DilationFrontend(Decoder):
    encoder_output_stride = 8

    def __init__(self, feature_info: Sequence[FeatureInfo], num_classes: int):
        super().__init__()
        last = feature_info[-1]
        self.score = nn.Conv2d(last.channels, num_classes, 1)
        self.up = upsampler(num_classes, num_classes, last.stride, bilinear_init=True)

    output_layer = "up"

    def output_layer_input(self, features: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        return self.score(features[-1])
