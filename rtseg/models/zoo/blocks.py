"""The convolution units and attention blocks today's real-time networks are built of.

* ``ConvBNReLU``: convolution (no bias unless asked), batch norm, optional ReLU, with children
  ``conv``, ``bn`` (and ``relu``), so its keys are ``conv.*`` and ``bn.*``; every official
  layout that names the three layers (CoinCheung/BiSeNet, STDC-Seg, PaddleSeg after renaming
  ``_conv``/``_batch_norm``, Tramac's Fast-SCNN after renaming its indices) converts onto it.
* ``conv_bn`` and ``bn_relu_conv``: the same layers as plain lists, for the official layouts
  that index them inside a larger ``nn.Sequential`` (``downsample.0``/``.1``, DDRNet's and
  PIDNet's ``compression3.0``, the pre-activation ``scale1.1``..``.3`` of DAPPM, BiSeNet V2's
  ``shortcut.0``..``.3``), where a ``ConvBNReLU`` would rename the keys.
* ``AttentionRefinement`` (BiSeNet's ARM) and ``FeatureFusion`` (BiSeNet's FFM), shared by
  BiSeNet v1 and STDC-Seg, which took its context path from BiSeNet.
* ``resize``: bilinear resizing with the ``align_corners`` setting stated at every call,
  because the official codes differ on it (and it decides the outputs).

Why not torchvision's ``Conv2dNormActivation``: its children are indices (``0``, ``1``,
``2``), which is none of the official layouts, so every checkpoint would need renaming.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn
from torch.nn import functional as F

from rtseg.models.zoo.pooling import global_average


class ConvBNReLU(nn.Sequential):
    """``kernel`` x ``kernel`` convolution -> BN -> ReLU (``relu=False``: no activation);
    ``padding`` None keeps the size at stride 1."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1,
                 groups: int = 1, bias: bool = False, relu: bool = True, padding: int | None = None):
        padding = kernel // 2 if padding is None else padding
        layers = OrderedDict(
            conv=nn.Conv2d(in_channels, out_channels, kernel, stride, padding, groups=groups, bias=bias),
            bn=nn.BatchNorm2d(out_channels))
        if relu:
            layers["relu"] = nn.ReLU(inplace=True)
        super().__init__(layers)


def conv_bn(in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1, groups: int = 1,
            relu: bool = False) -> list[nn.Module]:
    """Convolution (no bias, size kept at stride 1) and BN (and ReLU), as ``nn.Sequential`` entries."""
    layers = [nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False),
              nn.BatchNorm2d(out_channels)]
    return layers + [nn.ReLU(inplace=True)] if relu else layers


def bn_relu_conv(in_channels: int, out_channels: int, kernel: int = 1, groups: int = 1) -> list[nn.Module]:
    """Pre-activation BN -> ReLU -> convolution (no bias, size kept), as ``nn.Sequential`` entries."""
    return [nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, groups=groups, bias=False)]


def resize(x: torch.Tensor, size, *, align_corners: bool) -> torch.Tensor:
    """Bilinear resizing of ``x`` to ``size`` (height, width)."""
    return F.interpolate(x, size=size, mode="bilinear", align_corners=align_corners)


class AttentionRefinement(nn.Module):
    """BiSeNet's attention refinement module: a 3x3 ConvBNReLU whose output is re-weighted per
    channel by sigmoid(BN(1x1 conv(global average)))."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = ConvBNReLU(in_channels, out_channels, 3)
        self.attention = ConvBNReLU(out_channels, out_channels, 1, relu=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv(x)
        return feat * torch.sigmoid(self.attention(global_average(feat)))


class FeatureFusion(nn.Module):
    """BiSeNet's feature fusion module: concatenate (spatial, context), 1x1 ConvBNReLU, then add a
    channel-attention re-weighting of the result to itself.

    ``attention="mlp"``: the paper's two 1x1 convolutions with a ReLU between (channels / 4 in
    the middle), as STDC-Seg has it. ``attention="conv_bn"``: one 1x1 convolution and batch norm,
    as CoinCheung/BiSeNet's released BiSeNet v1 has it (changed for TensorRT fp16).
    """

    def __init__(self, in_channels: int, out_channels: int, attention: str = "mlp", reduction: int = 4):
        super().__init__()
        self.project = ConvBNReLU(in_channels, out_channels, 1)
        if attention == "mlp":
            hidden = out_channels // reduction
            self.attention = nn.Sequential(nn.Conv2d(out_channels, hidden, 1, bias=False), nn.ReLU(inplace=True),
                                           nn.Conv2d(hidden, out_channels, 1, bias=False))
        elif attention == "conv_bn":
            self.attention = ConvBNReLU(out_channels, out_channels, 1, relu=False)
        else:
            raise ValueError(f"attention must be 'mlp' or 'conv_bn', got {attention!r}")

    def forward(self, spatial: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        feat = self.project(torch.cat([spatial, context], dim=1))
        return feat + feat * torch.sigmoid(self.attention(global_average(feat)))
