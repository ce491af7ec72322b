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

from rtseg.atomic import atomic_open
from rtseg.data.labels import colorize, overlay, train_to_label_ids
from rtseg.errors import RtsegError

FORMATS = ("labelids", "trainids", "color", "overlay")
OVERLAY_ALPHA = 0.5  # share of the class colour in an overlay


def render(train_ids: np.ndarray, image: np.ndarray, fmt: str) -> np.ndarray:
    """The picture to write for ``fmt``: label ids, train ids, colours, or colours over the image."""
    if fmt == "labelids":
        return train_to_label_ids(train_ids)
    if fmt == "trainids":
        return train_ids.astype(np.uint8)
    if fmt == "color":
        return colorize(train_ids)
    if fmt == "overlay":
        return overlay(image, train_ids, OVERLAY_ALPHA)
    raise RtsegError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")


def output_path(output_dir: Path, relative: Path) -> Path:
    """The input's relative path under ``output_dir``, as a PNG (never outside ``output_dir``)."""
    if ".." in relative.parts or relative.is_absolute():
        raise RtsegError(f"input path {relative} leaves the output folder")
    return (output_dir / relative).with_suffix(".png")


def write_zip(files: Iterable[Path], root: Path, zip_path: Path) -> None:
    """Zip ``files`` (stored under their path relative to ``root``), atomically."""
    with atomic_open(zip_path, "wb") as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files:
            archive.write(path, path.relative_to(root).as_posix())
