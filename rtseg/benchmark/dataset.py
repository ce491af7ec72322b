"""The data a benchmark runs on: a Cityscapes folder as given, or the synthetic one it generates.

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
from rtseg.data.cityscapes import check_root, split_image_files
from rtseg.data.synthetic import generate_synthetic_cityscapes
from rtseg.errors import RtsegError

# The synthetic dataset a full (not --quick) run generates: the paper's input size.
FULL_SYNTHETIC = {"train": 64, "val": 16, "size": (512, 1024)}
MARKER = ".complete"


@dataclass(frozen=True)
class StudyData:
    root: Path
    synthetic: dict | None  # what was generated (None: the user's folder)

    @property
    def has_coarse(self) -> bool:
        return bool(self.synthetic["coarse"]) if self.synthetic else (self.root / "gtCoarse").is_dir()

    def count_images(self, split: str) -> int:
        if self.synthetic:
            return int(self.synthetic[split])
        return max(1, len(split_image_files(self.root, split)))

    def image_height(self) -> int:
        """Height of the first training image (1024 for Cityscapes): ``--quick`` scales from it."""
        if self.synthetic:
            return int(self.synthetic["size"][0])
        first = next(iter(split_image_files(self.root, "train")), None)
        if first is None:
            return 1024
        with Image.open(first) as image:
            return image.height

    def image_size(self) -> tuple[int, int]:
        return tuple(self.synthetic["size"]) if self.synthetic else (1024, 2048)


def synthetic_spec(quick: bool, schedule: QuickSchedule, coarse: bool) -> dict:
    """What synthetic set a study needs: the quick schedule's, or the paper's input size."""
    if quick:
        spec = {"train": schedule.synthetic_train, "val": schedule.synthetic_val, "size": list(schedule.synthetic_size)}
    else:
        spec = {**FULL_SYNTHETIC, "size": list(FULL_SYNTHETIC["size"])}
    spec.update({"test": 0, "seed": 0, "coarse": coarse, "train_extra": spec["train"] if coarse else 0})
    return spec


def user_data(root: str | Path) -> StudyData:
    return StudyData(check_root(root), None)


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
