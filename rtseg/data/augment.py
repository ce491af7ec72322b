"""The training augmentation of ``rtseg.data.transforms.train_transforms``, fast: what the trainer runs.

Same random parameters, drawn from torch's generator in the same order as the torchvision v2
pipeline (scale factor, crop position, flip, colour-jitter order and factors), so one seed
gives the same geometry in both (tested); the work differs:

* the image stays ``HxWx3`` uint8 (OpenCV's kernels; no float copy on the CPU);
* crop before scaling, exactly: only the crop window of the scaled image is computed. When
  enlarging, ``cv2.warpAffine`` samples the window bilinearly with the mapping of a full
  resize (half-pixel centres, edge pixels replicated), so a 2x-scaled 1024x2048 image costs a
  512x1024 window, not 2048x4096 pixels; when shrinking, torch's own antialiased uint8 kernel
  runs on the ``HxWx3`` array as it is (a channels-last view: no copy, half the time of the
  same kernel on a CHW copy, and pixel for pixel torchvision's result), then the crop;
* labels take torch's nearest-neighbour source index (``floor(dst * in / out)`` in float32)
  for the window's rows and columns only: the same ids at the same places as torchvision's;
* colour jitter and normalisation run on the device (``to_network_input``): the loader
  returns uint8 images (a quarter of the bytes to pin and copy) and the jitter's parameters,
  which torchvision's own kernels apply there to the same uint8 values as on the CPU.

The image equals torchvision's when shrinking and differs by bilinear rounding when enlarging
(OpenCV's 1/32-pixel fixed-point weights: a mean absolute difference below one grey level,
tested); labels are identical. Written here because neither
torchvision nor OpenCV crops before scaling or draws torchvision's parameters.
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np
import torch
from torch.nn import functional as F_torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from rtseg.data.dataset import IGNORE, ArrayTransform
from rtseg.data.processing import normalise
from rtseg.data.transforms import check_crop, check_scale, check_color_jitter
from rtseg.errors import RtsegError

_JITTER_OPS = 4  # brightness, contrast, saturation, hue: torchvision's order indices


class TrainAugmentation(ArrayTransform):
    """``train_transforms(crop, scale, hflip=, color_jitter=)`` on arrays; ``__call__(image, label)``
    returns ``{"image": uint8 3xhxw, "label": uint8 hxw (255 = ignore)}`` plus ``"jitter"``
    (float32 [8]: the order of the four operations, then their factors, NaN for unused)."""

    def __init__(self, crop: tuple[int, int] | None = (512, 1024), scale: tuple[float, float] | None = (0.5, 2.0),
                 hflip: bool = True, color_jitter: float = 0.2):
        self.crop = check_crop(crop) if crop is not None else None
        self.scale = check_scale(scale)
        self.hflip = bool(hflip)
        check_color_jitter(color_jitter)
        self.jitter = v2.ColorJitter(brightness=color_jitter, contrast=color_jitter, saturation=color_jitter) \
            if color_jitter else None

    def __repr__(self) -> str:
        return (f"TrainAugmentation(crop={self.crop}, scale={self.scale}, hflip={self.hflip}, "
                f"color_jitter={self.jitter is not None})")

    def params(self, height: int, width: int) -> dict:
        """Draws the parameters exactly as the torchvision pipeline does (same calls, same order)."""
        scaled = (height, width)
        if self.scale is not None:  # RandomScale.make_params
            low, high = self.scale
            factor = low + (high - low) * float(torch.rand(()))
            scaled = (max(1, round(height * factor)), max(1, round(width * factor)))
        top = left = 0
        crop = self.crop or scaled
        if self.crop is not None:  # v2.RandomCrop(pad_if_needed=True).make_params
            pad_top, pad_left = max(0, crop[0] - scaled[0]), max(0, crop[1] - scaled[1])
            padded = (scaled[0] + 2 * pad_top, scaled[1] + 2 * pad_left)
            top = int(torch.randint(0, padded[0] - crop[0] + 1, size=())) if padded[0] > crop[0] else 0
            left = int(torch.randint(0, padded[1] - crop[1] + 1, size=())) if padded[1] > crop[1] else 0
            top, left = top - pad_top, left - pad_left  # the window's origin in the scaled image
        flip = self.hflip and not bool(torch.rand(1) >= 0.5)  # v2.RandomHorizontalFlip(p=0.5)
        jitter = None
        if self.jitter is not None:
            drawn = self.jitter.make_params([])
            jitter = torch.full((2 * _JITTER_OPS,), math.nan, dtype=torch.float32)
            jitter[:_JITTER_OPS] = drawn["fn_idx"].to(torch.float32)
            for k, key in enumerate(("brightness_factor", "contrast_factor", "saturation_factor", "hue_factor")):
                if drawn[key] is not None:
                    jitter[_JITTER_OPS + k] = drawn[key]
        return {"scaled": scaled, "top": top, "left": left, "crop": tuple(crop), "flip": flip, "jitter": jitter}

    def __call__(self, image: np.ndarray, label: np.ndarray | None) -> dict[str, torch.Tensor]:
        height, width = image.shape[:2]
        p = self.params(height, width)
        out_image = scaled_window(image, p["scaled"], p["top"], p["left"], p["crop"])
        out_label = None if label is None else nearest_window(label, p["scaled"], p["top"], p["left"], p["crop"])
        if p["flip"]:
            out_image = cv2.flip(out_image, 1)
            out_label = None if out_label is None else cv2.flip(out_label, 1)
        item = {"image": torch.from_numpy(out_image).permute(2, 0, 1)}
        if out_label is not None:
            item["label"] = torch.from_numpy(out_label)
        if p["jitter"] is not None:
            item["jitter"] = p["jitter"]
        return item


def _valid(origin: int, length: int, size: int) -> tuple[int, int]:
    """The part ``[start, stop)`` of a window of ``length`` at ``origin`` that lies inside ``0..size``."""
    return max(0, -origin), min(length, size - origin)


def scaled_window(image: np.ndarray, scaled: Sequence[int], top: int, left: int, crop: Sequence[int]) -> np.ndarray:
    """The ``crop``-sized window at (``top``, ``left``) of ``image`` resized to ``scaled``, zeros outside."""
    height, width = image.shape[:2]
    out_h, out_w = int(scaled[0]), int(scaled[1])
    rows, cols = _valid(top, crop[0], out_h), _valid(left, crop[1], out_w)
    out = np.zeros((crop[0], crop[1], image.shape[2]), np.uint8)
    if rows[0] >= rows[1] or cols[0] >= cols[1]:
        return out
    target = out[rows[0]:rows[1], cols[0]:cols[1]]
    y0, x0 = top + rows[0], left + cols[0]  # the window's first valid pixel, in scaled coordinates
    if (out_h, out_w) == (height, width):
        target[...] = image[y0:y0 + target.shape[0], x0:x0 + target.shape[1]]
    elif out_h * out_w < height * width:
        view = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]  # channels-last strides
        resized = F_torch.interpolate(view, size=(out_h, out_w), mode="bilinear", antialias=True, align_corners=False)
        target[...] = resized[0, :, y0:y0 + target.shape[0], x0:x0 + target.shape[1]].permute(1, 2, 0).numpy()
    else:
        sy, sx = height / out_h, width / out_w
        # destination pixel (x, y) of the window samples the source at (x0 + x + 0.5) * sx - 0.5: a full resize's map
        inverse = np.array([[sx, 0.0, (x0 + 0.5) * sx - 0.5], [0.0, sy, (y0 + 0.5) * sy - 0.5]])
        cv2.warpAffine(np.ascontiguousarray(image), inverse, (target.shape[1], target.shape[0]), dst=target,
                       flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
    return out


def nearest_index(size_in: int, size_out: int) -> np.ndarray:
    """Torch's nearest-neighbour source index per output position (``interpolate(mode="nearest")``)."""
    if size_in == size_out:
        return np.arange(size_out)
    scale = np.float32(size_in) / np.float32(size_out)
    index = np.floor(np.arange(size_out, dtype=np.float32) * scale).astype(np.int64)
    return np.minimum(index, size_in - 1)


def nearest_window(label: np.ndarray, scaled: Sequence[int], top: int, left: int, crop: Sequence[int]) -> np.ndarray:
    """The ``crop``-sized window of ``label`` resized (nearest) to ``scaled``, 255 (ignore) outside."""
    out = np.full((crop[0], crop[1]), IGNORE, np.uint8)
    rows, cols = _valid(top, crop[0], int(scaled[0])), _valid(left, crop[1], int(scaled[1]))
    if rows[0] >= rows[1] or cols[0] >= cols[1]:
        return out
    source_rows = nearest_index(label.shape[0], int(scaled[0]))[top + rows[0]: top + rows[1]]
    source_cols = nearest_index(label.shape[1], int(scaled[1]))[left + cols[0]: left + cols[1]]
    out[rows[0]:rows[1], cols[0]:cols[1]] = np.take(np.take(label, source_rows, axis=0), source_cols, axis=1)
    return out


def apply_color_jitter(images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """``[N, 3, H, W]`` uint8 and ``[N, 8]`` jitter parameters -> the jittered uint8 images, with
    torchvision's kernels in each image's drawn order (on whatever device the images are)."""
    kernels = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue)
    rows = params.detach().cpu().tolist()  # a few numbers per image: one transfer
    out = []
    for image, row in zip(images, rows):
        for fn_id in row[:_JITTER_OPS]:
            factor = row[_JITTER_OPS + int(fn_id)]
            if not math.isnan(factor):
                image = kernels[int(fn_id)](image, factor)
        out.append(image)
    return torch.stack(out)


def to_network_input(batch: dict, device: torch.device, mean: Sequence[float], std: Sequence[float]
                     ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A loader batch -> ``(normalised float images, int64 labels or None)`` on ``device``.

    uint8 images (``TrainAugmentation``) get their colour jitter and normalisation here, on the
    device; float images (a torchvision pipeline) are already normalised."""
    images = batch["image"].to(device, non_blocking=True)
    if images.dtype == torch.uint8:
        if "jitter" in batch:
            images = apply_color_jitter(images, batch["jitter"])
        images = normalise(images, mean, std)
    elif not images.is_floating_point():
        raise RtsegError(f"loader images must be uint8 or float, got {images.dtype}")
    labels = batch.get("label")
    if labels is not None:
        labels = labels.to(device, non_blocking=True).long()
    return images, labels
