"""Building blocks shared by today's real-time networks (STDC-Seg, BiSeNet, PP-LiteSeg, ...).

* ``ConvBNReLU``: convolution (no bias unless asked), batch norm, optional ReLU; every zoo
  network is made of it, and its keys (``conv.*``, ``bn.*``) are what the checkpoint
  converters map onto.
* ``AttentionRefinement`` (BiSeNet's ARM) and ``FeatureFusion`` (BiSeNet's FFM), shared by
  BiSeNet v1 and STDC-Seg, which took its context path from BiSeNet.
* ``SegHead``: 3x3 ConvBNReLU then a 1x1 convolution to classes (BiSeNet's ``BiSeNetOutput``,
  PP-LiteSeg's ``SegHead``).
* ``adaptive_avg_pool2d``: adaptive average pooling written as two small matrix products, so
  that a graph exported with a free height and width pools correctly at every size.

Why our own ``adaptive_avg_pool2d``: ``torch.onnx.export(dynamo=True)`` turns
``F.adaptive_avg_pool2d`` into gathers whose indices are those of the traced size; with a
dynamic height/width the exported graph claims to accept any size but fails (or, worse, pools
the wrong windows) at every other size. The pooling matrices here are built from the input's
(symbolic) size with the same windows as PyTorch and PaddlePaddle, ``[floor(i*n/b),
ceil((i+1)*n/b))``, so the result equals ``F.adaptive_avg_pool2d`` up to float32 rounding.
"""

from __future__ import annotations

import torch
from torch import nn


class ConvBNReLU(nn.Module):
    """``conv`` -> ``bn`` -> ReLU (``relu=False``: no activation). ``padding`` None keeps the
    size at stride 1 (``dilation * (kernel_size // 2)``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: int | None = None, dilation: int = 1, groups: int = 1, bias: bool = False,
                 relu: bool = True):
        super().__init__()
        if padding is None:
            padding = dilation * (kernel_size // 2)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)))


def global_average(x: torch.Tensor) -> torch.Tensor:
    """``[N, C, H, W]`` -> ``[N, C, 1, 1]`` mean; exports as one ReduceMean at any size."""
    return x.mean(dim=(2, 3), keepdim=True)


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


class SegHead(nn.Module):
    """3x3 ConvBNReLU to ``mid_channels``, then a 1x1 convolution to ``out_channels`` logits."""

    def __init__(self, in_channels: int, mid_channels: int, out_channels: int, bias: bool = False):
        super().__init__()
        self.conv = ConvBNReLU(in_channels, mid_channels, 3)
        self.classifier = nn.Conv2d(mid_channels, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.conv(x))


def _pooling_matrix(size, bins: int, like: torch.Tensor) -> torch.Tensor:
    """``[bins, size]``: row i averages the window ``[floor(i*size/bins), ceil((i+1)*size/bins))``."""
    index = torch.arange(bins, device=like.device)
    start = (index * size) // bins
    end = ((index + 1) * size + bins - 1) // bins
    position = torch.arange(size, device=like.device)
    inside = (position[None, :] >= start[:, None]) & (position[None, :] < end[:, None])
    return inside.to(like.dtype) / (end - start).to(like.dtype)[:, None]


def adaptive_avg_pool2d(x: torch.Tensor, bins: int | tuple[int, int]) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, bins)``, exact at any (also symbolic) input size; see the module docstring."""
    bins_h, bins_w = (bins, bins) if isinstance(bins, int) else bins
    if (bins_h, bins_w) == (1, 1):
        return global_average(x)
    rows = _pooling_matrix(x.shape[-2], bins_h, x)
    cols = _pooling_matrix(x.shape[-1], bins_w, x)
    return torch.matmul(torch.matmul(rows, x), cols.transpose(0, 1))
