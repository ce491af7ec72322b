"""One dataset interface: a description (``DatasetInfo``) plus a layout reader (``DatasetLayout``).

Everything above the data layer (trainer, evaluator, metrics, predict, synth, benchmark,
report) sees a dataset only through these:

* ``DatasetInfo``: name, class names, colours, the ignore value of class-id maps (255), the
  ids the label files store per class (what ``rtseg predict --format labelids`` writes) and
  which scores apply (``scoring="cityscapes"``: the official IoU, iIoU and category scores;
  ``"confusion"``: IoU, pixel and mean accuracy from one confusion matrix). It travels in
  checkpoints and ``results.json`` as a plain dict.
* ``DatasetLayout``: where the files of a split are (``scan``/``samples``) and how a stored
  label becomes class ids (``label_table``, a lookup over the stored values: class id, 255
  for ignored values, -1 for values that are not in the class set, which are refused with the
  file and the values).
* ``SegmentationDataset``: the torch dataset on any layout; items are dicts with ``image``,
  ``label`` (class ids, 255 = ignore), ``name`` and ``path`` (plus the layout's evaluation
  targets, e.g. Cityscapes' label and instance ids).

Layouts: ``rtseg.data.cityscapes``, ``rtseg.data.camvid``, ``rtseg.data.folder``;
``rtseg.data.layouts.open_dataset`` finds which one a folder holds.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors

from rtseg.data.decode_cache import DecodeCache
from rtseg.data.io import read_image, read_label_png
from rtseg.errors import RtsegError

IGNORE = 255  # the value of ignored pixels in every class-id map rtseg makes
INVALID = -1  # label_table entry of a stored value outside the class set
MAX_CLASSES = 255  # class ids 0..254 fit a uint8 map beside the ignore value
SCORINGS = ("cityscapes", "confusion")
CITYSCAPES_SCORES = ("miou", "miiou", "category_miou", "category_miiou")
CONFUSION_SCORES = ("miou", "pixel_accuracy", "mean_accuracy")


@dataclass(frozen=True)
class DatasetInfo:
    """What a dataset is, independent of where its files are."""

    name: str
    class_names: tuple[str, ...]
    colors: tuple[tuple[int, int, int], ...]
    # class index -> the id label files store for it (None: the class index itself)
    stored_ids: tuple[int, ...] | None = None
    scoring: str = "confusion"
    ignore_index: int = IGNORE

    def __post_init__(self):
        if not self.class_names or len(self.class_names) > MAX_CLASSES:
            raise RtsegError(f"dataset {self.name}: {len(self.class_names)} classes; give 1 to {MAX_CLASSES}")
        if len(self.colors) != len(self.class_names):
            raise RtsegError(f"dataset {self.name}: {len(self.colors)} colours for {len(self.class_names)} classes")
        if self.stored_ids is not None and len(self.stored_ids) != len(self.class_names):
            raise RtsegError(f"dataset {self.name}: {len(self.stored_ids)} stored ids for "
                             f"{len(self.class_names)} classes")
        if self.scoring not in SCORINGS:
            raise RtsegError(f"dataset {self.name}: scoring {self.scoring!r} is not one of {', '.join(SCORINGS)}")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def score_keys(self) -> tuple[str, ...]:
        """The summary scores that apply: iIoU and category scores only where they exist."""
        return CITYSCAPES_SCORES if self.scoring == "cityscapes" else CONFUSION_SCORES

    def palette(self) -> np.ndarray:
        """``256x3`` uint8: the colour of each class id, black for 255 (ignored) and unused ids."""
        table = np.zeros((256, 3), np.uint8)
        table[: self.num_classes] = np.asarray(self.colors, np.uint8)
        return table

    def colorize(self, class_ids: np.ndarray) -> np.ndarray:
        """``HxW`` class ids -> ``HxWx3`` uint8 in the dataset's colours."""
        return self.palette()[np.asarray(class_ids, dtype=np.uint8)]

    def id_table(self) -> np.ndarray:
        """``256`` uint16: class id -> stored id (what ``--format labelids`` writes); 255 -> 0."""
        table = np.zeros(256, np.uint16)
        ids = self.stored_ids if self.stored_ids is not None else range(self.num_classes)
        table[: self.num_classes] = np.asarray(list(ids), np.uint16)
        return table

    def to_dict(self) -> dict:
        """Plain types only: what checkpoints (``weights_only``) and ``results.json`` hold."""
        return {"name": self.name, "class_names": list(self.class_names), "colors": [list(c) for c in self.colors],
                "stored_ids": None if self.stored_ids is None else list(self.stored_ids),
                "scoring": self.scoring, "ignore_index": self.ignore_index}

    @classmethod
    def from_dict(cls, data: dict, source: str = "dataset description") -> "DatasetInfo":
        try:
            return cls(name=str(data["name"]), class_names=tuple(str(c) for c in data["class_names"]),
                       colors=tuple(tuple(int(v) for v in c) for c in data["colors"]),
                       stored_ids=None if data.get("stored_ids") is None else tuple(int(v) for v in data["stored_ids"]),
                       scoring=str(data.get("scoring", "confusion")),
                       ignore_index=int(data.get("ignore_index", IGNORE)))
        except (KeyError, TypeError, ValueError) as exc:
            raise RtsegError(f"{source} is not a dataset description ({type(exc).__name__}: {exc})") from exc


@dataclass(frozen=True)
class Sample:
    """One image and its annotation files (None where the split has no labels)."""

    name: str  # what predictions are named after: the stem, or <city>_<seq>_<frame> for Cityscapes
    image: str
    label: str | None
    instances: str | None = None


@dataclass
class SplitFiles:
    """What a layout finds for a split before any file is read: the pairs and the leftovers."""

    samples: list[Sample] = field(default_factory=list)
    images_without_labels: list[tuple[str, str]] = field(default_factory=list)  # (image, expected label)
    labels_without_images: list[str] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, one-line problem), e.g. duplicates


class DatasetLayout:
    """Where a dataset's files are and what their stored values mean. Subclasses set ``info``
    and ``kind`` and implement ``scan``, ``split_names`` and ``label_table``."""

    kind = "dataset"  # the layout's name, as --dataset takes it
    info: DatasetInfo

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._tables: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    # ---------------------------------------------------------------- files
    def split_names(self) -> tuple[str, ...]:
        """Splits the layout can have (``train+val`` joins any of them)."""
        raise NotImplementedError

    def scan(self, split: str) -> SplitFiles:
        """The split's image/label pairs and what does not pair up; raises only when the split
        (or the dataset) is missing altogether."""
        raise NotImplementedError

    def is_labelled(self, split: str) -> bool:
        return True

    def samples(self, split: str, eval_targets: bool = False) -> list[Sample]:
        """Every image of ``split`` (``a+b`` joins splits), sorted; an image without its label
        (or another problem the scan found) is one error naming the first such file."""
        samples: list[Sample] = []
        for part in split_parts(split):
            found = self.scan(part)
            if found.images_without_labels:
                image, label = found.images_without_labels[0]
                raise RtsegError(f"image {image} has no label file: expected {label}")
            if found.problems:
                path, problem = found.problems[0]
                raise RtsegError(f"{path}: {problem}")
            samples += found.samples
        return samples

    def image_files(self, split: str) -> list[str]:
        """The images of a split without pairing them (counting, calibration); [] if none."""
        try:
            found = self.scan(split)
        except RtsegError:
            return []
        return sorted([s.image for s in found.samples] + [image for image, _ in found.images_without_labels])

    # --------------------------------------------------------------- labels
    def label_table(self) -> np.ndarray:
        """int16 lookup over stored values (65536 entries): class id, 255 (ignored) or -1 (invalid)."""
        raise NotImplementedError

    def valid_ids_text(self) -> str:
        """The valid stored values in words, for error messages: "the CamVid ids 0..11"."""
        raise NotImplementedError

    def _lookup(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self._tables is None:
            table = self.label_table()
            to_class = np.where(table < 0, IGNORE, table).astype(np.uint8)
            invalid = (table < 0).astype(np.uint8)
            self._tables = (table, to_class, invalid)
        return self._tables

    def invalid_values(self, stored: np.ndarray) -> list[int]:
        """The stored values of ``stored`` outside the class set, sorted (slow path: errors only)."""
        table = self._lookup()[0]
        values = np.unique(stored)
        return [int(v) for v in values if v >= len(table) or table[int(v)] < 0]

    def invalid_message(self, path: str, values: Sequence[int]) -> str:
        shown = ", ".join(str(v) for v in values[:8]) + (", ..." if len(values) > 8 else "")
        word = "label id" if len(values) == 1 else "label ids"
        return f"label file {path} holds {word} {shown}, outside {self.valid_ids_text()}"

    def decode_label(self, stored: np.ndarray, path: str) -> np.ndarray:
        """Stored values -> ``HxW`` uint8 class ids (255 = ignore); a value outside the class set
        is an error naming the file and the values."""
        _, to_class, invalid = self._lookup()
        if stored.dtype == np.uint8:
            # cv2.LUT: one vectorised pass each, several times faster than numpy's fancy indexing
            if invalid[:256].any() and cv2.countNonZero(cv2.LUT(stored, invalid[:256])):
                raise RtsegError(self.invalid_message(path, self.invalid_values(stored)))
            return cv2.LUT(stored, to_class[:256])
        wide = stored.astype(np.int64, copy=False)
        if wide.size and (wide.min() < 0 or wide.max() >= len(to_class) or invalid[wide].any()):
            raise RtsegError(self.invalid_message(path, self.invalid_values(wide)))
        return to_class[wide]

    def read_stored(self, path: str) -> np.ndarray:
        """A label file's values as stored (the layout's reader: PNG ids, palette indices)."""
        return read_label_png(path)

    def read_label(self, path: str) -> np.ndarray:
        """A label file -> ``HxW`` uint8 class ids (255 = ignore), checked."""
        return self.decode_label(self.read_stored(path), path)

    def eval_targets(self, sample: Sample, stored: np.ndarray) -> dict[str, torch.Tensor]:
        """Extra full-size targets the dataset's scores need (Cityscapes: label and instance ids)."""
        return {}

    def histogram(self, stored: np.ndarray) -> tuple[np.ndarray, list[int]]:
        """``(pixels per class id 0..C-1, stored values outside the class set)`` of one label map,
        from one ``bincount`` (ignored values are dropped)."""
        table = self._lookup()[0]
        flat = stored.ravel()
        if flat.size and int(flat.min()) < 0:
            return np.zeros(self.info.num_classes, np.int64), sorted({int(v) for v in flat[flat < 0]})
        counts = np.bincount(flat, minlength=256)
        over = counts[len(table):]
        counts = counts[: len(table)]
        classes = table[: len(counts)]
        invalid = [int(v) for v in np.flatnonzero((classes < 0) & (counts > 0))]
        invalid += [len(table) + int(v) for v in np.flatnonzero(over)]
        keep = (classes >= 0) & (classes < self.info.num_classes) & (counts > 0)
        pixels = np.bincount(classes[keep], weights=counts[keep], minlength=self.info.num_classes)
        return pixels.astype(np.int64), invalid

    def table_digest(self) -> str:
        """Changes when what stored values mean changes (a dataset.yaml edit): part of cache keys."""
        return hashlib.sha256(self._lookup()[0].tobytes() + repr(self.info.to_dict()).encode()).hexdigest()[:16]

    def cache_key(self, split: str) -> dict:
        return {"root": str(self.root.resolve()), "split": split, "annotation": self.kind}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.root)!r})"


def split_parts(split: str) -> list[str]:
    """``"train+val"`` -> ``["train", "val"]``."""
    parts = [p.strip() for p in str(split).split("+")]
    if not all(parts):
        raise RtsegError(f"split {split!r} is not a split name or names joined with '+' (train+val)")
    return parts


def label_table_for(num_classes: int, ignored: Sequence[int] = (), offset: int = 0, size: int = 65536) -> np.ndarray:
    """The common lookup: stored ``offset + c`` -> class ``c``, ``ignored`` -> 255, the rest -1."""
    table = np.full(size, INVALID, np.int16)
    for value in ignored:
        table[int(value)] = IGNORE
    table[offset: offset + num_classes] = np.arange(num_classes, dtype=np.int16)
    return table


class ArrayTransform:
    """A training transform on ``HxWx3`` uint8 numpy images and ``HxW`` uint8 class-id maps
    (``rtseg.data.augment``): the dataset hands it the decoded arrays as they are, instead of
    ``tv_tensors`` (what ``torchvision.transforms.v2`` pipelines take)."""

    def __call__(self, image: np.ndarray, label: np.ndarray | None) -> dict[str, torch.Tensor]:
        raise NotImplementedError


class SegmentationDataset(Dataset):
    """Any layout's split as a torch dataset.

    ``dataset[i]`` is a dict: ``image`` (normalised float 3xHxW through a torchvision
    ``transforms(image, label)``; scaled to 0..1 without transforms; uint8 from an
    ``ArrayTransform``, normalised on the device), ``label`` int64 HxW class ids (255 = ignore),
    ``name`` and ``path``. ``eval_targets=True`` adds the layout's evaluation targets. ``cache``:
a folder where decoded files are kept between epochs (``rtseg.data.decode_cache``). An
    unlabelled split (Cityscapes test) yields ``image``, ``name`` and ``path`` only.
    """

    def __init__(self, layout: DatasetLayout, split: str = "train",
                 transforms: Callable[..., Any] | None = None, eval_targets: bool = False,
                 cache: str | os.PathLike | None = None):
        self.layout, self.info = layout, layout.info
        self.cache = DecodeCache(cache) if cache is not None else None
        self.root, self.split = str(layout.root), split
        self.transforms, self.eval_targets = transforms, eval_targets
        self.labelled = all(layout.is_labelled(p) for p in split_parts(split))
        self.samples = layout.samples(split, eval_targets=eval_targets and self.labelled)
        if not self.samples:
            raise RtsegError(f"split {split!r} of {layout.root} has no images")
        self.files = [s.image for s in self.samples]
        self.label_files = [s.label for s in self.samples] if self.labelled else None

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return f"SegmentationDataset({self.layout!r}, split={self.split!r}, images={len(self)})"

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        item: dict[str, Any] = {"name": sample.name, "path": sample.image}
        image = self.cache.load(sample.image, read_image) if self.cache else read_image(sample.image)
        stored = label = None
        if self.labelled:
            stored = self.cache.load(sample.label, self.layout.read_stored) if self.cache else \
                self.layout.read_stored(sample.label)
            label = self.layout.decode_label(stored, sample.label)
            if label.shape != image.shape[:2]:
                raise RtsegError(f"label file {sample.label} is {label.shape[1]}x{label.shape[0]} "
                                 f"but its image {sample.image} is {image.shape[1]}x{image.shape[0]}")
            if self.eval_targets:
                item.update(self.layout.eval_targets(sample, stored))
        if isinstance(self.transforms, ArrayTransform):
            item.update(self.transforms(image, label))
            return item
        # contiguous CHW: torchvision's resize is 3x faster on it than on a permuted view
        pixels = image if image.flags.writeable else np.array(image)  # a cached (mapped) file is read-only
        tensor = tv_tensors.Image(torch.from_numpy(pixels).permute(2, 0, 1).contiguous())
        mask = tv_tensors.Mask(torch.from_numpy(label)) if label is not None else None
        if self.transforms is not None:
            tensor, mask = self.transforms(tensor, mask)
        else:
            tensor = tensor.to(torch.float32).div_(255)
        item["image"] = tensor.as_subclass(torch.Tensor)
        if mask is not None:
            item["label"] = mask.as_subclass(torch.Tensor).to(torch.int64)
        return item
