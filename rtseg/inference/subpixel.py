"""Transposed convolutions rewritten as a convolution followed by a pixel shuffle.

A transposed convolution with stride s is s x s interleaved ordinary convolutions, one per
output phase (the "sub-pixel convolution" of Shi et al. 2016). Written that way it is one
dense convolution at the *input* resolution with s*s times the output channels, then a
``pixel_shuffle`` and a crop: the same arithmetic (no extra multiply-adds when the kernel
is a multiple of the stride, as in FCN's 4x4/2 and 16x16/8 up-samplers), but it runs on
the fast convolution kernels every engine has, and int8 quantizers handle it. ONNX
Runtime's ConvTranspose kernel, by contrast, is slow on CPU (on this project's 2-core
machine SkipNet-MobileNet's three up-samplers took as long as its 27 encoder layers) and
stays fp32 under static quantization. No library performs this rewrite on a module tree,
hence this file. The result is exactly the original function (checked in the tests).

Derivation, along one axis: ``y[o] = sum_i x[i] w[o + p - s*i]``. Writing ``o + p = s*q + b``
(``0 <= b < s``) the kernel tap is ``s*(q - i) + b``, so ``y[o] = sum_m x[q - m] w[s*m + b]``
for ``m = 0 .. T-1``, ``T = ceil(K / s)``: every phase ``b`` reads the same input window
``x[q-T+1 .. q]``. That is a T-tap correlation on the input padded by ``T-1`` in front,
giving ``z[b][q]``; ``pixel_shuffle`` places ``z[b][q]`` at ``s*q + b = o + p``, so the output
is the shuffled map cropped from offset ``p``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


class SubPixelConvTranspose2d(nn.Module):
    """Drop-in replacement of an ``nn.ConvTranspose2d`` (groups 1, dilation 1, equal strides)."""

    def __init__(self, deconv: nn.ConvTranspose2d):
        super().__init__()
        if not is_convertible(deconv):
            raise ValueError(f"cannot rewrite {deconv}: needs groups=1, dilation=1, equal strides, zero padding mode")
        self.stride = deconv.stride[0]
        self.padding = tuple(deconv.padding)
        self.output_padding = tuple(deconv.output_padding)
        self.kernel_size = tuple(deconv.kernel_size)
        self.taps = tuple(math.ceil(k / self.stride) for k in self.kernel_size)
        weight = deconv.weight.detach()  # (in, out, kh, kw)
        in_channels, out_channels = weight.shape[:2]
        s, (th, tw), (kh, kw) = self.stride, self.taps, self.kernel_size
        # phase_weight[out, by, bx, in, ty, tx] = w[in, out, s*(th-1-ty) + by, s*(tw-1-tx) + bx]
        phase_weight = weight.new_zeros(out_channels, s, s, in_channels, th, tw)
        for by in range(s):
            for ty in range(th):
                ky = s * (th - 1 - ty) + by
                for bx in range(s):
                    for tx in range(tw):
                        kx = s * (tw - 1 - tx) + bx
                        if ky < kh and kx < kw:
                            phase_weight[:, by, bx, :, ty, tx] = weight[:, :, ky, kx].t()
        self.conv = nn.Conv2d(in_channels, out_channels * s * s, (th, tw), bias=deconv.bias is not None)
        self.conv.to(device=weight.device, dtype=weight.dtype)
        with torch.no_grad():
            self.conv.weight.copy_(phase_weight.reshape(out_channels * s * s, in_channels, th, tw))
            if deconv.bias is not None:
                # pixel_shuffle's channel order is out * s*s + by * s + bx
                self.conv.bias.copy_(deconv.bias.detach().repeat_interleave(s * s))

    def forward(self, x: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        height, width = x.shape[-2:]
        s, (ph, pw), (th, tw) = self.stride, self.padding, self.taps
        out_h = (height - 1) * s - 2 * ph + self.kernel_size[0]
        out_w = (width - 1) * s - 2 * pw + self.kernel_size[1]
        if output_size is not None:  # ConvTranspose2d picks its output padding from output_size
            out_h, out_w = int(output_size[-2]), int(output_size[-1])
        else:
            out_h, out_w = out_h + self.output_padding[0], out_w + self.output_padding[1]
        rows = (out_h - 1 + ph) // s + 1  # phase rows needed to cover the output after the crop
        cols = (out_w - 1 + pw) // s + 1
        x = F.pad(x, (tw - 1, max(0, cols - width), th - 1, max(0, rows - height)))
        y = F.pixel_shuffle(self.conv(x), s)
        return y[..., ph:ph + out_h, pw:pw + out_w]


def is_convertible(module: nn.Module) -> bool:
    return (isinstance(module, nn.ConvTranspose2d) and module.groups == 1 and tuple(module.dilation) == (1, 1)
            and module.stride[0] == module.stride[1] and module.padding_mode == "zeros"
            and isinstance(module.padding, tuple))


def rewrite_conv_transpose(model: nn.Module) -> int:
    """Replace, in place, every convertible ``nn.ConvTranspose2d`` of ``model``; returns how many."""
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if is_convertible(child):
                setattr(parent, name, SubPixelConvTranspose2d(child))
                count += 1
    return count
