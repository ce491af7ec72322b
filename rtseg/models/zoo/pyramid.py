"""The pyramid pooling modules: DDRNet's DAPPM, PIDNet's PAPPM, Fast-SCNN's PPM, PP-LiteSeg's SPPM.

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
- ``SimplePyramidPooling`` (Peng et al. 2022, arXiv 2204.02681, the SPPM; PaddleSeg
  ``paddleseg/models/pp_liteseg.py`` ``PPContextModule``): adaptive average pools to 1, 2 and 4
  bins, each a 1x1 ConvBNReLU with a bias (PaddleSeg's ``ConvBNReLU`` keeps the convolution's
  bias unless told otherwise), upsampled (``align_corners=False``) and summed, then a 3x3
  ConvBNReLU, biased too.

Export at any size: the fixed-kernel pools of DAPPM and PAPPM are ONNX ``AveragePool`` at any
size; every adaptive and global pool goes through ``rtseg.models.zoo.pooling`` (see there).
"""

from __future__ import annotations

import torch
from torch import nn

from rtseg.models.zoo.blocks import ConvBNReLU, bn_relu_conv, resize
from rtseg.models.zoo.pooling import GlobalAverage, adaptive_avg_pool2d


class _PooledScales(nn.Module):
    """The unpooled scale (``scale0``) and the four pooled ones (``scale1``..``scale4``), each
    BN -> ReLU -> 1x1 conv; the module names and indices are the official ones (``scale1.1`` is
    the BN after the pool at index 0), so released weights load as they are."""

    def __init__(self, in_channels: int, branch_channels: int, out_channels: int):
        super().__init__()
        self.scale0 = nn.Sequential(*bn_relu_conv(in_channels, branch_channels))
        for index, (kernel, stride) in enumerate(((5, 2), (9, 4), (17, 8)), start=1):
            pool = nn.AvgPool2d(kernel, stride, kernel // 2)
            setattr(self, f"scale{index}", nn.Sequential(pool, *bn_relu_conv(in_channels, branch_channels)))
        self.scale4 = nn.Sequential(GlobalAverage(), *bn_relu_conv(in_channels, branch_channels))
        self.compression = nn.Sequential(*bn_relu_conv(branch_channels * 5, out_channels))
        self.shortcut = nn.Sequential(*bn_relu_conv(in_channels, out_channels))

    def pooled(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Scales 1-4, upsampled to ``x``'s size."""
        size = x.shape[-2:]
        return [resize(getattr(self, f"scale{i}")(x), size, align_corners=False) for i in range(1, 5)]


class DAPPM(_PooledScales):
    def __init__(self, in_channels: int, branch_channels: int, out_channels: int):
        super().__init__(in_channels, branch_channels, out_channels)
        for index in range(1, 5):
            setattr(self, f"process{index}", nn.Sequential(*bn_relu_conv(branch_channels, branch_channels, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scales = [self.scale0(x)]
        for index, pooled in enumerate(self.pooled(x), start=1):
            scales.append(getattr(self, f"process{index}")(pooled + scales[-1]))
        return self.compression(torch.cat(scales, 1)) + self.shortcut(x)


class PAPPM(_PooledScales):
    def __init__(self, in_channels: int, branch_channels: int, out_channels: int):
        super().__init__(in_channels, branch_channels, out_channels)
        self.scale_process = nn.Sequential(*bn_relu_conv(branch_channels * 4, branch_channels * 4, 3, groups=4))

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
            features.append(resize(pooled, size, align_corners=True))
        return self.out(torch.cat(features, 1))


class SimplePyramidPooling(nn.Module):
    """PP-LiteSeg's SPPM (PaddleSeg's ``PPContextModule``): 1/2/4-bin pools, summed, 3x3 ConvBNReLU."""

    BINS = (1, 2, 4)

    def __init__(self, in_channels: int, channels: int = 128):
        super().__init__()
        self.stages = nn.ModuleList(ConvBNReLU(in_channels, channels, 1, bias=True) for _ in self.BINS)
        self.project = ConvBNReLU(channels, channels, 3, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        out = None
        for bins, stage in zip(self.BINS, self.stages):
            y = resize(stage(adaptive_avg_pool2d(x, bins)), size, align_corners=False)
            out = y if out is None else out + y
        return self.project(out)
