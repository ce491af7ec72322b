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

Whether it pays depends on the up-sampling and the CPU: with freed memory kept (the protocol's
allocator policy) SkipNet's x8 up-sampling and argmax ran 1.2-1.8x faster fused on a 2-core Zen 3,
ENet's x2 one 0.95x (``benchmarks/bench_labels.py --upsampling``). So unless told,
``choose_labels`` times both on the network's own up-sampling input when the engine is built,
as the int8 plan times its layers, and fuses only when that is faster by ``MARGIN``.

No library does this for PyTorch's engines: eager runs the transposed convolution and the
argmax as two kernels, and inductor calls the matrix product as an external kernel, so it
cannot fuse the reduction into it. The step is one ``torch.library`` custom operator: compiled
graphs call it as one kernel (written as plain code, inductor unrolls the loop over the row
chunks and its compile time explodes, and it splits the short reduction over the classes into
one OpenMP region per pixel row, 8x slower than eager). It computes in its input's dtype, so
it gives the same under ``torch.autocast`` in eager and compiled code, and a compiled graph
runs it as eager does, which is why the choice is timed in eager for both engines.
"""

from __future__ import annotations

import statistics
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from rtseg.inference.subpixel import SubPixelConvTranspose2d, is_convertible
from rtseg.memory import allocator
from rtseg.models.decoders.base import fit_to
from rtseg.profiling.timing import settle, stopwatch, time_in_blocks
from rtseg.runtime import autocast

# Scores computed at once: a few low-resolution rows, small enough to stay in a core's cache
# (the sweep of chunk sizes in bench_labels --upsampling was flat from 0.3 to 2.5 MB).
CHUNK_BYTES = 1 << 20


# The fused step must be this much faster than the argmax to be chosen (the int8 plan's margin).
MARGIN = 0.03


def can_fuse(layer: nn.Module | None) -> bool:
    """Whether ``layer`` is an up-sampling this module can fuse with the argmax."""
    return isinstance(layer, SubPixelConvTranspose2d) or is_convertible(layer)


class UpsampledLabels(nn.Module):
    """``fit_to(layer(x), size).argmax(1)`` for a transposed convolution ``layer``, in one pass."""

    def __init__(self, layer: nn.ConvTranspose2d | SubPixelConvTranspose2d):
        super().__init__()
        if not can_fuse(layer):
            raise ValueError(f"cannot fuse the argmax into {layer}: needs a transposed convolution with "
                             f"groups=1, dilation=1, equal strides and zero padding")
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
                                [int(size[0]), int(size[1])])


def _output_size(height: int, width: int, geometry: list[int], size: list[int]) -> tuple[int, int]:
    """The part of the up-sampled map that ``fit_to`` keeps (its crop; the rest is replicated)."""
    s, extra_h, extra_w = geometry[0], geometry[5], geometry[6]
    return min(height * s + extra_h, size[0]), min(width * s + extra_w, size[1])


@torch.library.custom_op("rtseg::upsampled_labels", mutates_args=())
def upsampled_labels(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, classes: int,
                     geometry: list[int], size: list[int]) -> torch.Tensor:
    """Labels ``[N, *size]`` of the up-sampling ``(weight, bias, geometry)`` of ``x``, fitted to ``size``."""
    batch, _, height, width = x.shape
    s, ph, pw, th, tw = geometry[:5]
    out_h, out_w = _output_size(height, width, geometry, size)
    rows, cols = (out_h - 1 + ph) // s + 1, (out_w - 1 + pw) // s + 1
    x = F.pad(x, (tw - 1, max(0, cols - width), th - 1, max(0, rows - height)))
    pixels = x.permute(0, 2, 3, 1)  # NHWC: a free view of channels_last input
    taps = [pixels[:, ty:ty + rows, tx:tx + cols] for ty in range(th) for tx in range(tw)]
    patches = taps[0] if len(taps) == 1 else torch.cat(taps, dim=3)  # (N, rows, cols, taps * in)
    weight, bias = weight.to(x.dtype), bias.to(x.dtype)
    labels = torch.empty(batch, rows, s, cols, s, dtype=torch.long, device=x.device)
    step = max(1, CHUNK_BYTES // (batch * cols * weight.shape[1] * x.element_size()))
    for row in range(0, rows, step):
        chunk = patches[:, row:row + step]
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
def _(x, weight, bias, classes, geometry, size):
    return x.new_empty((x.shape[0], size[0], size[1]), dtype=torch.long)


def _time_heads(steps: list[Callable[[], float]], runs: int = 10) -> list[float]:
    """Median seconds of each step, side by side in blocks after settling (the protocol's rules)."""
    for step in steps:
        settle(step, window=3, tolerance=0.05, max_runs=15, max_seconds=10.0)
    return [statistics.median(t) for t in time_in_blocks(steps, runs, block=5)]


class ArgmaxHead(nn.Module):
    """The other way, timed against the fused step: the up-sampling, ``fit_to``, then the argmax."""

    def __init__(self, layer: nn.Module, size: tuple[int, int]):
        super().__init__()
        self.layer, self.size = layer, tuple(size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fit_to(self.layer(x), self.size).argmax(1)


def choose_labels(model: nn.Module, example: torch.Tensor, precision: str = "fp32", device: str = "cpu",
                  memory: str = "reuse", *, engine_fn: Callable[[nn.Module, torch.Tensor], Callable] | None = None,
                  timer: Callable[[list], list[float]] = _time_heads) -> tuple[bool, dict]:
    """Whether ``model``'s labels are faster taken inside its output up-sampling than by the
    argmax after it, timed on this machine on the up-sampling's input for ``example``
    (``precision``'s autocast, freed memory kept as ``memory`` says); and the record of it.

    ``engine_fn(head, features)`` turns the argmax head into what the engine runs (the compile
    engine compiles it: inductor's argmax is faster than eager's, 24.7 against 32.3 ms for
    ENet's on a Zen 3, and compiled ENet ran 0.90x with a choice timed in eager); the fused step
    runs as eager in either engine. A network without a fusable up-sampler gets ``False`` and an
    empty record."""
    layer = model.output_upsampler() if hasattr(model, "output_upsampler") else None
    if not can_fuse(layer):
        return False, {}
    size = tuple(example.shape[-2:])
    fused = UpsampledLabels(layer)
    with torch.inference_mode(), autocast(precision, device):
        features = model.upsampler_input(example)

    def under_autocast(fn):
        def run(x):
            with torch.inference_mode(), autocast(precision, device):
                return fn(x)
        return run

    head = ArgmaxHead(layer, size)
    argmax_fn = under_autocast(head) if engine_fn is None else engine_fn(head, features)
    steps = [stopwatch(argmax_fn, features, device), stopwatch(under_autocast(lambda x: fused(x, size)), features,
                                                               device)]
    with allocator(memory):
        argmax_s, fused_s = timer(steps)
    chosen = fused_s < (1 - MARGIN) * argmax_s
    return chosen, {"inside the up-sampling": chosen, "argmax_ms": round(1e3 * argmax_s, 3),
                    "fused_ms": round(1e3 * fused_s, 3), "argmax_head": "eager" if engine_fn is None else "engine"}
