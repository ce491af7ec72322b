"""Prediction files: the Cityscapes test server's labelId PNGs, or pictures for people.

The official evaluator finds the prediction of ``<city>_<seq>_<frame>_leftImg8bit.png`` by
searching the prediction folder (recursively) for ``*<city>_<seq>_<frame>*.png``; writing
each prediction under the input's own name and relative folder satisfies it, and keeps
predictions of different folders apart.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Iterable

import numpy as np

from rtseg.data.labels import colorize, train_to_label_ids
from rtseg.errors import RtsegError
from rtseg.atomic import atomic_open

FORMATS = ("labelids", "trainids", "color", "overlay")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".webp")
OVERLAY_ALPHA = 0.5  # share of the class colour in an overlay


def list_images(source: str | Path) -> list[tuple[Path, Path]]:
    """``(image path, path relative to the input)`` for a file, or every image under a folder."""
    source = Path(source)
    if source.is_file():
        return [(source, Path(source.name))]
    if not source.is_dir():
        raise RtsegError(f"input {source} does not exist")
    images = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise RtsegError(f"input folder {source} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return [(p, p.relative_to(source)) for p in images]


def read_rgb(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as exc:
        raise RtsegError(f"cannot read image {path}: {exc}".splitlines()[0]) from None


def render(train_ids: np.ndarray, image: np.ndarray, fmt: str) -> np.ndarray:
    """The picture to write for ``fmt``: label ids, train ids, colours, or colours over the image."""
    if fmt == "labelids":
        return train_to_label_ids(train_ids)
    if fmt == "trainids":
        return train_ids.astype(np.uint8)
    colours = colorize(train_ids)
    if fmt == "color":
        return colours
    if fmt == "overlay":
        blend = (1 - OVERLAY_ALPHA) * image.astype(np.float32) + OVERLAY_ALPHA * colours.astype(np.float32)
        return np.clip(np.rint(blend), 0, 255).astype(np.uint8)
    raise RtsegError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")


def output_path(output_dir: Path, relative: Path) -> Path:
    """The input's relative path under ``output_dir``, as a PNG (never outside ``output_dir``)."""
    target = (output_dir / relative).with_suffix(".png")
    if ".." in relative.parts or relative.is_absolute():
        raise RtsegError(f"input path {relative} leaves the output folder")
    return target


def write_png(array: np.ndarray, path: Path) -> None:
    """PNG written to a temporary file, then renamed: a reader never sees half a file."""
    from PIL import Image

    with atomic_open(path, "wb") as handle:
        Image.fromarray(array).save(handle, format="PNG")


def write_zip(files: Iterable[Path], root: Path, zip_path: Path) -> None:
    """Zip ``files`` (stored under their path relative to ``root``), atomically."""
    with atomic_open(zip_path, "wb") as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, path.relative_to(root).as_posix())
