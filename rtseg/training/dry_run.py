"""``dry_run(config)``: does a config start? One training step of it on synthetic images.

``rtseg train CONFIG --dry-run`` calls it. The config is used as it is (model and options,
data pipeline and augmentation, loss terms, optimizer and its decay groups, schedule,
precision, device) except for what a machine without the dataset and the weights cannot
have: the network starts from random weights (no ImageNet download, no ``pretrained`` file,
no ``init_from`` checkpoint), the images are a few synthetic ones in the config's split and
annotation, nothing is validated, and everything the trainer writes goes to a temporary folder
that is removed afterwards. A config that cannot start raises the error a real run would.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rtseg.data.synthetic import generate_synthetic
from rtseg.errors import RtsegError
from rtseg.training.config import TrainConfig
from rtseg.training.trainer import Trainer

# Splits the synthetic generator writes, and what they need from it.
_SYNTHETIC_SPLITS = ("train", "val", "train_extra")


@dataclass
class DryRunReport:
    model: str
    parameters: int
    device: str
    images: int                            # the batch the step trained on
    crop: tuple[int, int]
    outputs: dict[str, tuple[int, ...]]    # what the network returned in training mode
    loss: float                            # the weighted sum of the terms
    terms: dict[str, float]                # each term's value, before its weight
    decay: list[tuple[float, int, int]]    # per weight decay: its value, tensors, values
    replaced: list[str]                    # what the dry run did not take from the config


def dry_run(config: TrainConfig, data_root: str | Path | None = None) -> DryRunReport:
    """Train ``config`` for one step with random weights on synthetic data; write nothing.

    ``data_root``: a folder in the config's dataset layout to read instead of generating one
    (tests share one); it must hold the config's training split and annotation.
    """
    replaced = _replaced(config)
    with tempfile.TemporaryDirectory(prefix="rtseg-dry-run-") as folder:
        root = Path(data_root) if data_root is not None else _synthetic_root(config, Path(folder) / "synthetic")
        trial = dataclasses.replace(
            config,
            model=dataclasses.replace(config.model, pretrained=None, init_from=None),
            data=dataclasses.replace(config.data, root=str(root), synthetic=None, val_split=None, workers=0),
            train=dataclasses.replace(config.train, progress=False))
        trainer = Trainer(trial, Path(folder) / "run", resume=False)
        try:
            step = trainer.dry_run()
            # per weight decay (optim.lr_multipliers splits a decay group by learning rate)
            decays: dict[float, list[int]] = {}
            for g in trainer.optimizer.param_groups:
                counts = decays.setdefault(float(g["weight_decay"]), [0, 0])
                counts[0] += len(g["params"])
                counts[1] += sum(p.numel() for p in g["params"])
            groups = [(decay, tensors, values) for decay, (tensors, values) in decays.items()]
            return DryRunReport(
                model=config.model.name, parameters=sum(p.numel() for p in trainer.model.parameters()),
                device=str(trainer.device), images=trainer.batch_per_rank, crop=tuple(config.data.crop),
                outputs=step.outputs, loss=step.loss, terms=step.terms, decay=groups, replaced=replaced)
        finally:
            trainer.close()


def _replaced(config: TrainConfig) -> list[str]:
    model, data = config.model, config.data
    replaced = []
    if model.pretrained:
        replaced.append("ImageNet weights of the encoder" if model.pretrained is True
                        else f"model.pretrained {model.pretrained}")
    if model.init_from:
        replaced.append(f"model.init_from {model.init_from}")
    replaced.append(f"data.synthetic {data.synthetic}" if data.synthetic else f"data.root {data.root}")
    if data.val_split:
        replaced.append(f"validation on {data.val_split}")
    return replaced


def _synthetic_root(config: TrainConfig, root: Path) -> Path:
    """A few synthetic images in the config's dataset layout, split(s) and annotation."""
    data = config.data
    layout = data.dataset or "cityscapes"
    splits = data.train_split.split("+")  # "train+val": CamVid's usual training set
    unknown = [split for split in splits if split not in _SYNTHETIC_SPLITS]
    if unknown:
        raise RtsegError(f"dry run: synthetic data has the splits {', '.join(_SYNTHETIC_SPLITS)}; "
                         f"data.train_split is {data.train_split!r}")
    count = config.train.batch_size
    counts = {split: count if split in splits else 0 for split in _SYNTHETIC_SPLITS}
    height, width = data.crop
    generate_synthetic(root, layout=layout, train=counts["train"], val=counts["val"], test=0,
                       train_extra=counts["train_extra"], coarse=data.annotation == "coarse",
                       size=(max(height, 32), max(width, 64)), seed=config.train.seed, progress=False)
    return root
