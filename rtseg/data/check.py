"""``rtseg data check`` and the check every training run starts with: every label read once.

For each split: images without labels (an error) and labels without images (a warning: nothing
trains on them), then, in parallel worker processes, every label file decoded once and its
image's header read (``PIL.Image.verify`` also walks a PNG's chunks, which finds truncated
files without decoding them): unreadable files, label values outside the class set (the file
and the values as stored), label and image of different sizes, and per class the pixels and
the images it appears in, from which the class weights follow. Problems come back in file
order, whatever the workers' timing, so the first one named is always the same file.

A clean split's result is cached as JSON (``cache_dir``), keyed by the layout, what its
stored values mean (``DatasetLayout.table_digest``) and a fingerprint of every file's path,
size and modification time: a training run re-checks only what changed.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from rtseg.atomic import atomic_open
from rtseg.data.class_weights import METHODS, add_image_counts, weights_from_counts
from rtseg.data.dataset import DatasetLayout, Sample, split_parts
from rtseg.data.io import read_image
from rtseg.errors import RtsegError

_CACHE_VERSION = 1
_CHUNK = 8  # files per task: enough to amortise the inter-process traffic


@dataclass
class Problem:
    path: str
    message: str  # one line naming the file and the value
    severity: str = "error"  # "error" or "warning"


@dataclass
class SplitReport:
    split: str
    images: int = 0
    labels: int = 0
    problems: list[Problem] = field(default_factory=list)
    pixels: list[int] = field(default_factory=list)  # per class
    image_pixels: list[int] = field(default_factory=list)  # labelled pixels of the images holding each class
    images_with_class: list[int] = field(default_factory=list)
    ignored_pixels: int = 0
    sizes: dict[str, int] = field(default_factory=dict)  # "HxW" -> images

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    def weights(self, method: str = "enet") -> list[float] | None:
        """The class weights training would use (None when no pixel is labelled)."""
        if not self.pixels or sum(self.pixels) == 0:
            return None
        return [float(w) for w in weights_from_counts(np.array(self.pixels), np.array(self.image_pixels), method)]

    def first_error_line(self) -> str:
        """The first error, plus how many more there are: one line for a training run to stop with."""
        errors = self.errors
        more = f" ({len(errors) - 1} more problems in split {self.split!r}: 'rtseg data check' lists them)" \
            if len(errors) > 1 else ""
        return errors[0].message + more


@dataclass
class CheckReport:
    root: str
    layout: str
    dataset: dict  # DatasetInfo.to_dict()
    splits: list[SplitReport]

    @property
    def ok(self) -> bool:
        return not any(s.errors for s in self.splits)

    def as_dict(self) -> dict:
        out = asdict(self)
        for split, report in zip(out["splits"], self.splits):
            split["errors"] = len(report.errors)
            split["class_weights"] = {m: report.weights(m) for m in METHODS if m != "uniform"}
        out["ok"] = self.ok
        return out


def check_dataset(layout: DatasetLayout, splits: Sequence[str] | None = None, workers: int | None = None,
                  progress: bool = True, decode_images: bool = False) -> CheckReport:
    """Check ``splits`` (default: every split the layout has) of ``layout``; see the module docstring."""
    names = list(splits) if splits else [s for s in layout.split_names() if _exists(layout, s)]
    if not names:
        raise RtsegError(f"{layout.root} has no split to check (expected one of {', '.join(layout.split_names())})")
    reports = [check_split(layout, name, workers, progress, decode_images=decode_images) for name in names]
    return CheckReport(str(layout.root), layout.kind, layout.info.to_dict(), reports)


def _exists(layout: DatasetLayout, split: str) -> bool:
    try:
        layout.scan(split)
    except RtsegError:
        return False
    return True


def check_split(layout: DatasetLayout, split: str, workers: int | None = None, progress: bool = True,
                cache_dir: str | os.PathLike | None = None, decode_images: bool = False) -> SplitReport:
    """One split (``a+b`` joins splits) checked; cached in ``cache_dir`` when it is clean."""
    report = SplitReport(split)
    samples: list[Sample] = []
    for part in split_parts(split):
        found = layout.scan(part)
        samples += found.samples
        report.problems += [Problem(image, f"image {image} has no label file: expected {label}")
                            for image, label in found.images_without_labels]
        report.problems += [Problem(path, message) for path, message in found.problems]
        report.problems += [Problem(label, f"label file {label} has no image in split {part!r}", "warning")
                            for label in found.labels_without_images]
        report.images += len(found.samples) + len(found.images_without_labels)
        report.labels += len(found.samples) + len(found.labels_without_images)
    labelled = [s for s in samples if s.label is not None]
    cache_file = stamp = None
    if cache_dir is not None and labelled:
        stamp = _fingerprint(layout, split, labelled, decode_images)
        cache_file = Path(cache_dir) / f"check_{split}_{stamp[:16]}.json"
        cached = _read_cache(cache_file, stamp)
        if cached is not None:
            cached.problems = report.problems + cached.problems
            return cached
    num_classes = layout.info.num_classes
    pixels, image_pixels = np.zeros(num_classes, np.int64), np.zeros(num_classes, np.int64)
    with_class = np.zeros(num_classes, np.int64)
    for result in _map(layout, labelled, workers, progress, decode_images, split):
        counts, ignored, size, problems = result
        report.problems += [Problem(path, message) for path, message in problems]
        if counts is not None:
            add_image_counts(pixels, image_pixels, counts)
            with_class += np.asarray(counts) > 0
            report.ignored_pixels += ignored
        if size:
            report.sizes[size] = report.sizes.get(size, 0) + 1
    report.pixels, report.image_pixels = pixels.tolist(), image_pixels.tolist()
    report.images_with_class = with_class.tolist()
    if cache_file is not None and not report.errors:
        _write_cache(cache_file, stamp, report)
    return report


def _map(layout: DatasetLayout, samples: list[Sample], workers: int | None, progress: bool, decode_images: bool,
         split: str):
    from tqdm import tqdm

    chunks = [samples[i:i + _CHUNK] for i in range(0, len(samples), _CHUNK)]
    workers = min(8, os.cpu_count() or 1) if workers is None else workers
    bar = tqdm(total=len(samples), desc=f"checking {split}", unit="label", disable=not progress, file=sys.stderr,
               leave=False)
    try:
        if workers <= 0 or len(chunks) <= 1:
            for chunk in chunks:
                yield from check_files(layout, chunk, decode_images)
                bar.update(len(chunk))
            return
        with ProcessPoolExecutor(max_workers=min(workers, len(chunks)), initializer=_worker_setup) as pool:
            for chunk, results in zip(chunks, pool.map(check_files, [layout] * len(chunks), chunks,
                                                        [decode_images] * len(chunks))):
                yield from results
                bar.update(len(chunk))
    finally:
        bar.close()


def _worker_setup() -> None:
    """One thread per checking worker: the work is decoding, and forked OpenMP pools can hang."""
    import torch

    torch.set_num_threads(1)


def check_files(layout: DatasetLayout, samples: Sequence[Sample], decode_images: bool = False) -> list[tuple]:
    """Per sample ``(class pixels or None, ignored pixels, "HxW" or None, [(path, problem)])``."""
    return [_check_one(layout, sample, decode_images) for sample in samples]


def _check_one(layout: DatasetLayout, sample: Sample, decode_images: bool) -> tuple:
    problems: list[tuple[str, str]] = []
    image_size = _image_size(sample.image, decode_images, problems)
    try:
        stored = layout.read_stored(sample.label)
    except RtsegError as exc:
        return None, 0, None, problems + [(sample.label, str(exc))]
    counts, invalid = layout.histogram(stored)
    if invalid:
        problems.append((sample.label, layout.invalid_message(sample.label, invalid)))
    height, width = stored.shape
    if image_size is not None and image_size != (height, width):
        problems.append((sample.label, f"label file {sample.label} is {width}x{height} but its image "
                                       f"{sample.image} is {image_size[1]}x{image_size[0]}"))
    ignored = int(stored.size - counts.sum())
    return counts.tolist(), ignored, f"{height}x{width}", problems


def _image_size(path: str, decode: bool, problems: list) -> tuple[int, int] | None:
    if decode:
        try:
            return read_image(path).shape[:2]
        except RtsegError as exc:
            problems.append((path, str(exc)))
            return None
    try:
        with Image.open(path) as image:
            size = (image.height, image.width)
            image.verify()
        return size
    except (OSError, ValueError, SyntaxError) as exc:
        text = str(exc).strip().splitlines()
        problems.append((path, f"cannot read image {path}: {text[0] if text else type(exc).__name__}"))
        return None


def _fingerprint(layout: DatasetLayout, split: str, samples: Sequence[Sample], decode_images: bool) -> str:
    digest = hashlib.sha256(f"{_CACHE_VERSION}\t{layout.kind}\t{layout.table_digest()}\t{split}\t"
                            f"{decode_images}\n".encode())
    for sample in samples:
        for path in (sample.image, sample.label):
            st = os.stat(path)
            digest.update(f"{path}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def _read_cache(path: Path, stamp: str) -> SplitReport | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if data.get("fingerprint") != stamp:
        return None
    report = data["report"]
    report["problems"] = [Problem(**p) for p in report.get("problems", [])]
    return SplitReport(**report)


def _write_cache(path: Path, stamp: str, report: SplitReport) -> None:
    body = asdict(report)
    body["problems"] = []  # the scan's own findings are re-made every time
    with atomic_open(path, "w", encoding="utf-8") as handle:
        json.dump({"fingerprint": stamp, "report": body}, handle)
