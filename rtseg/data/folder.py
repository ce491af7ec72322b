"""A folder dataset with any class set, described by ``dataset.yaml``::

    <root>/dataset.yaml
    <root>/images/<split>/<stem>.png|jpg|...      any size, each image its own
    <root>/labels/<split>/<stem>.png              single-channel ids (8- or 16-bit, or a palette
                                                  PNG whose stored indices are the ids, as VOC)

``dataset.yaml``::

    name: my-robot-data            # optional (default: the folder's name)
    classes: [road, person, car]   # required: class names, in id order
    palette: [[128, 64, 128], [220, 20, 60], [0, 0, 142]]   # optional: one RGB per class
    ignore_index: 255              # optional (default 255): the stored value that is not scored
    reduce_zero_label: false       # optional (default false): true as mmsegmentation defines it:
                                   # stored 0 is ignored and stored L is class L-1

Stems may hold dots (``frame.0001.png`` is ``frame.0001``) and sub-folders (``seq1/frame``);
a prediction of ``<split>/<stem>`` is ``PRED_DIR/<stem>.png``. Every mistake in the file is one
``RtsegError`` naming the file, the key and the value as written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rtseg.atomic import atomic_open
from rtseg.data.dataset import IGNORE, MAX_CLASSES, DatasetInfo, DatasetLayout, Sample, SplitFiles, label_table_for
from rtseg.data.io import IMAGE_SUFFIXES
from rtseg.errors import RtsegError

DATASET_FILE = "dataset.yaml"
IMAGES_DIR, LABELS_DIR = "images", "labels"
KEYS = ("name", "classes", "palette", "ignore_index", "reduce_zero_label")


@dataclass(frozen=True)
class FolderSpec:
    """``dataset.yaml``, checked."""

    name: str
    classes: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    ignore_index: int = IGNORE
    reduce_zero_label: bool = False

    def as_yaml_dict(self) -> dict:
        return {"name": self.name, "classes": list(self.classes), "palette": [list(c) for c in self.palette],
                "ignore_index": self.ignore_index, "reduce_zero_label": self.reduce_zero_label}


def default_palette(count: int) -> tuple[tuple[int, int, int], ...]:
    """Distinct colours for ``count`` classes: the Pascal VOC colour map (bits of the id spread over R, G, B)."""
    colours = []
    for index in range(count):
        r = g = b = 0
        value = index + 1  # id 0 would be black, the colour of ignored pixels
        for shift in range(7, -1, -1):
            r |= ((value >> 0) & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        colours.append((r, g, b))
    return tuple(colours)


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_dataset_yaml(path: str | os.PathLike) -> FolderSpec:
    """Read and check ``dataset.yaml``; one line naming the file, the key and the value on any mistake."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise RtsegError(f"cannot read {path}: {exc}".splitlines()[0]) from exc
    except yaml.YAMLError as exc:
        raise RtsegError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict):
        raise RtsegError(f"{path} must be a mapping with at least 'classes: [name, ...]', got {data!r}")
    unknown = [k for k in data if k not in KEYS]
    if unknown:
        raise RtsegError(f"{path}: unknown key {unknown[0]!r} (known: {', '.join(KEYS)})")
    classes = data.get("classes")
    if classes is None:
        raise RtsegError(f"{path} has no 'classes': list the class names in id order, e.g. classes: [road, car]")
    if not isinstance(classes, list) or not classes:
        raise RtsegError(f"{path}: classes is {classes!r}; expected a non-empty list of class names")
    for i, name in enumerate(classes):
        if not isinstance(name, str) or not name.strip():
            raise RtsegError(f"{path}: classes[{i}] is {name!r}; expected a class name (a non-empty string)")
    duplicates = sorted({c for c in classes if classes.count(c) > 1})
    if duplicates:
        raise RtsegError(f"{path}: class {duplicates[0]!r} is listed {classes.count(duplicates[0])} times")
    reduce = data.get("reduce_zero_label", False)
    if not isinstance(reduce, bool):
        raise RtsegError(f"{path}: reduce_zero_label is {reduce!r}; expected true or false")
    if len(classes) > MAX_CLASSES:
        raise RtsegError(f"{path}: {len(classes)} classes; rtseg takes at most {MAX_CLASSES}")
    ignore = data.get("ignore_index", IGNORE)
    if not _whole(ignore) or not 0 <= ignore <= 65535:
        raise RtsegError(f"{path}: ignore_index is {ignore!r}; expected a whole number 0..65535")
    offset = 1 if reduce else 0
    if offset <= ignore < offset + len(classes):
        raise RtsegError(f"{path}: ignore_index {ignore} is the stored id of class {classes[ignore - offset]!r}"
                         + (" (with reduce_zero_label: true, stored L is class L-1)" if reduce else ""))
    palette = data.get("palette")
    if palette is None:
        colours = default_palette(len(classes))
    else:
        if not isinstance(palette, list) or len(palette) != len(classes):
            count = len(palette) if isinstance(palette, list) else palette
            raise RtsegError(f"{path}: palette has {count!r} colours for {len(classes)} classes; give one [R, G, B] "
                             "per class or leave it out")
        for i, colour in enumerate(palette):
            if not (isinstance(colour, list) and len(colour) == 3 and all(_whole(v) and 0 <= v <= 255 for v in colour)):
                raise RtsegError(f"{path}: palette[{i}] is {colour!r}; expected [R, G, B] with values 0..255")
        colours = tuple(tuple(c) for c in palette)
    name = data.get("name", path.parent.name or "folder")
    if not isinstance(name, str) or not name.strip():
        raise RtsegError(f"{path}: name is {name!r}; expected a non-empty string")
    return FolderSpec(name, tuple(classes), colours, ignore, reduce)


def write_dataset_yaml(root: str | os.PathLike, spec: FolderSpec) -> Path:
    import yaml

    path = Path(root) / DATASET_FILE
    with atomic_open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(spec.as_yaml_dict(), handle, sort_keys=False, default_flow_style=None)
    return path


def is_folder_dataset(root: Path) -> bool:
    return (root / DATASET_FILE).is_file()


class FolderLayout(DatasetLayout):
    kind = "folder"

    def __init__(self, root: str | os.PathLike):
        path = Path(root).expanduser()
        if not path.is_dir():
            raise RtsegError(f"dataset root {path} {'is not a folder' if path.exists() else 'does not exist'}")
        if not is_folder_dataset(path):
            raise RtsegError(f"folder dataset {path} has no {DATASET_FILE}; write one with at least "
                             "'classes: [name, ...]' (see docs/data.md)")
        self.spec = read_dataset_yaml(path / DATASET_FILE)
        offset = 1 if self.spec.reduce_zero_label else 0
        self.info = DatasetInfo(name=self.spec.name, class_names=self.spec.classes, colors=self.spec.palette,
                                stored_ids=tuple(range(offset, offset + len(self.spec.classes))) if offset else None)
        super().__init__(path)

    def split_names(self) -> tuple[str, ...]:
        folder = self.root / IMAGES_DIR
        names = [p.name for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
        usual = ("train", "val", "test")
        return tuple(sorted(names, key=lambda n: (usual.index(n) if n in usual else len(usual), n)))

    def scan(self, split: str) -> SplitFiles:
        image_dir, label_dir = self.root / IMAGES_DIR / split, self.root / LABELS_DIR / split
        if not image_dir.is_dir():
            known = ", ".join(self.split_names()) or f"none: no {IMAGES_DIR}/<split>/ folders"
            raise RtsegError(f"split {split!r} does not exist in {self.root}: no folder {image_dir} (splits: {known})")
        found = SplitFiles()
        by_name: dict[str, Path] = {}
        for image in sorted(p for p in image_dir.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
            name = image.relative_to(image_dir).with_suffix("").as_posix()  # only the last suffix: dots stay
            if name in by_name:
                found.problems.append((str(image), f"a second image for {name}: {by_name[name]} has the same stem"))
                continue
            by_name[name] = image
            label = label_dir / f"{name}.png"
            if label.is_file():
                found.samples.append(Sample(name, str(image), str(label)))
            else:
                found.images_without_labels.append((str(image), str(label)))
        if not by_name:
            raise RtsegError(f"split {split!r} is empty: no images ({', '.join(IMAGE_SUFFIXES)}) in {image_dir}")
        if label_dir.is_dir():
            found.labels_without_images = sorted(
                str(p) for p in label_dir.rglob("*.png") if p.relative_to(label_dir).with_suffix("").as_posix()
                not in by_name)
        return found

    def label_table(self) -> np.ndarray:
        classes, spec = len(self.spec.classes), self.spec
        if spec.reduce_zero_label:
            return label_table_for(classes, ignored=(0, spec.ignore_index), offset=1)
        return label_table_for(classes, ignored=(spec.ignore_index,))

    def valid_ids_text(self) -> str:
        classes, spec = len(self.spec.classes), self.spec
        where = f"{DATASET_FILE}'s {classes} classes"
        if spec.reduce_zero_label:
            return (f"1..{classes} (the classes) and 0, {spec.ignore_index} (ignored) of {where} with "
                    f"reduce_zero_label: true")
        return f"0..{classes - 1} (the classes) and {spec.ignore_index} (ignored) of {where}"
