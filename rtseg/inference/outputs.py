"""Prediction files: the ids a dataset's label files store (Cityscapes' test server takes labelId
PNGs), class ids, or pictures for people in the dataset's colours.

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
from rtseg.data.cityscapes import CITYSCAPES
from rtseg.data.dataset import DatasetInfo
from rtseg.data.labels import overlay
from rtseg.errors import RtsegError

# labelids: the ids the dataset's label files store; trainids = classids: 0..C-1
FORMATS = ("labelids", "trainids", "classids", "color", "overlay")
OVERLAY_ALPHA = 0.5  # share of the class colour in an overlay


def default_format(dataset: DatasetInfo) -> str:
    """Cityscapes: the test server's label ids; any other dataset: class ids (what ``rtseg score`` reads)."""
    return "labelids" if dataset.scoring == "cityscapes" else "classids"


def render(train_ids: np.ndarray, image: np.ndarray, fmt: str, dataset: DatasetInfo = CITYSCAPES) -> np.ndarray:
    """The picture to write for ``fmt``: stored ids, class ids, colours, or colours over the image."""
    if fmt == "labelids":
        table = dataset.id_table()
        ids = table[np.asarray(train_ids, np.uint8)]
        return ids.astype(np.uint8) if table.max() < 256 else ids
    if fmt in ("trainids", "classids"):
        return train_ids.astype(np.uint8)
    if fmt == "color":
        return dataset.colorize(train_ids)
    if fmt == "overlay":
        return overlay(image, train_ids, OVERLAY_ALPHA, dataset.palette())
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
