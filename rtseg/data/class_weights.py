"""Class weights for the weighted cross entropy, from one streaming pass over the label PNGs.

* ``enet`` (the paper's choice, Paszke et al. 2016): ``w_c = 1 / ln(1.02 + p_c)``, with
  ``p_c`` the share of class ``c`` among all labelled pixels (ignore excluded).
* ``median`` (median frequency balancing, Eigen & Fergus 2015): ``w_c = median(f) / f_c``,
  ``f_c`` = pixels of ``c`` / labelled pixels of the images where ``c`` appears; a class
  that never appears gets weight 0 (it can contribute no loss anyway).
* ``uniform``: all ones.

Only labels are read (no images), counted with a vectorised ``bincount``, optionally in
worker processes. The counts are cached as JSON in ``cache_dir`` keyed by the dataset root,
split and annotation; a fingerprint of the file list (paths, sizes, mtimes) makes the cache
recompute when files change.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from rtseg.atomic import atomic_open
from rtseg.data.cityscapes import read_label_ids
from rtseg.data.io import read_label_png
from rtseg.data.labels import LABEL_TO_TRAIN
from rtseg.errors import RtsegError

METHODS = ("enet", "median", "uniform")
ENET_C = 1.02
_CACHE_VERSION = 1


def class_weights(dataset_or_label_paths, num_classes: int = 19, method: str = "enet",
                  cache_dir: str | os.PathLike | None = None, workers: int = 0,
                  progress: bool = True) -> torch.Tensor:
    """Weights per train id (float32 tensor of ``num_classes``).

    ``dataset_or_label_paths``: a ``CityscapesDataset`` (its ``label_files`` are used) or a
    sequence of label PNG paths, official ``*labelIds.png`` (mapped to train ids) or
    ``*labelTrainIds.png`` (used as they are).
    """
    if method not in METHODS:
        raise RtsegError(f"class weight method {method!r} is not one of {', '.join(METHODS)}")
    if num_classes < 1:
        raise RtsegError(f"num_classes {num_classes} must be at least 1")
    if method == "uniform":
        return torch.ones(num_classes, dtype=torch.float32)
    paths, key, reader = _label_paths(dataset_or_label_paths)
    pixels, image_pixels = label_statistics(paths, num_classes, cache_dir, key, workers, progress, reader)
    if pixels.sum() == 0:
        raise RtsegError(f"no labelled pixels of train ids 0..{num_classes - 1} in {len(paths)} label files "
                         f"under {key['root']}")
    return weights_from_counts(pixels, image_pixels, method)


def weights_from_counts(pixels, image_pixels, method: str = "enet") -> torch.Tensor:
    """The ``method``'s weights from the per-class counts (``label_statistics``, ``rtseg.data.check``)."""
    if method not in METHODS:
        raise RtsegError(f"class weight method {method!r} is not one of {', '.join(METHODS)}")
    if method == "uniform":
        return torch.ones(len(pixels), dtype=torch.float32)
    if method == "enet":
        return enet_weights(pixels)
    return median_frequency_weights(pixels, image_pixels)


def enet_weights(pixel_counts) -> torch.Tensor:
    """``1 / ln(1.02 + p_c)`` with ``p_c`` the class's share of the labelled pixels."""
    counts = np.asarray(pixel_counts, dtype=np.float64)
    share = counts / counts.sum()
    return torch.from_numpy(1.0 / np.log(ENET_C + share)).float()


def median_frequency_weights(pixel_counts, image_pixels) -> torch.Tensor:
    counts = np.asarray(pixel_counts, dtype=np.float64)
    totals = np.asarray(image_pixels, dtype=np.float64)
    present = counts > 0
    freq = np.zeros_like(counts)
    freq[present] = counts[present] / totals[present]
    weights = np.zeros_like(counts)
    weights[present] = np.median(freq[present]) / freq[present]
    return torch.from_numpy(weights).float()


def _label_paths(source) -> tuple[list[str], dict, Callable[[str], np.ndarray] | None]:
    files = getattr(source, "label_files", None)
    if files is not None or hasattr(source, "samples"):
        if not files:
            raise RtsegError(f"{source!r} has no label files (the test split has no labels)")
        paths = [str(p) for p in files]
        layout = getattr(source, "layout", None)
        key = layout.cache_key(source.split) if layout is not None else \
            {"root": str(Path(source.root).resolve()), "split": source.split,
             "annotation": getattr(source, "annotation", "fine")}
        return paths, key, layout.read_label if layout is not None else None
    if isinstance(source, (str, os.PathLike)) or not isinstance(source, Sequence):
        raise RtsegError(f"class weights need a CityscapesDataset or a list of label PNG paths, not {source!r}")
    paths = [str(p) for p in source]
    if not paths:
        raise RtsegError("class weights: the list of label files is empty")
    root = os.path.commonpath([str(Path(p).resolve().parent) for p in paths])
    return paths, {"root": root, "split": "files", "annotation": "labels"}, None


def fingerprint(paths: Sequence[str]) -> str:
    """sha256 over (path, size, mtime) of every file: changes when any label file changes."""
    digest = hashlib.sha256()
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            raise RtsegError(f"label file {path} does not exist") from None
        digest.update(f"{path}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def label_statistics(paths: Sequence[str], num_classes: int = 19, cache_dir: str | os.PathLike | None = None,
                     key: dict | None = None, workers: int = 0, progress: bool = True,
                     reader: Callable[[str], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(pixels per class, labelled pixels of the images containing each class), cached.

    ``reader(path)`` -> class ids (a layout's ``read_label``); None: Cityscapes files by name."""
    key = dict(key or {"root": os.path.commonpath([str(Path(p).resolve()) for p in paths]),
                       "split": "files", "annotation": "labels"})
    cache_file = None
    if cache_dir is not None:
        name = hashlib.sha256(json.dumps([key["root"], key["split"], key["annotation"]]).encode()).hexdigest()[:16]
        cache_file = Path(cache_dir) / f"label_counts_{key['split']}_{name}.json"
        stamp = fingerprint(paths)
        cached = _read_cache(cache_file)
        if cached and cached.get("version") == _CACHE_VERSION and cached.get("fingerprint") == stamp \
                and cached.get("num_classes") == num_classes:
            return np.array(cached["pixels"], np.int64), np.array(cached["image_pixels"], np.int64)
    pixels, image_pixels = _count(paths, num_classes, workers, progress, reader)
    if cache_file is not None:
        _write_cache(cache_file, {"version": _CACHE_VERSION, **key, "num_classes": num_classes,
                                  "images": len(paths), "fingerprint": stamp,
                                  "pixels": pixels.tolist(), "image_pixels": image_pixels.tolist()})
    return pixels, image_pixels


def _count(paths: Sequence[str], num_classes: int, workers: int, progress: bool,
           reader: Callable[[str], np.ndarray] | None) -> tuple[np.ndarray, np.ndarray]:
    from tqdm import tqdm

    pixels = np.zeros(num_classes, np.int64)
    image_pixels = np.zeros(num_classes, np.int64)
    chunks = [list(paths[i:i + 16]) for i in range(0, len(paths), 16)]
    bar = tqdm(total=len(paths), desc="class weights: counting labels", unit="img", disable=not progress)
    if workers and workers > 0 and len(chunks) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = pool.map(_count_chunk, chunks, [num_classes] * len(chunks), [reader] * len(chunks))
            for chunk, (p, ip) in zip(chunks, results):
                pixels += p
                image_pixels += ip
                bar.update(len(chunk))
    else:
        for chunk in chunks:
            p, ip = _count_chunk(chunk, num_classes, reader)
            pixels += p
            image_pixels += ip
            bar.update(len(chunk))
    bar.close()
    return pixels, image_pixels


def _count_chunk(paths: list[str], num_classes: int,
                 reader: Callable[[str], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    pixels = np.zeros(num_classes, np.int64)
    image_pixels = np.zeros(num_classes, np.int64)
    for path in paths:
        if reader is not None:
            train = reader(path)
        elif path.endswith("labelTrainIds.png"):
            train = read_label_png(path)
            train = np.where(train < 256, train, 255).astype(np.uint8)
        else:
            train = LABEL_TO_TRAIN[read_label_ids(path)]
        add_image_counts(pixels, image_pixels, np.bincount(train.ravel(), minlength=256)[:num_classes])
    return pixels, image_pixels


def add_image_counts(pixels: np.ndarray, image_pixels: np.ndarray, counts: np.ndarray) -> None:
    """Adds one image's pixels per class: to ``pixels``, and its labelled pixels to ``image_pixels``
    of every class it contains (median frequency balancing's denominator)."""
    counts = np.asarray(counts, np.int64)
    pixels += counts
    image_pixels[counts > 0] += counts.sum()


def _read_cache(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # missing or damaged: recompute


def _write_cache(path: Path, data: dict) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=1)
