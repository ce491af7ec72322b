"""A picture of a dataset (any layout): a grid of images beside their colour labels (README, sanity checks)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from rtseg.atomic import atomic_open
from rtseg.data.dataset import DatasetInfo
from rtseg.data.io import read_image
from rtseg.data.layouts import open_dataset
from rtseg.errors import RtsegError


def _palette_image(rgb: np.ndarray, colors: int, info: DatasetInfo) -> Image.Image:
    """Palette PNG (small) whose palette holds the dataset's exact colours plus the photos' own."""
    exact = np.unique(np.concatenate([np.asarray(info.colors, np.uint8), [[0, 0, 0], [255, 255, 255]]]), axis=0)
    photo = Image.fromarray(rgb).quantize(colors=max(2, colors - len(exact)), method=Image.Quantize.MEDIANCUT)
    photo_colors = np.array(photo.getpalette()[: 3 * max(2, colors - len(exact))]).reshape(-1, 3)
    palette = np.concatenate([exact, photo_colors]).astype(np.uint8)[:256]
    reference = Image.new("P", (1, 1))
    reference.putpalette(palette.ravel().tolist())
    indexed = np.array(Image.fromarray(rgb).quantize(palette=reference, dither=Image.Dither.NONE))
    for k, color in enumerate(exact):  # Pillow's palette lookup is approximate: pin the label colours
        indexed[(rgb == color).all(-1)] = k
    image = Image.fromarray(indexed, mode="P")
    image.putpalette(palette.ravel().tolist())
    return image


def save_preview(root: str | os.PathLike, out_path: str | os.PathLike, split: str = "train", count: int = 6,
                 columns: int = 2, height: int = 160, colors: int = 256) -> Path:
    """Write ``count`` samples of ``split`` as (image | colour labels) pairs, ``columns`` pairs
    per row, each picture ``height`` pixels high, as a palette PNG (``colors`` colours keep it
    small). Returns the written path."""
    layout = open_dataset(root)
    files = layout.samples(split)[:count]
    if count < 1 or columns < 1 or height < 8:
        raise RtsegError(f"preview: count {count}, columns {columns} and height {height} are too small")
    cells = []
    for sample in files:
        image = Image.fromarray(read_image(sample.image))
        width = round(image.width * height / image.height)
        image = np.asarray(image.resize((width, height), Image.Resampling.BILINEAR))
        ids = np.asarray(Image.fromarray(layout.read_label(sample.label)).resize((width, height),
                                                                                Image.Resampling.NEAREST))
        labels = layout.info.colorize(ids)  # class colours, ignored pixels black
        cells.append(np.concatenate([image, np.full((height, 4, 3), 255, np.uint8), labels,
                                     np.full((height, 12, 3), 255, np.uint8)], axis=1))
    rows = []
    for i in range(0, len(cells), columns):
        row = cells[i:i + columns]
        row += [np.full_like(cells[0], 255)] * (columns - len(row))
        rows.append(np.concatenate(row, axis=1))
        rows.append(np.full((6, rows[-1].shape[1], 3), 255, np.uint8))
    grid = np.concatenate(rows[:-1], axis=0)[:, :-12]
    out = Path(out_path)
    with atomic_open(out, "wb") as handle:
        _palette_image(grid, colors, layout.info).save(handle, format="PNG", optimize=True)
    return out
