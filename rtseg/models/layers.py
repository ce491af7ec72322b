"""Layers that work around slow kernels without changing the math or the state-dict layout."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def space_to_batch_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                          dilation: int, padding: int) -> torch.Tensor:
    """A stride-1 dilated convolution computed as an undilated one on ``dilation**2`` phase images.

    Output pixel (d*a + ry, d*b + rx) only sees input pixels of the same phase (ry, rx), so
    splitting the zero-padded input into its d x d phases, convolving each without dilation and
    interleaving the results is exact (TensorFlow's atrous convolution does the same).
    """
    d = dilation
    n, c, h, w = x.shape
    k_h, k_w = weight.shape[-2:]
    out_h, out_w = h + 2 * padding - d * (k_h - 1), w + 2 * padding - d * (k_w - 1)
    padded_h, padded_w = h + 2 * padding, w + 2 * padding
    extra_h, extra_w = (-padded_h) % d, (-padded_w) % d
    x = F.pad(x, (padding, padding + extra_w, padding, padding + extra_h))
    hp, wp = (padded_h + extra_h) // d, (padded_w + extra_w) // d
    x = x.reshape(n, c, hp, d, wp, d).permute(0, 3, 5, 1, 2, 4).reshape(n * d * d, c, hp, wp)
    y = F.conv2d(x, weight, bias)
    o, yh, yw = y.shape[1:]
    y = y.reshape(n, d, d, o, yh, yw).permute(0, 3, 4, 1, 5, 2).reshape(n, o, yh * d, yw * d)
    return y[..., :out_h, :out_w]


class AtrousConv2d(nn.Conv2d):
    """``nn.Conv2d`` (same parameters and keys) whose dilated CPU training pass avoids PyTorch's
    slow dilated-convolution backward (a 7x7 dilation-4 layer took ~40x longer to back-propagate
    than the same undilated one, even on tiny maps). Inference and CUDA use the plain kernel."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dilation = self.dilation[0]
        if (dilation > 1 and x.device.type == "cpu" and torch.is_grad_enabled()
                and self.stride == (1, 1) and self.groups == 1 and self.dilation[0] == self.dilation[1]
                and self.padding[0] == self.padding[1] and isinstance(self.padding[0], int)):
            return space_to_batch_conv2d(x, self.weight, self.bias, dilation, self.padding[0])
        return super().forward(x)
