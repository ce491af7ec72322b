"""How each benchmark entry is trained: the paper's configs, or the short ``--quick`` schedule.

Full study: ``configs/<model>.yaml`` (the Table 1 recipe), or for a coarse entry the pair
``configs/<model>-coarse.yaml`` then ``configs/<model>-coarse-fine.yaml``; a model without a
config of its own gets ``configs/paper_recipe.yaml`` with its name. On another dataset,
``configs/<dataset>-<model>.yaml`` (``camvid-skipnet-mobilenet_v1.yaml``) comes first. ``--quick`` keeps the
same models and loss but cuts the schedule to fit a few minutes on a CPU; ``QUICK`` lists
every cut, and the report and ``rtseg demo`` print them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from rtseg.benchmark.selection import Entry
from rtseg.errors import RtsegError
from rtseg.training.config import TrainConfig, read_yaml_with_base

# Whole models that have no ImageNet weights: trained from scratch when they have no config.
NO_IMAGENET_WEIGHTS = frozenset({"enet"})


@dataclass(frozen=True)
class QuickSchedule:
    """The ``--quick`` schedule. Sized so that ``make demo`` (seven Table 1 rows, ENet, Fast-SCNN
    and PIDNet-S on the synthetic data) fits in 10 minutes on a 2-core CPU; see docs/benchmark.md."""

    iterations: int = 100
    batch_size: int = 4
    coarse_iterations: int = 50  # the coarse pre-training stage of a coarse entry
    # 30x the paper's 1e-4 (poly decay to 0): from random weights, 100 steps need big ones; 3e-3
    # beat 1e-3 for SkipNet-MobileNet and UNet-ResNet18 on the synthetic data.
    lr: float = 3e-3
    synthetic_train: int = 64
    synthetic_val: int = 12
    # Training cost grows with pixels x steps; on a 2-core CPU more steps on small images
    # learned more than fewer steps on larger ones.
    synthetic_size: tuple[int, int] = (64, 128)
    real_size: tuple[int, int] = (256, 512)  # network input with --quick --data (Cityscapes / 4)
    real_val_limit: int = 50  # first N val images with --quick --data
    speed_size: tuple[int, int] = (256, 512)  # half the protocol's 512x1024 in each direction

    def cuts(self, synthetic: bool, speed_size: tuple[int, int] | None = None) -> list[str]:
        """What ``--quick`` changes against the paper's schedule, in words."""
        size = self.synthetic_size if synthetic else self.real_size
        timed = tuple(speed_size or self.speed_size)
        lines = [
            f"training: {self.iterations} iterations of batch {self.batch_size} (the paper: 200 epochs of "
            f"batch 4), Adam at lr {self.lr:g} with poly decay and no warm-up or per-module rates, for every "
            "model (the paper: Adam at 1e-4 constant; today's models: their own SGD recipes)",
            "encoders start from random weights, not ImageNet (nothing is downloaded)",
            f"input {size[0]}x{size[1]} for training and evaluation (the paper: 512x1024)",
            "no validation during training: the last checkpoint is evaluated once",
            f"speed timed at {timed[0]}x{timed[1]} (the protocol's size is 512x1024); "
            "GFLOPs are still counted at 512x1024 and 360x640",
        ]
        if synthetic:
            lines.insert(0, f"data: the synthetic dataset, {self.synthetic_train} training and "
                            f"{self.synthetic_val} validation images of {size[0]}x{size[1]}")
        else:
            lines.append(f"evaluation on the first {self.real_val_limit} validation images")
        return lines


QUICK = QuickSchedule()


@dataclass
class TrainingStage:
    """One ``train()`` call: its config and its output folder."""

    name: str  # "fine" or "coarse"
    config: TrainConfig
    out_dir: Path
    source: str  # the config file it came from, for the report


def default_configs_dir() -> Path:
    """``configs/`` beside the ``rtseg`` package (a source checkout or an editable install)."""
    return Path(__file__).resolve().parents[2] / "configs"


def training_stages(entry: Entry, run_dir: Path, *, data_root: Path, synthetic: bool, quick: bool,
                    device: str = "auto", progress: bool = True, configs_dir: Path | None = None,
                    schedule: QuickSchedule = QUICK, image_height: int = 1024,
                    dataset: str = "cityscapes", num_classes: int | None = None) -> list[TrainingStage]:
    """The config(s) that train ``entry`` into ``run_dir`` (one stage, two for a coarse entry).

    ``image_height``: the height of the dataset's images (1024 for Cityscapes), from which
    ``--quick`` on real data scales them down to its input size; ``dataset``: its layout, and
    ``num_classes`` its class count (recorded in the configs, so a study's records say it)."""
    configs_dir = Path(configs_dir) if configs_dir is not None else default_configs_dir()
    own = configs_dir / f"{dataset}-{entry.model}.yaml"
    if entry.coarse:
        specs = [("coarse", _config_file(configs_dir, f"{entry.model}-coarse")),
                 ("fine", _config_file(configs_dir, f"{entry.model}-coarse-fine"))]
    else:
        specs = [("fine", own if dataset != "cityscapes" and own.is_file() else configs_dir / f"{entry.model}.yaml")]
    stages = []
    for name, path in specs:
        data, source = _read_config(path, configs_dir, entry.model)
        out_dir = run_dir / ("train-coarse" if name == "coarse" else "train")
        _set(data, "model.name", entry.model)
        if entry.options:
            _set(data, "model.options", {**(data.get("model", {}).get("options") or {}), **entry.options})
        _set(data, "data.root", str(data_root))
        if dataset != "cityscapes":  # Cityscapes is found anyway; its configs stay as they were
            _set(data, "data.dataset", dataset)
        if num_classes is not None:
            _set(data, "model.num_classes", num_classes)
        _set(data, "data.synthetic", None)
        _set(data, "train.device", device)
        _set(data, "train.progress", progress)
        if name == "fine" and entry.coarse:
            _set(data, "model.init_from", str(run_dir / "train-coarse" / "last.pt"))
        if quick:
            _apply_quick(data, schedule, synthetic, coarse_stage=name == "coarse", image_height=image_height)
        elif synthetic:
            # The paper's crop is the synthetic images' own size: nothing to rescale.
            _set(data, "data.scale", [1.0, 1.0])
        stages.append(TrainingStage(name, TrainConfig.from_dict(data, source), out_dir, source))
    return stages


def _config_file(configs_dir: Path, stem: str) -> Path:
    path = configs_dir / f"{stem}.yaml"
    if not path.is_file():
        raise RtsegError(f"coarse entry needs the config {path} (see configs/skipnet-mobilenet_v1-coarse.yaml)")
    return path


def _read_config(path: Path, configs_dir: Path, model: str) -> tuple[dict, str]:
    if path.is_file():
        return read_yaml_with_base(path), str(path)
    recipe = configs_dir / "paper_recipe.yaml"
    data = read_yaml_with_base(recipe) if recipe.is_file() else {}
    if model in NO_IMAGENET_WEIGHTS:
        _set(data, "model.pretrained", None)
    return data, f"{recipe} (no {path.name})"


def _apply_quick(data: dict, schedule: QuickSchedule, synthetic: bool, coarse_stage: bool,
                 image_height: int) -> None:
    size = list(schedule.synthetic_size if synthetic else schedule.real_size)
    _set(data, "model.pretrained", None)
    _set(data, "data.crop", size)
    # Synthetic images are already the training size; real ones (1024x2048) scale down to it.
    factor = 1.0 if synthetic else size[0] / image_height
    _set(data, "data.scale", [factor, factor])
    _set(data, "data.val_split", None)
    _set(data, "data.val_size", None if synthetic else size)
    _set(data, "data.val_limit", None if synthetic else schedule.real_val_limit)
    _set(data, "data.workers", 0)  # tiny epochs: worker start-up would cost more than loading
    # One optimiser for every model: the zoo configs' SGD recipes (warm-up, 10x head rates) are
    # tuned for thousands of steps, and a quick run compares designs, not recipes.
    _set(data, "optim.name", "adam")
    _set(data, "optim.lr", schedule.lr)
    _set(data, "optim.warmup_iters", 0)
    _set(data, "optim.lr_multipliers", {})
    _set(data, "optim.schedule", "poly")
    _set(data, "train.iterations", schedule.coarse_iterations if coarse_stage else schedule.iterations)
    _set(data, "train.epochs", None)
    _set(data, "train.batch_size", schedule.batch_size)
    _set(data, "train.val_every", None)
    _set(data, "train.checkpoint_every", max(1, schedule.iterations // 4))
    _set(data, "train.log_every", 5)
    _set(data, "train.precision", "fp32")


def _set(data: dict, dotted: str, value) -> None:
    node = data
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = copy.deepcopy(value)
