"""Images for int8 calibration: a Cityscapes-layout folder, or random stand-ins for timing.

Static quantization needs a few representative inputs to fix the activation ranges. For
accuracy they must be real images (``images_from_root``); for a speed measurement alone the
content does not change the time, and ``random_calibration`` gives smooth random images
with a natural image's range, so nothing has to be on disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from rtseg.errors import RtsegError
from rtseg.models.segmentation import model_normalisation  # noqa: F401 (re-exported for the engines)


def normalise(images_uint8: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``[N,3,H,W]`` (or ``[3,H,W]``) uint8 -> float32 normalised with ``mean``/``std`` (torchvision's v2)."""
    from torchvision.transforms.v2 import functional as TF

    x = TF.to_dtype(images_uint8, torch.float32, scale=True)
    return TF.normalize(x, list(mean), list(std))


def random_images(count: int, size: tuple[int, int], seed: int = 0) -> torch.Tensor:
    """``[count,3,H,W]`` uint8 smooth random images (blobs and edges, not white noise)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, max(2, size[0] // 32), max(2, size[1] // 32), generator=generator)
    images = F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
    images = images + 0.05 * torch.randn(count, 3, *size, generator=generator)
    return (images.clamp(0, 1) * 255).round().to(torch.uint8)


def random_calibration(model, size: tuple[int, int], batch: int = 1, batches: int = 4) -> list[torch.Tensor]:
    mean, std = model_normalisation(model)
    images = normalise(random_images(batch * batches, size), mean, std)
    return list(images.split(batch))


def find_images(root: str | Path, splits: Sequence[str] = ("train", "val", "test")) -> list[Path]:
    """``leftImg8bit/<split>/<city>/*.png`` of a Cityscapes-layout root (first split that has any),
    else every .png/.jpg under ``root`` (a plain image folder)."""
    root = Path(root)
    if not root.is_dir():
        raise RtsegError(f"calibration data folder {root} does not exist")
    for split in splits:
        found = sorted((root / "leftImg8bit" / split).glob("**/*.png"))
        if found:
            return found
    found = sorted(p for p in root.glob("**/*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not found:
        raise RtsegError(f"no images under {root} (expected leftImg8bit/<split>/<city>/*.png or image files)")
    return found


def image_tensor(image: np.ndarray, size: tuple[int, int] | None = None,
                 device: str | torch.device = "cpu") -> torch.Tensor:
    """``HxWx3`` uint8 array -> ``[3,H,W]`` uint8 tensor on ``device``, resized (bilinear,
    antialiased) to ``size`` when given: the one way images enter a network here."""
    from torchvision.transforms.v2 import functional as TF

    # torch cannot wrap a read-only array (np.asarray of a PIL image) without a copy.
    image = np.ascontiguousarray(image) if image.flags.writeable else image.copy()
    x = torch.from_numpy(image).permute(2, 0, 1).to(device)
    if size is not None and tuple(x.shape[-2:]) != tuple(size):
        x = TF.resize(x, list(size), antialias=True)
    return x


def read_image(path: str | Path, size: tuple[int, int] | None = None) -> torch.Tensor:
    """``[3,H,W]`` uint8 RGB, resized (bilinear, antialiased) to ``size`` when given."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise RtsegError(f"cannot read image {path}: {exc}") from None
    return image_tensor(array, size)


def images_from_root(root: str | Path, size: tuple[int, int], count: int, mean: Sequence[float],
                     std: Sequence[float], batch: int = 1) -> list[torch.Tensor]:
    """Up to ``count`` normalised images of a Cityscapes-layout root (the train split first), in batches.

    The images are spread evenly over the sorted list, so the cities are mixed.
    """
    paths = find_images(root)
    step = max(1, len(paths) // max(1, count))
    chosen = paths[::step][:count]
    images = normalise(torch.stack([read_image(p, size) for p in chosen]), mean, std)
    batches = [b for b in images.split(batch) if len(b) == batch]  # graphs have a fixed batch size
    if not batches:
        raise RtsegError(f"{root} has {len(chosen)} images, fewer than one batch of {batch}")
    return batches
