"""The last up-sampling and the argmax over classes in one pass, a few rows at a time.

Networks that end in a transposed convolution to full resolution (SkipNet, the Dilation
frontend, LinkNet, ENet) compute every class's score at every pixel only to keep the index of
the largest: at 512x1024 with 19 classes that is 40 MB of fp32 scores written by the
up-sampling and read back by the argmax, more than the caches hold. Written as a sub-pixel
convolution (``rtseg.inference.subpixel``) the up-sampling is, for each low-resolution pixel,
one row of a matrix product whose columns are (class, output phase). Multiplying a few rows at
a time and taking the max over the class axis while they are still in cache gives the labels
of every phase, which are then placed on the full-resolution grid: the same labels as
``fit_to(layer(x), size).argmax(1)`` (equal scores up to float rounding; ties to the lowest
class), without the full-resolution scores.

A classifier at full resolution (UNet's 1x1 convolution) is the stride-1 case: a convolution
with stride 1 is a transposed convolution with its kernel flipped (``as_transposed``). The
patches are built a chunk of rows at a time, so a kxk classifier never holds k*k copies of its
full-resolution input; SegNet's 3x3 one of 64 channels is not declared all the same: fused it ran
0.27x oneDNN's convolution and the argmax in eager, 0.24x compiled (``bench_labels --upsampling``
on a Zen 3), and timing it at every build would cost seconds for nothing.

Whether it pays depends on the layer, the engine and the CPU: with freed memory kept (the
protocol's allocator policy), on a 2-core Zen 3, SkipNet's x8 up-sampling and argmax ran 1.22x
faster fused in eager and 1.07x against the compiled argmax, ENet's x2 one 0.95x and 0.75x
(``python benchmarks/bench_labels.py --upsampling --rounds 3``); UNet's 1x1 classifier of 16
channels, whose unfused convolution is cheap, 0.71x and 0.69x. So the PyTorch engines time both
when they are built (``rtseg.inference.torch_engines.choose_labels``) and keep the faster.

No library does this for PyTorch's engines: eager runs the transposed convolution and the
argmax as two kernels, and inductor calls the matrix product as an external kernel, so it
cannot fuse the reduction into it. The step is one ``torch.library`` custom operator: compiled
graphs call it as one kernel (written as plain code, inductor unrolled the loop over the row
chunks, which made compiling take minutes, and split the short reduction over the classes into
one OpenMP region per pixel row, far slower than eager). It computes in its input's dtype, so
it gives the same under ``torch.autocast`` in eager and compiled code, and a compiled graph
runs it as eager does.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from rtseg.inference.subpixel import SubPixelConvTranspose2d, is_convertible

# Scores computed at once: a few low-resolution rows, to stay in the caches. In two runs of
# ``bench_labels --upsampling`` on a Zen 3, 4 MiB beat 1 MiB for SkipNet's up-sampling (46.9
# against 50.7 ms, 41.5 against 50.9) and tied for ENet's (33.7 / 34.0, 33.3 / 35.4); 256 KiB was
# 0.6x for ENet (too few of its 512-pixel rows a product).
CHUNK_BYTES = 1 << 22


def can_fuse(layer: nn.Module | None) -> bool:
    """Whether ``layer`` is a last layer this module can fuse with the argmax."""
    return isinstance(layer, SubPixelConvTranspose2d) or is_convertible(layer) or _is_stride1_conv(layer)


def _is_stride1_conv(layer: nn.Module | None) -> bool:
    """A convolution that is a stride-1 transposed convolution (``as_transposed``): a classifier."""
    return (isinstance(layer, nn.Conv2d) and layer.groups == 1 and tuple(layer.stride) == (1, 1)
            and tuple(layer.dilation) == (1, 1) and layer.padding_mode == "zeros"
            and isinstance(layer.padding, tuple)
            and all(0 <= p < k for p, k in zip(layer.padding, layer.kernel_size)))


def as_transposed(conv: nn.Conv2d) -> nn.ConvTranspose2d:
    """The stride-1 transposed convolution equal to ``conv`` (stride 1, groups 1, padding p < k).

    Along one axis a correlation ``y[o] = sum_k x[o - p + k] w[k]`` is ``sum_i x[i] w'[o + p' - i]``
    with the kernel flipped, ``w'[j] = w[K - 1 - j]``, and ``p' = K - 1 - p``; in and out channels
    swap places in the weight's layout."""
    (kh, kw), (ph, pw) = conv.kernel_size, conv.padding
    weight = conv.weight.detach()
    deconv = nn.ConvTranspose2d(conv.in_channels, conv.out_channels, (kh, kw), padding=(kh - 1 - ph, kw - 1 - pw),
                                bias=conv.bias is not None).to(device=weight.device, dtype=weight.dtype)
    with torch.no_grad():
        deconv.weight.copy_(weight.flip(2, 3).transpose(0, 1))
        if conv.bias is not None:
            deconv.bias.copy_(conv.bias.detach())
    return deconv


class UpsampledLabels(nn.Module):
    """``fit_to(layer(x), size).argmax(1)`` for a transposed convolution ``layer`` (or a stride-1
    convolution, a transposed one of stride 1), in one pass."""

    def __init__(self, layer: nn.ConvTranspose2d | SubPixelConvTranspose2d | nn.Conv2d,
                 chunk_bytes: int = CHUNK_BYTES):
        super().__init__()
        self.chunk_bytes = int(chunk_bytes)
        if not can_fuse(layer):
            raise ValueError(f"cannot fuse the argmax into {layer}: needs a transposed convolution with "
                             f"groups=1, dilation=1, equal strides and zero padding, or a convolution "
                             f"with groups=1, dilation=1, stride 1 and padding below the kernel size")
        if _is_stride1_conv(layer):
            layer = as_transposed(layer)
        sub = layer if isinstance(layer, SubPixelConvTranspose2d) else SubPixelConvTranspose2d(layer)
        conv = sub.conv
        self.classes = conv.out_channels // (sub.stride ** 2)
        # (full_h - in_h * s, full_w - in_w * s): the natural output size, from the layer's geometry
        self.geometry = [sub.stride, *sub.padding, *sub.taps,
                         sub.kernel_size[0] + sub.output_padding[0] - sub.stride - 2 * sub.padding[0],
                         sub.kernel_size[1] + sub.output_padding[1] - sub.stride - 2 * sub.padding[1]]
        # (class * s*s + phase, in, ty, tx) -> rows (ty, tx, in) to match the patches, columns (class, phase)
        weight = conv.weight.detach().permute(2, 3, 1, 0).reshape(-1, conv.out_channels)
        self.register_buffer("weight", weight.contiguous(), persistent=False)
        bias = conv.bias.detach().clone() if conv.bias is not None else weight.new_zeros(conv.out_channels)
        self.register_buffer("bias", bias, persistent=False)

    def forward(self, x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
        return upsampled_labels(x, self.weight, self.bias, self.classes, self.geometry,
                                [int(size[0]), int(size[1])], self.chunk_bytes)


def _output_size(height: int, width: int, geometry: list[int], size: list[int]) -> tuple[int, int]:
    """The part of the up-sampled map that ``fit_to`` keeps (its crop; the rest is replicated)."""
    s, extra_h, extra_w = geometry[0], geometry[5], geometry[6]
    return min(height * s + extra_h, size[0]), min(width * s + extra_w, size[1])


@torch.library.custom_op("rtseg::upsampled_labels", mutates_args=())
def upsampled_labels(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, classes: int,
                     geometry: list[int], size: list[int], chunk_bytes: int) -> torch.Tensor:
    """Labels ``[N, *size]`` of the up-sampling ``(weight, bias, geometry)`` of ``x``, fitted to
    ``size``, computing at most about ``chunk_bytes`` of scores at once."""
    batch, _, height, width = x.shape
    s, ph, pw, th, tw = geometry[:5]
    out_h, out_w = _output_size(height, width, geometry, size)
    rows, cols = (out_h - 1 + ph) // s + 1, (out_w - 1 + pw) // s + 1
    pads = (tw - 1, max(0, cols - width), th - 1, max(0, rows - height))
    if any(pads):  # a 1x1 classifier needs none, and a pad would copy its full-resolution input
        x = F.pad(x, pads)
    pixels = x.permute(0, 2, 3, 1)  # NHWC: a free view of channels_last input
    weight, bias = weight.to(x.dtype), bias.to(x.dtype)
    labels = torch.empty(batch, rows, s, cols, s, dtype=torch.long, device=x.device)
    step = max(1, chunk_bytes // (batch * cols * weight.shape[1] * x.element_size()))
    for row in range(0, rows, step):
        # The patches of these rows only: (N, r, cols, taps * in); a single tap is a view
        taps = [pixels[:, row + ty:min(row + step, rows) + ty, tx:tx + cols] for ty in range(th) for tx in range(tw)]
        chunk = taps[0] if len(taps) == 1 else torch.cat(taps, dim=3)
        scores = torch.addmm(bias, chunk.reshape(-1, chunk.shape[-1]), weight)
        best = scores.view(batch, -1, cols, classes, s, s).max(3).indices  # (N, r, cols, by, bx)
        labels[:, row:row + step] = best.permute(0, 1, 3, 2, 4)
    labels = labels.view(batch, rows * s, cols * s)[:, ph:ph + out_h, pw:pw + out_w]
    if (out_h, out_w) != (size[0], size[1]):  # fit_to's replicate padding
        index_h = torch.arange(size[0], device=x.device).clamp(max=out_h - 1)
        index_w = torch.arange(size[1], device=x.device).clamp(max=out_w - 1)
        labels = labels[:, index_h][:, :, index_w]
    return labels.contiguous()


@upsampled_labels.register_fake
def _(x, weight, bias, classes, geometry, size, chunk_bytes):
    return x.new_empty((x.shape[0], size[0], size[1]), dtype=torch.long)
