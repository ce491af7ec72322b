"""Adaptive average pooling that is exact in PyTorch and in an ONNX graph of any input size.

Every pyramid pooling module of the zoo pools through ``adaptive_avg_pool2d`` (PP-LiteSeg's
SPPM, Fast-SCNN's PPM) or its one-bin case ``global_average`` (the global branch of DDRNet's
DAPPM and PIDNet's PAPPM, BiSeNet's and STDC-Seg's context path and attention, BiSeNet V2's
context embedding).

Why our own: adaptive pooling to 2, 3, 4 or 6 bins has no ONNX operator, and
``torch.onnx.export(dynamo=True)`` turns ``F.adaptive_avg_pool2d`` into gathers whose indices
are those of the traced size: a graph exported with a free height and width then fails (ONNX
Runtime: "indices element out of data bounds") or, worse, pools the wrong windows at every
other size. While ``torch.export`` traces (``torch.compiler.is_exporting()``, which the dynamo
ONNX exporter runs under), ``adaptive_avg_pool2d`` is therefore two small averaging matrices
built from the map's (symbolic) size, ``rows @ x @ cols^T``, row ``i`` averaging PyTorch's (and
PaddlePaddle's) bin ``[floor(i*n/b), ceil((i+1)*n/b))``: the same windows at every size, equal
to ``F.adaptive_avg_pool2d`` up to float32 rounding. Eager and compiled runs keep PyTorch's
kernel, so eval outputs are PyTorch's to the bit. The one-bin case is a mean over height and
width, which is what PyTorch's kernel computes for one bin (bit for bit) and one ONNX
``ReduceMean`` at any size.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def global_average(x: torch.Tensor) -> torch.Tensor:
    """``[N, C, H, W]`` -> ``[N, C, 1, 1]``: the mean over height and width."""
    return x.mean(dim=(2, 3), keepdim=True)


class GlobalAverage(nn.Module):
    """``global_average`` as a module, for official layouts that put it inside an ``nn.Sequential``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return global_average(x)


def _bin_matrix(size, bins: int, like: torch.Tensor) -> torch.Tensor:
    """``[bins, size]``: row i averages the input positions PyTorch's adaptive pool puts in bin i."""
    index = torch.arange(bins, device=like.device)
    start = torch.div(index * size, bins, rounding_mode="floor")
    end = torch.div((index + 1) * size + bins - 1, bins, rounding_mode="floor")
    position = torch.arange(size, device=like.device)
    inside = (position >= start[:, None]) & (position < end[:, None])
    return inside.to(like.dtype) / (end - start).to(like.dtype)[:, None]


def adaptive_avg_pool2d(x: torch.Tensor, bins: int | tuple[int, int]) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, bins)``, also inside an exported graph of any size (see above)."""
    bins_h, bins_w = (bins, bins) if isinstance(bins, int) else bins
    if (bins_h, bins_w) == (1, 1):
        return global_average(x)
    if not torch.compiler.is_exporting():
        return F.adaptive_avg_pool2d(x, (bins_h, bins_w))
    rows = _bin_matrix(x.shape[-2], bins_h, x)
    cols = _bin_matrix(x.shape[-1], bins_w, x)
    return rows @ x @ cols.transpose(0, 1)
