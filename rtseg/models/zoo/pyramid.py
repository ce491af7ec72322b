"""Pyramid pooling modules: DDRNet's DAPPM, PIDNet's PAPPM, Fast-SCNN's PPM.

- ``DAPPM`` (Hong et al. 2021, arXiv 2101.06085, Fig. 4; ydhongHIT/DDRNet
  ``segmentation/DDRNet_23_slim.py``, also PIDNet-L's): average pools of kernel 5/9/17 and
  stride 2/4/8 (zero padding counted in the mean) and a global pool; each pooled map goes
  BN -> ReLU -> 1x1 conv, is upsampled and added to the previous scale's result, then refined by
  BN -> ReLU -> 3x3 conv in a cascade; the five scales are concatenated and compressed by a 1x1
  conv, plus a 1x1 shortcut.
- ``PAPPM`` (Xu et al. 2023, arXiv 2206.02066, Fig. 6; XuJiacong/PIDNet ``models/model_utils.py``):
  the same pools, but every scale is added to the unpooled one and the four are refined
  together by one grouped 3x3 conv (4 groups), so they run in parallel.
- ``PyramidPooling`` (Zhao et al. 2017's PSP module as Fast-SCNN uses it, Tramac/Fast-SCNN-pytorch
  ``models/fast_scnn.py``): adaptive average pools to 1, 2, 3 and 6 bins, each Conv-BN-ReLU to a
  quarter of the channels and upsampled (``align_corners=True``), concatenated with the input.

Export: DAPPM and PAPPM use fixed-kernel pools and a global mean, which ONNX expresses at any
input size. Adaptive pooling to 2, 3 or 6 bins has no ONNX operator: exporters only accept it
when the map divides evenly (other toolboxes' exports break there). ``adaptive_avg_pool2d``
computes it exactly while exporting as two small averaging matrices built from the map's size
(``rows @ x @ cols^T``, each row averaging PyTorch's bin ``[floor(i*n/b), ceil((i+1)*n/b))``), so
the graph works at any size, dynamic sizes included; eager and compiled runs use PyTorch's kernel.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from rtseg.models.zoo._conv import ConvBNReLU


def _bin_matrix(size, bins: int, like: torch.Tensor) -> torch.Tensor:
    """``[bins, size]``: row i averages the input positions PyTorch's adaptive pool puts in bin i."""
    index = torch.arange(bins, device=like.device)
    start = torch.div(index * size, bins, rounding_mode="floor")
    end = torch.div((index + 1) * size + bins - 1, bins, rounding_mode="floor")
    position = torch.arange(size, device=like.device)
    inside = (position >= start[:, None]) & (position < end[:, None])
    return inside.to(like.dtype) / (end - start).to(like.dtype)[:, None]


def adaptive_avg_pool2d(x: torch.Tensor, bins: int) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, bins)``, written as matrix products while exporting (see above)."""
    if not torch.compiler.is_exporting():
        return F.adaptive_avg_pool2d(x, bins)
    rows = _bin_matrix(x.shape[-2], bins, x)
    cols = _bin_matrix(x.shape[-1], bins, x)
    return rows @ x @ cols.transpose(0, 1)


class GlobalAvgPool(nn.Module):
    """The mean over height and width, kept as a 1x1 map (ONNX ReduceMean at any size)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


def _bn_relu_conv(in_channels: int, out_channels: int, kernel: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True),
            nn.Conv2d(in_channels, out_channels, kernel, padding=kernel // 2, groups=groups, bias=False)]


def _upsample(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class _PooledScales(nn.Module):
    """The unpooled scale (``scale0``) and the four pooled ones (``scale1``..``scale4``), each
    BN -> ReLU -> 1x1 conv; the module names and indices are the official ones (``scale1.1`` is
    the BN after the pool at index 0), so released weights load as they are."""

    def __init__(self, in_channels: int, branch_channels: int, out_channels: int):
        super().__init__()
        self.scale0 = nn.Sequential(*_bn_relu_conv(in_channels, branch_channels))
        for index, (kernel, stride) in enumerate(((5, 2), (9, 4), (17, 8)), start=1):
            pool = nn.AvgPool2d(kernel, stride, kernel // 2)
            setattr(self, f"scale{index}", nn.Sequential(pool, *_bn_relu_conv(in_channels, branch_channels)))
        self.scale4 = nn.Sequential(GlobalAvgPool(), *_bn_relu_conv(in_channels, branch_channels))
        self.compression = nn.Sequential(*_bn_relu_conv(branch_channels * 5, out_channels))
        self.shortcut = nn.Sequential(*_bn_relu_conv(in_channels, out_channels))

    def pooled(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Scales 1-4, upsampled to ``x``'s size."""
        size = x.shape[-2:]
        return [_upsample(getattr(self, f"scale{i}")(x), size) for i in range(1, 5)]


class DAPPM(_PooledScales):
    def __init__(self, in_channels: int, branch_channels: int, out_channels: int):
        super().__init__(in_channels, branch_channels, out_channels)
        for index in range(1, 5):
            setattr(self, f"process{index}", nn.Sequential(*_bn_relu_conv(branch_channels, branch_channels, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scales = [self.scale0(x)]
        for index, pooled in enumerate(self.pooled(x), start=1):
            scales.append(getattr(self, f"process{index}")(pooled + scales[-1]))
        return self.compression(torch.cat(scales, 1)) + self.shortcut(x)


class PAPPM(_PooledScales):
    def __init__(self, in_channels: int, branch_channels: int, out_channels: int):
        super().__init__(in_channels, branch_channels, out_channels)
        self.scale_process = nn.Sequential(*_bn_relu_conv(branch_channels * 4, branch_channels * 4, 3, groups=4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        base = self.scale0(x)
        refined = self.scale_process(torch.cat([pooled + base for pooled in self.pooled(x)], 1))
        return self.compression(torch.cat([base, refined], 1)) + self.shortcut(x)


class PyramidPooling(nn.Module):
    """Fast-SCNN's PPM: 1/2/3/6-bin pools, Conv-BN-ReLU to ``in/4`` each, upsampled, joined, Conv-BN-ReLU."""

    BINS = (1, 2, 3, 6)

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        for index in range(1, len(self.BINS) + 1):
            setattr(self, f"conv{index}", ConvBNReLU(in_channels, in_channels // 4, 1))
        self.out = ConvBNReLU(in_channels * 2, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        features = [x]
        for index, bins in enumerate(self.BINS, start=1):
            pooled = getattr(self, f"conv{index}")(adaptive_avg_pool2d(x, bins))
            features.append(F.interpolate(pooled, size=size, mode="bilinear", align_corners=True))
        return self.out(torch.cat(features, 1))
