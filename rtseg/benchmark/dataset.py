"""The data a benchmark runs on: a dataset folder as given (Cityscapes, CamVid or a folder
dataset, through ``rtseg.data.layouts``), or the synthetic Cityscapes it generates.

Without ``--data`` the study generates the synthetic Cityscapes under ``DIR/data`` once, and
again only when the wanted set (sizes, counts, coarse annotations) changed; a marker file
records what was generated.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PIL import Image

from rtseg.benchmark.results import read_json, write_json
from rtseg.benchmark.schedule import QuickSchedule
from rtseg.data.dataset import DatasetInfo, DatasetLayout
from rtseg.data.layouts import open_dataset
from rtseg.data.synthetic import generate_synthetic_cityscapes
from rtseg.errors import RtsegError

# The synthetic dataset a full (not --quick) run generates: the paper's input size.
FULL_SYNTHETIC = {"train": 64, "val": 16, "size": (512, 1024)}
MARKER = ".complete"


@dataclass(frozen=True)
class StudyData:
    root: Path
    synthetic: dict | None  # what was generated (None: the user's folder)
    layout: DatasetLayout | None = None  # the user's dataset (None: the synthetic Cityscapes, opened on use)

    def dataset(self) -> DatasetLayout:
        return self.layout if self.layout is not None else open_dataset(self.root, "cityscapes")

    @property
    def info(self) -> DatasetInfo:
        return self.dataset().info

    @property
    def kind(self) -> str:
        return self.layout.kind if self.layout is not None else "cityscapes"

    @property
    def has_coarse(self) -> bool:
        if self.synthetic:
            return bool(self.synthetic["coarse"])
        return self.kind == "cityscapes" and (self.root / "gtCoarse").is_dir()

    def count_images(self, split: str) -> int:
        if self.synthetic:
            return int(self.synthetic[split])
        return max(1, len(self.dataset().image_files(split)))

    def image_size(self) -> tuple[int, int]:
        """Size of the first training image (1024x2048 for Cityscapes): ``--quick`` scales from it."""
        if self.synthetic:
            return tuple(self.synthetic["size"])
        first = next(iter(self.dataset().image_files("train")), None)
        if first is None:
            return (1024, 2048)
        with Image.open(first) as image:
            return image.height, image.width

    def image_height(self) -> int:
        return int(self.image_size()[0])


def synthetic_spec(quick: bool, schedule: QuickSchedule, coarse: bool) -> dict:
    """What synthetic set a study needs: the quick schedule's, or the paper's input size."""
    if quick:
        spec = {"train": schedule.synthetic_train, "val": schedule.synthetic_val, "size": list(schedule.synthetic_size)}
    else:
        spec = {**FULL_SYNTHETIC, "size": list(FULL_SYNTHETIC["size"])}
    spec.update({"test": 0, "seed": 0, "coarse": coarse, "train_extra": spec["train"] if coarse else 0})
    return spec


def user_data(root: str | Path, dataset: str | None = None) -> StudyData:
    layout = open_dataset(root, dataset)
    return StudyData(layout.root, None, layout)


def prepare_synthetic(root: Path, spec: dict, progress: bool = True,
                      note: Callable[[str], None] = print) -> StudyData:
    """Generate the synthetic dataset under ``root`` unless the same one is already there."""
    marker = root / MARKER
    try:
        existing = read_json(marker) if marker.is_file() else None
    except RtsegError:
        existing = None  # a damaged marker: generate again
    if existing != spec:
        note(f"generating the synthetic dataset in {root}")
        generate_synthetic_cityscapes(root, train=spec["train"], val=spec["val"], test=spec["test"],
                                      size=tuple(spec["size"]), seed=spec["seed"], coarse=spec["coarse"],
                                      train_extra=spec["train_extra"], progress=progress)
        write_json(marker, spec)
    return StudyData(root, spec)
