"""Decoded images and label maps kept as ``.npy`` files: PNG decoding once, not once per epoch.

PNG decoding is zlib's inflate, and no decoder on PyPI inflates much faster (OpenCV, Pillow
with zlib-ng and torchvision all take about 30 ms of CPU for a 1024x2048 image here): it is
most of a Cityscapes training sample's cost. A training run reads every image hundreds of
times, so the first epoch writes each decoded array to ``<folder>/<key[:2]>/<key>.npy`` and
later epochs map that file (``np.load(mmap_mode="r")``: only the pages a crop touches are
read). The key is a hash of the source's absolute path, size and modification time: a changed
file is decoded again, and the arrays are the decoder's own output, so training is bit for bit
what it is without the cache. It costs the arrays' size on disk (6 MB per 1024x2048 RGB
image, 2 MB per label map; Cityscapes' 2975 training pairs: 25 GB). Files are written
atomically, so loader workers and runs can share one folder.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

import numpy as np

from rtseg.atomic import atomic_open
from rtseg.errors import RtsegError


class DecodeCache:
    """``cache.load(path, decode)``: ``decode(path)``'s array, from the cache when it holds it."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise RtsegError(f"decode cache {self.folder} exists and is not a folder")

    def __repr__(self) -> str:
        return f"DecodeCache({str(self.folder)!r})"

    def entry(self, path: str | os.PathLike) -> Path:
        try:
            st = os.stat(path)
        except OSError:
            raise RtsegError(f"{path} does not exist") from None
        key = hashlib.sha256(f"{os.path.abspath(path)}\t{st.st_size}\t{st.st_mtime_ns}".encode()).hexdigest()[:32]
        return self.folder / key[:2] / f"{key}.npy"

    def load(self, path: str | os.PathLike, decode: Callable[[str], np.ndarray]) -> np.ndarray:
        entry = self.entry(path)
        try:
            return np.load(entry, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:
            pass
        except (OSError, ValueError):
            pass  # damaged (a disk that filled up): decode again and replace it
        array = decode(str(path))
        with atomic_open(entry, "wb") as handle:
            np.save(handle, np.ascontiguousarray(array), allow_pickle=False)
        return array
