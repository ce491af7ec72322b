"""The Cityscapes reader: the official folder layout as downloaded, no conversion step.

    <root>/leftImg8bit/{train,val,test,train_extra}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <root>/gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_{labelIds,instanceIds}.png
    <root>/gtCoarse/{train,train_extra,val}/<city>/<city>_<seq>_<frame>_gtCoarse_{labelIds,instanceIds}.png

Label ids become the 19 train ids (255 = ignore) through ``rtseg.data.labels`` (torchvision's
copy of the official table). ``CityscapesLayout`` is Cityscapes' implementation of the dataset
interface (``rtseg.data.dataset``); ``CityscapesDataset`` is the torch dataset on it. The test split has no real labels (the official gtFine/test
files are dummies), so it yields images and names only. Every user mistake is one
``RtsegError`` line naming the file or folder and what was expected.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from rtseg.data.dataset import DatasetInfo, DatasetLayout, Sample, SegmentationDataset, SplitFiles, split_parts
from rtseg.data.io import read_label_png
from rtseg.data.labels import CLASS_NAMES, LABEL_TO_TRAIN, NUM_LABEL_IDS, TRAIN_COLORS, TRAIN_TO_LABEL
from rtseg.errors import RtsegError

IMAGE_DIR = "leftImg8bit"
IMAGE_SUFFIX = "_leftImg8bit.png"
ANNOTATION_DIRS = {"fine": "gtFine", "coarse": "gtCoarse"}
SPLITS = {"fine": ("train", "val", "test"), "coarse": ("train", "train_extra", "val")}
UNLABELED_SPLITS = ("test",)
_DATASET_DIRS = (IMAGE_DIR, "gtFine", "gtCoarse", "leftImg8bit_blurred", "rightImg8bit")


@dataclass(frozen=True)
class SampleFiles:
    """One image and its annotation files (None where the split has no labels)."""

    name: str  # "<city>_<seq>_<frame>", e.g. "aachen_000000_000019"
    image: str
    label_ids: str | None
    instance_ids: str | None


def find_split_files(root: str | os.PathLike, split: str = "train", annotation: str = "fine",
                     require_instances: bool = False) -> list[SampleFiles]:
    """Every image of a split with its label files, sorted by name; checks the layout and
    that each labelled image has its ``labelIds`` (and, if asked, ``instanceIds``) file."""
    samples = CityscapesLayout(root, annotation).samples(split, eval_targets=require_instances)
    return [SampleFiles(s.name, s.image, s.label, s.instances if s.label else None) for s in samples]


def check_root(root: str | os.PathLike) -> Path:
    """The dataset root as a Path, or an RtsegError that says what to point at instead."""
    path = Path(root).expanduser()
    hint = f"the folder that holds {IMAGE_DIR}/ and gtFine/"
    if not path.exists():
        raise RtsegError(f"Cityscapes root {path} does not exist; point at {hint}")
    if path.is_file():
        if path.suffix.lower() == ".zip" or zipfile.is_zipfile(path):
            raise RtsegError(f"Cityscapes root {path} is a zip file; unzip it (with gtFine_trainvaltest.zip) "
                             f"and point at {hint}")
        raise RtsegError(f"Cityscapes root {path} is a file; point at {hint}")
    if (path / IMAGE_DIR).is_dir():
        return path
    message = misplaced_root(path)
    if message:
        raise RtsegError(message)
    raise RtsegError(f"Cityscapes root {path} has no {IMAGE_DIR}/ folder; point at {hint}")


def misplaced_root(path: Path) -> str | None:
    """What to point at instead, when ``path`` lies inside a Cityscapes folder, holds its zips
    unopened or holds it one level down; None when nothing says it is Cityscapes."""
    hint = f"the folder that holds {IMAGE_DIR}/ and gtFine/"
    resolved = path.resolve()
    for level, folder in enumerate((resolved, *resolved.parents)):
        if folder.name in _DATASET_DIRS:
            where = f"one level too deep (at {folder.name}/)" if level == 0 else \
                f"{level + 1} levels too deep (inside {folder.name}/)"
            return f"Cityscapes root {path} points {where}; point at {folder.parent}, {hint}"
    zips = sorted(p.name for p in path.glob("leftImg8bit*.zip"))
    if zips:
        return f"Cityscapes root {path} holds {zips[0]} but no {IMAGE_DIR}/ folder; unzip it there"
    nested = sorted(p.parent for p in path.glob(f"*/{IMAGE_DIR}") if p.is_dir())
    if nested:
        return f"Cityscapes root {path} has no {IMAGE_DIR}/ folder but {nested[0]} has; point at that"
    return None


def _name(image: Path) -> str:
    return image.name[: -len(IMAGE_SUFFIX)]


def read_label_ids(path: str) -> np.ndarray:
    """A ``labelIds`` PNG -> uint8 array HxW of official ids 0..33, checked."""
    ids = read_label_png(path)
    top = int(ids.max()) if ids.size else 0
    if top >= NUM_LABEL_IDS:
        raise RtsegError(f"label file {path} holds label id {top}, outside the Cityscapes ids "
                         f"0..{NUM_LABEL_IDS - 1} (a labelTrainIds or colour file?)")
    return ids.astype(np.uint8, copy=False)


def read_instance_ids(path: str) -> torch.Tensor:
    """An ``instanceIds`` PNG (16-bit: label id x 1000 + k, plain label ids elsewhere) -> int64 HxW."""
    return torch.from_numpy(read_label_png(path, "instance file").astype(np.int64))


def split_pairs(root: str | os.PathLike, split: str = "val") -> list[tuple[str, str]]:
    """``(image, labelIds file)`` of every labelled image of a fine split (evaluation without a loader)."""
    return [(s.image, s.label_ids) for s in find_split_files(root, split, "fine")]


def split_image_files(root: str | os.PathLike, split: str) -> list[Path]:
    """The image files of a split, without checking labels (counting, calibration); [] if none."""
    folder = check_root(root) / IMAGE_DIR / split
    return sorted(folder.glob(f"*/*{IMAGE_SUFFIX}")) if folder.is_dir() else []


CITYSCAPES = DatasetInfo(
    name="cityscapes", class_names=CLASS_NAMES, colors=tuple(tuple(int(v) for v in c) for c in TRAIN_COLORS[:19]),
    stored_ids=tuple(int(v) for v in TRAIN_TO_LABEL[:19]), scoring="cityscapes")


class CityscapesLayout(DatasetLayout):
    """The official layout: 19 evaluated classes from label ids 0..33, scored by the official rules
    (class and category IoU and iIoU), with the instance files as evaluation targets."""

    kind = "cityscapes"
    info = CITYSCAPES

    def __init__(self, root: str | os.PathLike, annotation: str = "fine"):
        if annotation not in ANNOTATION_DIRS:
            raise RtsegError(f"annotation {annotation!r} is not one of {', '.join(ANNOTATION_DIRS)}")
        self.annotation = annotation
        super().__init__(check_root(root))

    def split_names(self) -> tuple[str, ...]:
        return SPLITS[self.annotation] + tuple(s for s in UNLABELED_SPLITS if s not in SPLITS[self.annotation])

    def is_labelled(self, split: str) -> bool:
        return split not in UNLABELED_SPLITS

    def scan(self, split: str) -> SplitFiles:
        valid = self.split_names()
        if split not in valid:
            raise RtsegError(f"split {split!r} does not exist for {self.annotation} annotations; "
                             f"use one of {', '.join(valid)}")
        image_dir = self.root / IMAGE_DIR / split
        images = split_image_files(self.root, split)
        if not images:
            where = image_dir if image_dir.is_dir() else f"{image_dir} (missing)"
            raise RtsegError(f"split {split!r} is empty: no <city>/*{IMAGE_SUFFIX} files in {where}")
        if split in UNLABELED_SPLITS:
            return SplitFiles([Sample(_name(p), str(p), None) for p in images])
        gt = ANNOTATION_DIRS[self.annotation]
        if not (self.root / gt).is_dir():
            raise RtsegError(f"no {gt}/ folder in {self.root}: the {self.annotation} annotations are missing "
                             f"(unzip {gt}{'_trainvaltest' if gt == 'gtFine' else ''}.zip there)")
        found = SplitFiles()
        paired = set()
        for image in images:
            name = _name(image)
            base = self.root / gt / split / image.parent.name / f"{name}_{gt}_"
            label, instance = Path(f"{base}labelIds.png"), Path(f"{base}instanceIds.png")
            if label.is_file():
                paired.add(label.name)
                found.samples.append(Sample(name, str(image), str(label), str(instance) if instance.is_file() else None))
            else:
                found.images_without_labels.append((str(image), str(label)))
        suffix = f"_{gt}_labelIds.png"
        found.labels_without_images = sorted(str(p) for p in (self.root / gt / split).glob(f"*/*{suffix}")
                                             if p.name not in paired)
        return found

    def samples(self, split: str, eval_targets: bool = False) -> list[Sample]:
        samples = super().samples(split)
        if eval_targets:
            for sample in samples:
                if sample.label and sample.instances is None:
                    expected = sample.label[: -len("labelIds.png")] + "instanceIds.png"
                    raise RtsegError(f"image {sample.image} has no instance file: expected {expected}")
        return samples

    def image_files(self, split: str) -> list[str]:
        return [str(p) for part in split_parts(split) for p in split_image_files(self.root, part)]

    def label_table(self) -> np.ndarray:
        table = np.full(65536, -1, np.int16)
        table[:NUM_LABEL_IDS] = LABEL_TO_TRAIN[:NUM_LABEL_IDS]
        return table

    def valid_ids_text(self) -> str:
        return f"the Cityscapes ids 0..{NUM_LABEL_IDS - 1} (a labelTrainIds or colour file?)"

    def eval_targets(self, sample: Sample, stored) -> dict[str, torch.Tensor]:
        return {"label_ids": torch.from_numpy(stored.astype(np.int64)),
                "instance_ids": read_instance_ids(sample.instances)}

    def cache_key(self, split: str) -> dict:
        return {"root": str(self.root.resolve()), "split": split, "annotation": self.annotation}


class CityscapesDataset(SegmentationDataset):
    """Cityscapes (or the synthetic copy) in the official layout.

    ``dataset[i]`` is a dict: ``image`` float 3xHxW (normalised by ``transforms``; without
    transforms scaled to 0..1), ``label`` int64 HxW train ids (255 = ignore), ``name`` and
    ``path``. ``eval_targets=True`` adds ``label_ids`` and ``instance_ids`` (int64 HxW, the
    official values, never resized: evaluation up-samples logits to them). The test split
    yields ``image``, ``name`` and ``path`` only.

    ``transforms(image: tv_tensors.Image uint8, label: tv_tensors.Mask | None) -> (image, label)``,
    e.g. ``rtseg.data.transforms.train_transforms()``.
    """

    def __init__(self, root: str | os.PathLike, split: str = "train", annotation: str = "fine",
                 transforms: Callable[..., Any] | None = None, eval_targets: bool = False):
        super().__init__(CityscapesLayout(root, annotation), split, transforms, eval_targets)
        self.root, self.annotation = str(root), annotation
        self.instance_files = [s.instances for s in self.samples] if self.labelled else None

    def __repr__(self) -> str:
        return (f"CityscapesDataset(root={self.root!r}, split={self.split!r}, annotation={self.annotation!r}, "
                f"images={len(self)})")
