"""The decoder interface and the up-sampling pieces the meta-architectures share.

A decoder is built from the encoder's ``feature_info`` alone and maps the five feature maps
to logits of exactly the requested size. Feature maps of odd-sized inputs are rounded up at
each stride-2 step, so an up-sampled map can be a pixel or two larger than its skip
partner: ``fit_to`` crops it (or pads, for encoders that round down), as FCN's crop layers do.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from rtseg.errors import RtsegError
from rtseg.models.encoders.base import FeatureInfo


class Decoder(nn.Module):
    """Feature maps -> logits of the requested size.

    A decoder whose last step is linear (a learned up-sampling to full resolution, or a 1x1
    classifier at it) names that layer's attribute in ``output_layer`` and implements
    ``output_layer_input``; ``forward`` is then ``fit_to(layer(output_layer_input(features, size)),
    size)``. Naming it lets an inference engine take the argmax inside that layer instead of after
    it (``rtseg.inference.upsampled_labels``), without the full-resolution scores.
    """

    # The output stride the decoder wants from its encoder (the dilation frontend wants 8).
    encoder_output_stride: int = 32
    # Attribute name of the last, linear layer (nn.ConvTranspose2d, or a stride-1 nn.Conv2d), or None.
    output_layer: str | None = None

    def output_layer_input(self, features: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - abstract

    def forward(self, features: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        if self.output_layer is None:
            raise NotImplementedError  # pragma: no cover - abstract
        return fit_to(getattr(self, self.output_layer)(self.output_layer_input(features, size)), size)


def fit_to(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Crop (bottom/right) or replicate-pad ``x`` to spatial ``size``."""
    height, width = int(size[0]), int(size[1])
    x = x[..., :height, :width]
    pad_h, pad_w = height - x.shape[-2], width - x.shape[-1]
    if pad_h > 0 or pad_w > 0:
        x = F.pad(x, (0, max(pad_w, 0), 0, max(pad_h, 0)), mode="replicate")
    return x


def bilinear_kernel(channels: int, kernel_size: int) -> torch.Tensor:
    """Weights that make a per-channel transposed convolution a bilinear up-sampler (FCN)."""
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    ramp = 1 - torch.abs(torch.arange(kernel_size, dtype=torch.float32) - center) / factor
    weight = torch.zeros(channels, channels, kernel_size, kernel_size)
    weight[range(channels), range(channels)] = ramp[:, None] * ramp[None, :]
    return weight


def upsampler(in_channels: int, out_channels: int, factor: int, bilinear_init: bool = False,
              bias: bool = False) -> nn.Module:
    """Learned up-sampling by an integer ``factor``: kernel 2f, stride f, padding f/2 (output = f x input).

    ``factor == 1`` (the deep maps of a dilated encoder already share a stride) becomes a
    1x1 convolution, so one decoder serves both output strides. ``bias`` starts at zero.
    """
    if factor == 1:
        layer = nn.Conv2d(in_channels, out_channels, 1, bias=bias)
    else:
        if factor < 1 or factor & (factor - 1):
            raise RtsegError(f"cannot up-sample by {factor}: strides must differ by a power of two")
        layer = nn.ConvTranspose2d(in_channels, out_channels, 2 * factor, stride=factor,
                                   padding=factor // 2, bias=bias)
        if bilinear_init and in_channels == out_channels:
            with torch.no_grad():
                layer.weight.copy_(bilinear_kernel(in_channels, 2 * factor))
    if bias:
        nn.init.zeros_(layer.bias)
    return layer


def stride_ratio(high: FeatureInfo | int, low: FeatureInfo | int) -> int:
    high_stride = high.stride if isinstance(high, FeatureInfo) else high
    low_stride = low.stride if isinstance(low, FeatureInfo) else low
    ratio = high_stride / low_stride
    if ratio != int(ratio) or not math.log2(ratio).is_integer():
        raise RtsegError(f"feature strides {high_stride} and {low_stride} are not a power of two apart")
    return int(ratio)
