"""Reading images and label maps, writing PNGs: the one implementation every module calls.

* ``read_image(path)`` -> ``HxWx3`` uint8 RGB array, whatever the file's mode;
* ``read_label_png(path)`` -> the single-channel integers as stored (8- or 16-bit; a palette
  PNG gives its indices, which is what Pascal-VOC-style label files mean);
* ``write_png(path, array)`` -> an RGB(A), grey or 16-bit PNG, written atomically;
* ``list_images(source)`` -> every image file of a file or a folder (recursively).

Decoding is Pillow's: a truncated or corrupt file raises a clean exception that becomes one
line naming the file (OpenCV returns None and prints libpng noise). Encoding is OpenCV's,
about 3x faster than Pillow's for the synthetic dataset's thousands of PNGs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from rtseg.atomic import atomic_open
from rtseg.errors import RtsegError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".webp")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _open(path: str | os.PathLike, what: str, rgb: bool) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as image:
            if rgb and image.mode != "RGB":
                image = image.convert("RGB")
            return np.array(image)
    except FileNotFoundError as exc:
        raise RtsegError(f"{what} {path} does not exist") from exc
    except (OSError, ValueError, SyntaxError) as exc:  # UnidentifiedImageError is an OSError
        raise RtsegError(f"cannot read {what} {path}: {_first_line(exc)}") from exc


def read_image(path: str | os.PathLike, what: str = "image") -> np.ndarray:
    """``HxWx3`` uint8 RGB pixels of an image file; one-line ``RtsegError`` naming a bad file."""
    return _open(path, what, rgb=True)


def read_label_png(path: str | os.PathLike, what: str = "label file") -> np.ndarray:
    """A single-channel id PNG as its stored integers (uint8 or uint16, palette indices as stored)."""
    ids = _open(path, what, rgb=False)
    if ids.ndim != 2:
        raise RtsegError(f"{what} {path} has {ids.shape[2]} channels: not a single-channel id PNG "
                         "(one integer id per pixel, not colours: is it a _color.png?)")
    if ids.dtype.kind not in "iu":
        raise RtsegError(f"{what} {path} holds {ids.dtype} pixels; expected integer ids (8- or 16-bit PNG)")
    return ids


def write_png(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write an RGB(A) uint8, grey uint8 or uint16 array as a PNG, atomically (temporary file, rename)."""
    import cv2

    path = Path(path)
    array = np.ascontiguousarray(array)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if array.ndim == 3:
        if array.shape[2] not in (3, 4):
            raise ValueError(f"cannot write a {array.shape[2]}-channel image as PNG ({path})")
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR if array.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    ok, data = cv2.imencode(".png", array)
    if not ok:  # pragma: no cover - OpenCV encodes every uint8/uint16 array
        raise RtsegError(f"could not encode {path} as PNG ({array.dtype}, shape {array.shape})")
    with atomic_open(path, "wb") as handle:
        handle.write(data.tobytes())
    return path


def list_images(source: str | os.PathLike) -> list[tuple[Path, Path]]:
    """``(image path, path relative to the input)`` for a file, or every image under a folder, sorted."""
    source = Path(source)
    if source.is_file():
        return [(source, Path(source.name))]
    if not source.is_dir():
        raise RtsegError(f"input {source} does not exist")
    images = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise RtsegError(f"input folder {source} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return [(p, p.relative_to(source)) for p in images]
