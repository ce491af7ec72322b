"""Convolution -> batch norm -> ReLU, the unit most real-time networks are built of.

A ``nn.Sequential`` with children named ``conv``, ``bn`` and ``relu``, so its state-dict keys
are ``conv.weight`` and ``bn.*`` (CoinCheung/BiSeNet's layout; other layouts convert onto it).
Private to this helper's networks for now: the zoo's other blocks module has its own, and
the two are to be folded into one.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn


class ConvBNReLU(nn.Sequential):
    """``kernel`` x ``kernel`` convolution, BN, optional ReLU; ``padding`` None keeps the size at stride 1."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1,
                 groups: int = 1, bias: bool = False, relu: bool = True, padding: int | None = None):
        padding = kernel // 2 if padding is None else padding
        layers = OrderedDict(
            conv=nn.Conv2d(in_channels, out_channels, kernel, stride, padding, groups=groups, bias=bias),
            bn=nn.BatchNorm2d(out_channels))
        if relu:
            layers["relu"] = nn.ReLU(inplace=True)
        super().__init__(layers)
