"""The two segmentation heads the zoo's families share (a head maps features to class logits).

* ``SegHead``: 3x3 ConvBNReLU, then a 1x1 convolution to the classes: BiSeNet's
  ``BiSeNetOutput`` (CoinCheung/BiSeNet, and STDC-Seg, which took it), PaddleSeg's
  ``SegHead`` in PP-LiteSeg. Keys ``conv.conv``/``conv.bn`` and ``classifier``.
* ``PreActivationHead``: BN -> ReLU -> 3x3 conv -> BN -> ReLU -> 1x1 conv with a bias, the
  HRNet-style ``segmenthead`` of DDRNet (``segmentation/DDRNet_23_slim.py``) and PIDNet
  (``models/model_utils.py``), under its official keys ``bn1``, ``conv1``, ``bn2``, ``conv2``.

Both leave the logits at the features' resolution: each network resizes them by its own
official rule. BiSeNet V2's segment head and Fast-SCNN's classifier are their networks' own
(booster up-sampling, dropout, depthwise-separable layers) and stay in their files.
"""

from __future__ import annotations

import torch
from torch import nn

from rtseg.models.zoo.blocks import ConvBNReLU


class SegHead(nn.Module):
    """3x3 ConvBNReLU to ``mid_channels``, then a 1x1 convolution to ``out_channels`` logits."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, bias: bool = False):
        super().__init__()
        self.conv = ConvBNReLU(in_channels, mid_channels, 3)
        self.classifier = nn.Conv2d(mid_channels, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.conv(x))


class PreActivationHead(nn.Module):
    """BN -> ReLU -> 3x3 conv -> BN -> ReLU -> 1x1 conv (with bias) to ``out_channels``."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, mid_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid_channels)
        self.conv2 = nn.Conv2d(mid_channels, out_channels, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(torch.relu(self.bn1(x)))
        return self.conv2(torch.relu(self.bn2(x)))
