"""The encoder interface every decoder is written against.

An encoder maps an image to five feature maps, the outputs of its last layers at nominal
strides 2, 4, 8, 16 and 32, and states their channels and actual strides in
``feature_info`` before any forward pass, so decoders size their layers from it and no
channel count is ever written by hand. With ``output_stride=8`` the last two stride-2 steps
become stride 1 (with dilation 2 and 4 after them): the /16 and /32 maps then have an actual
stride of 8, parameter shapes are unchanged and ImageNet weights still fit.

A backbone may lack the shallow levels: ConvNeXt and most hierarchical transformers start
at stride 4. Such a level is stated as missing (``None`` in ``feature_info`` and in the
forward's list) rather than faked; the /8, /16 and /32 levels always exist, so decoders that
read only those need no care, and those that use the shallow maps skip what is missing
(``present_levels``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from rtseg.errors import RtsegError
from rtseg.normalisation import IMAGENET_MEAN, IMAGENET_STD
from rtseg.models.weights import fit_state_dict, read_state_dict

NOMINAL_STRIDES = (2, 4, 8, 16, 32)


@dataclass(frozen=True)
class FeatureInfo:
    channels: int
    stride: int  # actual stride w.r.t. the input (8 for the deep maps of a dilated encoder)


DEEP_LEVELS = (2, 3, 4)  # the /8, /16, /32 maps: every encoder has them


def check_output_stride(output_stride: int, allowed: Sequence[int] = (8, 32)) -> int:
    if output_stride not in allowed:
        raise RtsegError(f"output_stride must be {' or '.join(map(str, allowed))}, got {output_stride!r}")
    return output_stride


def present_levels(feature_info: Sequence[FeatureInfo | None]) -> list[int]:
    """Indices of the levels an encoder has (all five, or /4../32, or /8../32)."""
    return [level for level, info in enumerate(feature_info) if info is not None]


def feature_strides(output_stride: int) -> tuple[int, ...]:
    """Actual strides of the five maps: (2, 4, 8, 16, 32) or (2, 4, 8, 8, 8)."""
    return tuple(min(s, output_stride) for s in NOMINAL_STRIDES)


class Encoder(nn.Module):
    """Base class: subclasses build their layers, set ``feature_info``, implement ``forward``.

    Subclasses that load library weights override ``convert_state_dict`` (library key
    layout -> ours) and ``download_state_dict`` (the library's ImageNet weights).
    """

    feature_info: tuple[FeatureInfo | None, ...]  # None: a shallow level the backbone lacks
    output_stride: int = 32
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def set_feature_info(self, channels: Sequence[int]) -> None:
        strides = feature_strides(self.output_stride)
        if len(channels) != len(strides):
            raise ValueError(f"{type(self).__name__} must expose {len(strides)} feature maps")
        self.feature_info = tuple(FeatureInfo(c, s) for c, s in zip(channels, strides))

    @property
    def out_channels(self) -> list[int | None]:
        return [None if f is None else f.channels for f in self.feature_info]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor | None]:  # pragma: no cover - abstract
        raise NotImplementedError

    # --- ImageNet weights -------------------------------------------------------------
    def convert_state_dict(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Map a library-format state dict onto this module's keys (identity by default)."""
        return dict(state)

    def download_state_dict(self) -> dict[str, torch.Tensor]:
        raise RtsegError(f"encoder {type(self).__name__} has no downloadable ImageNet weights; "
                         "pass pretrained='path/to/weights' instead")

    def load_pretrained(self, pretrained: bool | str | Path) -> None:
        if pretrained is True:
            state, source = self.download_state_dict(), f"ImageNet weights of {type(self).__name__}"
        else:
            state, source = read_state_dict(pretrained), str(pretrained)
        fit_state_dict(self, self.convert_state_dict(state), source)

    def classifier(self, num_classes: int = 1000) -> nn.Module:
        """The published ImageNet classifier built on this trunk (used to check its cost)."""
        raise NotImplementedError(f"{type(self).__name__} has no classifier form")
