"""LinkNet (Chaurasia & Culurciello 2017, arXiv 1707.03718): encoder maps added back, not concatenated.

Layers follow the paper's Fig. 1-3 and Table 1 and the authors' Torch code
(github.com/e-lab/LinkNet, commit 8805ef7, ``models/model.lua``):

- decoder block (m -> n channels): 1x1 convolution to m/4, 3x3 transposed convolution (stride
  of the encoder block it mirrors) at m/4, 1x1 convolution to n, each followed by BN and ReLU;
- the output of decoder block i is added to the *input* of encoder block i, then ReLU (the
  Torch code's ``CAddTable`` + ``ReLU``);
- full-resolution output block: 3x3 stride-2 transposed convolution to 32 channels, BN, ReLU,
  3x3 convolution 32 -> 32, BN, ReLU, 2x2 stride-2 transposed convolution to the classes.

On ResNet18 the encoder blocks are ``layer1..layer4``; their inputs are the stem's max pool
(/4), ``layer1`` (/4), ``layer2`` (/8) and ``layer3`` (/16). rtseg's encoders state the
outputs at strides 2..32 (``encoders/base.py``), so here the decoder blocks run from the /32
map up the /16, /8 and /4 maps (each block's output gets the channels of the map it is added
to, and its transposed convolution the stride ratio between the two), and block 1 runs at /4
with stride 1. Block 1's bypass, the stem's pool, is rebuilt as ResNet's 3x3 stride-2 max pool
of the /2 map: exact for ResNet18 (whose pool it is) and ShuffleNet v1 (whose /4 map is that
pool). Encoders whose /2 and /4 maps differ in channels (MobileNet, VGG16) get no bypass at
block 1, as in the RTSeg authors' TensorFlow port (MSiam/TFSegmentation ``models/linknet.py``),
which adds nothing after its block 1 for any encoder; ``block1_bypass=False`` builds that port.
The /2 map is never decoded from, as in the paper. A level an encoder states as ``None`` is
skipped. The Torch and TF codes also put biases before each BN; BN cancels them, so they are
left out.

Cost at 360x640 on ResNet18 with 19 classes: 11.54M parameters (LinkNet paper Table 1: 11.5M)
and 19.5 GFLOPs as rtseg counts (2 x multiply-adds, ``torch.utils.flop_counter``), against the
paper's 21.2 "GFLOPs", which e-lab's Torch7 profiler produced (docs/fidelity.md shows that its
convention gives 20.2 for this network, 4.5 % below; the rest is unexplained).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from rtseg.errors import RtsegError
from rtseg.models.decoders.base import Decoder, fit_to, stride_ratio
from rtseg.models.encoders.base import FeatureInfo
from rtseg.models.registry import register_decoder

LEVELS = (1, 2, 3, 4)  # indices of the /4, /8, /16, /32 maps: the inputs of ResNet's four blocks
OUTPUT_CHANNELS = 32  # the output block's width (paper, Fig. 1)


def transposed_up(in_channels: int, out_channels: int, factor: int) -> nn.ConvTranspose2d:
    """LinkNet's 3x3 transposed convolution that multiplies the size by ``factor`` exactly.

    Kernel 3, padding 1 and output padding ``factor - 1`` for factors 1 and 2 (the Torch code's
    ``SpatialFullConvolution(m, m, 3, 3, s, s, 1, 1, s - 1, s - 1)``); a larger factor (an
    encoder without some level) widens the kernel to ``2 * factor - 1`` so no output is left
    without input.
    """
    kernel = max(3, 2 * factor - 1)
    return nn.ConvTranspose2d(in_channels, out_channels, kernel, stride=factor, padding=kernel // 2,
                              output_padding=factor - 1, bias=False)


def _bn_relu(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]


class DecoderBlock(nn.Module):
    """1x1 (m -> m/4), 3x3 transposed (stride ``factor``), 1x1 (m/4 -> n); BN + ReLU after each."""

    def __init__(self, in_channels: int, out_channels: int, factor: int):
        super().__init__()
        mid = max(in_channels // 4, 1)
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, mid, 1, bias=False), *_bn_relu(mid))
        self.up = nn.Sequential(transposed_up(mid, mid, factor), *_bn_relu(mid))
        self.expand = nn.Sequential(nn.Conv2d(mid, out_channels, 1, bias=False), *_bn_relu(out_channels))

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        return self.expand(fit_to(self.up(self.reduce(x)), size))


@register_decoder("linknet")
class LinkNet(Decoder):
    def __init__(self, feature_info: Sequence[FeatureInfo | None], num_classes: int, block1_bypass: bool = True):
        super().__init__()
        self.levels = [i for i in LEVELS if i < len(feature_info) and feature_info[i] is not None]
        if not self.levels:
            raise RtsegError("linknet needs at least one of the encoder's /4, /8, /16, /32 maps")
        infos = [feature_info[i] for i in self.levels]
        # blocks[k] takes level k+1's sum to level k (k = 0 is the stride-1 block 1 at the shallowest level).
        blocks = [DecoderBlock(infos[0].channels, infos[0].channels, 1)]
        for shallow, deep in zip(infos[:-1], infos[1:]):
            blocks.append(DecoderBlock(deep.channels, shallow.channels, stride_ratio(deep, shallow)))
        self.blocks = nn.ModuleList(blocks)
        stem = feature_info[0] if self.levels[0] == 1 else None
        self.block1_bypass = bool(block1_bypass and stem is not None and stem.channels == infos[0].channels
                                  and stride_ratio(infos[0], stem) == 2)
        shallowest = infos[0]
        half = max(shallowest.stride // 2, 1)  # the output block doubles twice: /4 -> /2 -> /1
        self.head = nn.Sequential(
            transposed_up(shallowest.channels, OUTPUT_CHANNELS, half), *_bn_relu(OUTPUT_CHANNELS),
            nn.Conv2d(OUTPUT_CHANNELS, OUTPUT_CHANNELS, 3, padding=1, bias=False), *_bn_relu(OUTPUT_CHANNELS),
        )
        self.classify = nn.ConvTranspose2d(OUTPUT_CHANNELS, num_classes, 2, stride=2)

    output_layer = "classify"

    def output_layer_input(self, features: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """The /2 map that ``classify``, a 2x2 stride-2 transposed convolution, turns into logits."""
        maps = [features[i] for i in self.levels]
        x = maps[-1]
        for level in range(len(maps) - 2, -1, -1):
            x = F.relu(self.blocks[level + 1](x, maps[level].shape[-2:]) + maps[level])
        if self.block1_bypass:
            # The input of ResNet's block 1: its stem's 3x3 stride-2 max pool of the /2 map.
            bypass = F.max_pool2d(features[0], 3, stride=2, padding=1)
            x = F.relu(self.blocks[0](x, bypass.shape[-2:]) + fit_to(bypass, x.shape[-2:]))
        else:
            x = self.blocks[0](x, x.shape[-2:])
        half_size = [-(-s // 2) for s in size]  # the /2 map's size, rounded up like the encoder's
        return fit_to(self.head(x), half_size)
