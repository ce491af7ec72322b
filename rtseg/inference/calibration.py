"""Images for int8 calibration: a dataset folder's images, or random stand-ins for timing.

Static quantization needs a few representative inputs to fix the activation ranges. For
accuracy they must be real images (``images_from_root``); for a speed measurement alone the
content does not change the time, and ``random_images`` gives smooth random images with a
natural image's range, so nothing has to be on disk. Both go through
``rtseg.data.processing`` like every other network input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from rtseg.data.io import list_images
from rtseg.data.layouts import detect_layout, open_dataset
from rtseg.data.processing import image_to_input, normalise
from rtseg.errors import RtsegError
from rtseg.normalisation import model_normalisation


def random_images(count: int, size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """``[count,3,H,W]`` uint8 smooth random images (blobs and edges, not white noise)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, max(2, size[0] // 32), max(2, size[1] // 32), generator=generator)
    images = F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
    images = images + 0.05 * torch.randn(count, 3, *size, generator=generator)
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


def random_inputs(model: torch.nn.Module, size: tuple[int, int], count: int = 1, seed: int = 0,
                  device: str | torch.device = "cpu") -> torch.Tensor:
    """``[count,3,H,W]`` normalised random images for ``model`` (its own mean and std)."""
    mean, std = model_normalisation(model)
    return normalise(random_images(count, size, seed).to(device), mean, std)


def random_calibration(model: torch.nn.Module, size: tuple[int, int], batch: int = 1,
                       batches: int = 4) -> list[torch.Tensor]:
    return list(random_inputs(model, size, batch * batches).split(batch))


def find_images(root: str | Path, splits: Sequence[str] = ("train", "val", "test")) -> list[Path]:
    """The images of the first split a dataset root has (Cityscapes, CamVid or a folder dataset:
    images only, never its label PNGs), else every image under a plain folder."""
    root = Path(root)
    if not root.is_dir():
        raise RtsegError(f"calibration data folder {root} does not exist")
    if detect_layout(root) is not None:
        layout = open_dataset(root)
        for split in splits:
            if split not in layout.split_names():
                continue
            try:
                found = layout.image_files(split)
            except RtsegError:  # the layout has no such split here
                continue
            if found:
                return [Path(p) for p in found]
    try:
        return [path for path, _ in list_images(root)]
    except RtsegError:
        raise RtsegError(f"no images under {root} (expected a dataset root or a folder of images)") from None


def images_from_root(root: str | Path, size: tuple[int, int], count: int, mean: Sequence[float],
                     std: Sequence[float], batch: int = 1) -> list[torch.Tensor]:
    """Up to ``count`` normalised images of ``root`` (a dataset's train split first, or an image
    folder), in batches; spread evenly over the sorted list, so the cities are mixed."""
    paths = find_images(root)
    step = max(1, len(paths) // max(1, count))
    chosen = paths[::step][:count]
    images = torch.cat([image_to_input(p, mean, std, size) for p in chosen])
    batches = [b for b in images.split(batch) if len(b) == batch]  # graphs have a fixed batch size
    if not batches:
        raise RtsegError(f"{root} has {len(chosen)} images, fewer than one batch of {batch}")
    return batches


def calibration_batches(source: str | Path | Sequence[np.ndarray], size: tuple[int, int], mean, std,
                        count: int = 16, batch: int = 1) -> list[torch.Tensor]:
    """Normalised batches from a folder (``images_from_root``) or a list of ``HxWx3`` uint8 images."""
    if isinstance(source, (str, Path)):
        return images_from_root(source, size, count, mean, std, batch)
    images = [image_to_input(image, mean, std, size) for image in source]
    if not images:
        raise RtsegError("the calibration image list is empty")
    return [b for b in torch.cat(images).split(batch) if len(b) == batch]
