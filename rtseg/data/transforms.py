"""Training and evaluation transforms on ``torchvision.transforms.v2``.

Image (``tv_tensors.Image``, uint8) and label (``tv_tensors.Mask``, train ids) go through
the same random geometry in one call; v2 resizes masks with nearest neighbour, so labels
only ever hold ids that were there (and 255 where the crop padded). Normalisation uses the
model's ``mean``/``std`` (every rtseg model has them; ImageNet's by default). ``eval_transforms`` gives
the same pixels as ``rtseg.data.processing.image_to_input`` (tested). The trainer runs the same
augmentation as ``rtseg.data.augment.TrainAugmentation`` (same parameters, OpenCV kernels,
crop before scale, jitter and normalisation on the device); this module is its reference.

    transforms(image, label) -> (float image, label)     # label may be None (test split)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from rtseg.data.labels import IGNORE_INDEX
from rtseg.errors import RtsegError
from rtseg.normalisation import IMAGENET_MEAN, IMAGENET_STD, check_normalisation


class RandomScale(v2.Transform):
    """Resize by a factor drawn uniformly from ``scale`` (images bilinear with antialias,
    masks nearest). Written here because torchvision's ``RandomResize``/``ScaleJitter`` draw
    sizes relative to a fixed target size, while the Cityscapes recipe (0.5-2.0) scales
    each input relative to itself; the resizing itself is torchvision's ``F.resize``."""

    def __init__(self, scale: tuple[float, float]):
        super().__init__()
        self.scale = (float(scale[0]), float(scale[1]))

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        lo, hi = self.scale
        factor = lo + (hi - lo) * float(torch.rand(()))
        return {"size": [max(1, round(height * factor)), max(1, round(width * factor))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return self._call_kernel(F.resize, inpt, size=params["size"], antialias=True)


class ResizeImage(v2.Resize):
    """``v2.Resize`` that leaves masks alone: evaluation scores at the label's own size."""

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, tv_tensors.Mask):
            return inpt
        return super().transform(inpt, params)


def _normalize(mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    mean, std = check_normalisation(mean, std)
    return [v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),
            v2.Normalize(mean=list(mean), std=list(std))]


def _size(value, what: str) -> tuple[int, int]:
    if isinstance(value, int):
        value = (value, value)
    try:
        height, width = (int(v) for v in value)
    except (TypeError, ValueError):
        raise RtsegError(f"{what} {value!r} is not (height, width)") from None
    if height < 1 or width < 1:
        raise RtsegError(f"{what} {value!r} must be positive")
    return height, width


def check_crop(crop) -> tuple[int, int]:
    return _size(crop, "crop")


def check_scale(scale) -> tuple[float, float] | None:
    """``(low, high)`` with ``0 < low <= high``; None for no scaling (also for ``(1, 1)``)."""
    if scale is None:
        return None
    lo, hi = (float(v) for v in scale)
    if not 0 < lo <= hi:
        raise RtsegError(f"scale {tuple(scale)} must be (low, high) with 0 < low <= high")
    return None if (lo, hi) == (1.0, 1.0) else (lo, hi)


def check_color_jitter(color_jitter: float) -> None:
    if color_jitter < 0:
        raise RtsegError(f"color_jitter {color_jitter} must be >= 0")


def train_transforms(crop: tuple[int, int] | None = (512, 1024), scale: tuple[float, float] | None = (0.5, 2.0),
                     mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD,
                     hflip: bool = True, color_jitter: float = 0.2) -> v2.Compose:
    """Random scale, random crop (padded with 0 on the image and 255 = ignore on the label
    when the scaled image is smaller than the crop), horizontal flip, colour jitter
    (brightness, contrast, saturation; no hue shift, colour is part of what tells classes
    apart), then float and normalised. ``crop=None`` keeps the whole scaled image."""
    steps: list[v2.Transform] = []
    scale = check_scale(scale)
    if scale is not None:
        steps.append(RandomScale(scale))
    if crop is not None:
        steps.append(v2.RandomCrop(check_crop(crop), pad_if_needed=True,
                                   fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}))
    if hflip:
        steps.append(v2.RandomHorizontalFlip())
    check_color_jitter(color_jitter)
    if color_jitter:
        steps.append(v2.ColorJitter(brightness=color_jitter, contrast=color_jitter, saturation=color_jitter))
    return v2.Compose(steps + _normalize(mean, std))


def eval_transforms(size: tuple[int, int] | None = None, mean: Sequence[float] = IMAGENET_MEAN,
                    std: Sequence[float] = IMAGENET_STD) -> v2.Compose:
    """Optional resize of the image to ``size`` (height, width), then float and normalised.
    The label is never resized: predictions are up-sampled to it."""
    steps: list[v2.Transform] = []
    if size is not None:
        steps.append(ResizeImage(list(_size(size, "size")), antialias=True))
    return v2.Compose(steps + _normalize(mean, std))
