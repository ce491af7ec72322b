"""The Cityscapes reader: the official folder layout as downloaded, no conversion step.

    <root>/leftImg8bit/{train,val,test,train_extra}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    <root>/gtFine/{train,val,test}/<city>/<city>_<seq>_<frame>_gtFine_{labelIds,instanceIds}.png
    <root>/gtCoarse/{train,train_extra,val}/<city>/<city>_<seq>_<frame>_gtCoarse_{labelIds,instanceIds}.png

Label ids become the 19 train ids (255 = ignore) through ``rtseg.data.labels`` (torchvision's
copy of the official table). The test split has no real labels (the official gtFine/test
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
from torch.utils.data import Dataset

from rtseg.data.io import read_image, read_label_png
from rtseg.data.labels import NUM_LABEL_IDS, label_to_train_ids
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
    if annotation not in ANNOTATION_DIRS:
        raise RtsegError(f"annotation {annotation!r} is not one of {', '.join(ANNOTATION_DIRS)}")
    valid = SPLITS[annotation] + tuple(s for s in UNLABELED_SPLITS if s not in SPLITS[annotation])
    if split not in valid:
        raise RtsegError(f"split {split!r} does not exist for {annotation} annotations; "
                         f"use one of {', '.join(valid)}")
    root = check_root(root)
    image_dir = root / IMAGE_DIR / split
    images = split_image_files(root, split)
    if not images:
        where = image_dir if image_dir.is_dir() else f"{image_dir} (missing)"
        raise RtsegError(f"split {split!r} is empty: no <city>/*{IMAGE_SUFFIX} files in {where}")
    if split in UNLABELED_SPLITS:
        return [SampleFiles(_name(p), str(p), None, None) for p in images]
    gt = ANNOTATION_DIRS[annotation]
    if not (root / gt).is_dir():
        raise RtsegError(f"no {gt}/ folder in {root}: the {annotation} annotations are missing "
                         f"(unzip {gt}{'_trainvaltest' if gt == 'gtFine' else ''}.zip there)")
    files = []
    for image in images:
        name = _name(image)
        base = root / gt / split / image.parent.name / f"{name}_{gt}_"
        label, instance = Path(f"{base}labelIds.png"), Path(f"{base}instanceIds.png")
        if not label.is_file():
            raise RtsegError(f"image {image} has no label file: expected {label}")
        if require_instances and not instance.is_file():
            raise RtsegError(f"image {image} has no instance file: expected {instance}")
        files.append(SampleFiles(name, str(image), str(label), str(instance)))
    return files


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
    resolved = path.resolve()
    for level, folder in enumerate((resolved, *resolved.parents)):
        if folder.name in _DATASET_DIRS:
            where = f"one level too deep (at {folder.name}/)" if level == 0 else \
                f"{level + 1} levels too deep (inside {folder.name}/)"
            raise RtsegError(f"Cityscapes root {path} points {where}; point at {folder.parent}, {hint}")
    zips = sorted(p.name for p in path.glob("leftImg8bit*.zip"))
    if zips:
        raise RtsegError(f"Cityscapes root {path} holds {zips[0]} but no {IMAGE_DIR}/ folder; unzip it there")
    nested = sorted(p.parent for p in path.glob(f"*/{IMAGE_DIR}") if p.is_dir())
    if nested:
        raise RtsegError(f"Cityscapes root {path} has no {IMAGE_DIR}/ folder but {nested[0]} has; point at that")
    raise RtsegError(f"Cityscapes root {path} has no {IMAGE_DIR}/ folder; point at {hint}")


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


class CityscapesDataset(Dataset):
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
        self.root, self.split, self.annotation = str(root), split, annotation
        self.transforms, self.eval_targets = transforms, eval_targets
        self.labelled = split not in UNLABELED_SPLITS
        self.samples = find_split_files(root, split, annotation, require_instances=eval_targets and self.labelled)
        self.files = [s.image for s in self.samples]
        self.label_files = [s.label_ids for s in self.samples] if self.labelled else None
        self.instance_files = [s.instance_ids for s in self.samples] if self.labelled else None

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return (f"CityscapesDataset(root={self.root!r}, split={self.split!r}, annotation={self.annotation!r}, "
                f"images={len(self)})")

    def __getitem__(self, index: int) -> dict[str, Any]:
        from torchvision import tv_tensors

        sample = self.samples[index]
        # contiguous CHW: torchvision's resize is 3x faster on it than on a permuted view
        image = tv_tensors.Image(torch.from_numpy(read_image(sample.image)).permute(2, 0, 1).contiguous())
        item: dict[str, Any] = {"name": sample.name, "path": sample.image}
        label = None
        if self.labelled:
            label_ids = read_label_ids(sample.label_ids)
            if tuple(label_ids.shape) != tuple(image.shape[-2:]):
                raise RtsegError(f"label file {sample.label_ids} is {label_ids.shape[1]}x{label_ids.shape[0]} "
                                 f"but its image {sample.image} is {image.shape[2]}x{image.shape[1]}")
            label = tv_tensors.Mask(torch.from_numpy(label_to_train_ids(label_ids)))  # numpy lookup: fastest
            if self.eval_targets:
                item["label_ids"] = torch.from_numpy(label_ids.astype(np.int64))
                item["instance_ids"] = read_instance_ids(sample.instance_ids)
        if self.transforms is not None:
            image, label = self.transforms(image, label)
        else:
            image = image.to(torch.float32).div_(255)
        item["image"] = image.as_subclass(torch.Tensor)
        if label is not None:
            item["label"] = label.as_subclass(torch.Tensor).to(torch.int64)
        return item
