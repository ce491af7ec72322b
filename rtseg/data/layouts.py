"""Which layout a folder holds, and the dataset descriptions by name.

``open_dataset(root)`` looks at the folder: ``dataset.yaml`` is a folder dataset,
``leftImg8bit/`` is Cityscapes, ``<split>/`` beside ``<split>annot/`` is CamVid (SegNet-
Tutorial). ``open_dataset(root, "camvid")`` says it instead (``--dataset NAME``) and gets that
layout's own error when the folder does not fit. A folder that matches none of them is one
line saying what each layout expects, and what the folder looks like instead when it is
recognisably a dataset in the wrong place.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from rtseg.data.camvid import CAMVID, CamVidLayout, is_camvid
from rtseg.data.cityscapes import CITYSCAPES, IMAGE_DIR, CityscapesLayout, misplaced_root
from rtseg.data.dataset import DatasetInfo, DatasetLayout
from rtseg.data.folder import DATASET_FILE, IMAGES_DIR, LABELS_DIR, FolderLayout, default_palette, is_folder_dataset
from rtseg.errors import RtsegError

LAYOUTS: dict[str, type[DatasetLayout]] = {"cityscapes": CityscapesLayout, "camvid": CamVidLayout,
                                           "folder": FolderLayout}
# Descriptions known by name alone (a folder dataset's lives in its dataset.yaml).
KNOWN_INFO: dict[str, DatasetInfo] = {"cityscapes": CITYSCAPES, "camvid": CAMVID}
EXPECTED = (f"a folder dataset ({DATASET_FILE}, {IMAGES_DIR}/<split>/, {LABELS_DIR}/<split>/), Cityscapes "
            f"({IMAGE_DIR}/, gtFine/) or CamVid (train/, trainannot/)")


def detect_layout(root: str | os.PathLike) -> str | None:
    """The layout name of ``root`` (``folder``, ``cityscapes``, ``camvid``), None if none fits."""
    path = Path(root).expanduser()
    if not path.is_dir():
        return None
    if is_folder_dataset(path):
        return "folder"
    if (path / IMAGE_DIR).is_dir():
        return "cityscapes"
    if is_camvid(path):
        return "camvid"
    return None


def open_dataset(root: str | os.PathLike, name: str | None = None, annotation: str = "fine") -> DatasetLayout:
    """The layout reader of ``root``: ``name`` (``cityscapes``, ``camvid``, ``folder``) or detected.

    ``annotation`` (``fine`` or ``coarse``) exists for Cityscapes only."""
    if name is not None and name not in LAYOUTS:
        raise RtsegError(f"dataset {name!r} is not one of {', '.join(LAYOUTS)}")
    path = Path(root).expanduser()
    kind = name or detect_layout(path)
    if kind is None:
        raise RtsegError(_not_a_dataset(path))
    if kind == "cityscapes":
        return CityscapesLayout(path, annotation)
    if annotation != "fine":
        raise RtsegError(f"annotation {annotation!r}: coarse annotations exist for Cityscapes only, "
                         f"and {path} is a {kind} dataset")
    return LAYOUTS[kind](path)


def dataset_info(name: str) -> DatasetInfo:
    """The description of a dataset known by name (``cityscapes``, ``camvid``)."""
    if name not in KNOWN_INFO:
        raise RtsegError(f"dataset {name!r} has no built-in description (known: {', '.join(KNOWN_INFO)}); "
                         "a folder dataset is described by its dataset.yaml: give its root")
    return KNOWN_INFO[name]


def checkpoint_dataset(state: dict | None, num_classes: int) -> DatasetInfo:
    """The dataset a checkpoint was trained on (its ``dataset`` entry). Checkpoints from before
    datasets had descriptions: Cityscapes for 19 classes, numbered classes otherwise."""
    described = (state or {}).get("dataset")
    if described:
        return DatasetInfo.from_dict(described, "the checkpoint's dataset entry")
    if num_classes == CITYSCAPES.num_classes:
        return CITYSCAPES
    return DatasetInfo(name="unnamed", class_names=tuple(f"class {i}" for i in range(num_classes)),
                       colors=default_palette(num_classes))


def _not_a_dataset(path: Path) -> str:
    if not path.exists():
        return f"dataset root {path} does not exist; point at {EXPECTED}"
    if path.is_file():
        zipped = path.suffix.lower() == ".zip" or zipfile.is_zipfile(path)
        return f"dataset root {path} is a {'zip ' if zipped else ''}file; {'unzip it and ' if zipped else ''}" \
               f"point at the folder: {EXPECTED}"
    misplaced = misplaced_root(path)
    if misplaced:
        return misplaced
    if is_camvid(path.parent) and path.name.removesuffix("annot") in ("train", "val", "test"):
        return f"dataset root {path} is one level too deep: point at the CamVid folder {path.parent}"
    if path.name in (IMAGES_DIR, LABELS_DIR) or is_folder_dataset(path.parent.parent):
        for parent in (path.parent, path.parent.parent):
            if is_folder_dataset(parent):
                return f"dataset root {path} is inside the folder dataset {parent}: point at that"
    if (path / IMAGES_DIR).is_dir() and (path / LABELS_DIR).is_dir():
        return (f"dataset root {path} has {IMAGES_DIR}/ and {LABELS_DIR}/ but no {DATASET_FILE}: write one with "
                "'classes: [name, ...]' (see docs/data.md)")
    return f"{path} holds no dataset rtseg reads: expected {EXPECTED}"
