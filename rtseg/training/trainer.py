"""``train(config, out_dir)``: the paper's training loop, resumable, on one or many processes.

One process (``rtseg train``) or one per GPU/CPU worker (``torchrun ... -m rtseg train``):
the loop is the same, DistributedDataParallel wraps the model when torchrun started it.
Rank 0 alone writes logs and checkpoints, all under ``out_dir``::

    out_dir/config.yaml     the resolved configuration
    out_dir/last.pt         full checkpoint (model, optimizer, scheduler, scaler, RNG, position)
    out_dir/best.pt         model of the best validation mIoU (no optimizer state)
    out_dir/steps.csv       step, epoch, loss, lr, seconds    (every train.log_every steps), and
                            loss_<term> for each term when the config's loss has several
    out_dir/metrics.csv     step, epoch, train_loss, lr, the dataset's scores (Cityscapes: miou, miiou,
                            category_miou, category_miiou; others: miou, pixel_accuracy, mean_accuracy)
    out_dir/tensorboard/    the same scalars, when TensorBoard is installed

``train(..., resume=True)`` restarts from ``last.pt`` so that the following steps are
those of an uninterrupted run: same batches and augmentations (``rtseg.training.sampling``),
same generator states, same optimizer moments.

The network may return its logits or, in training mode, a dict of them and extra outputs;
the config's ``loss`` terms (``rtseg.training.losses``) say what each output is trained with.
"""

from __future__ import annotations

import math
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from rtseg import checkpoint as ckpt
from rtseg.atomic import atomic_open
from rtseg.data.augment import TrainAugmentation, to_network_input
from rtseg.data.check import check_split
from rtseg.data.class_weights import weights_from_counts
from rtseg.data.dataset import DatasetLayout, SegmentationDataset
from rtseg.data.layouts import open_dataset
from rtseg.data.synthetic import generate_synthetic
from rtseg.distributed import (barrier, broadcast, broadcast_object, cleanup_distributed, init_distributed,
                               launched_by_torchrun, local_rank)
from rtseg.errors import RtsegError
from rtseg.models import create_model
from rtseg.models.weights import fit_state_dict
from rtseg.normalisation import model_normalisation
from rtseg.runtime import autocast, check_precision, resolve_device
from rtseg.training.config import TrainConfig, config_differences
from rtseg.training.evaluator import build_eval_dataset, evaluate
from rtseg.training.logs import CsvLog, TensorBoardLog
from rtseg.training.losses import LossRecipe
from rtseg.training.optimizer import build_optimizer, build_scheduler
from rtseg.training.sampling import SeededDataset, SeededSampler

LAST, BEST = "last.pt", "best.pt"
STEP_FIELDS = ("step", "epoch", "loss", "lr", "seconds")
# Keys a resumed run may change: where data lives and how the run reports, not what it computes.
RESUMABLE_CHANGES = {"data.root", "data.workers", "data.val_limit", "data.cache", "train.device", "train.progress",
                     "train.log_every", "train.val_every", "train.checkpoint_every"}


class NonFiniteLossError(RtsegError):
    """The loss became NaN or infinite: the run stops, the last good checkpoint stays."""


@dataclass
class StepResult:
    loss: float                # the global weighted sum of the loss terms
    lr: float                  # the learning rate the step used
    terms: dict[str, float]    # each term's global value, before its weight
    outputs: dict[str, tuple[int, ...]]  # the shapes of what the network returned


@dataclass
class TrainResult:
    out_dir: Path
    last_checkpoint: Path
    best_checkpoint: Path | None  # None when the run had no validation
    best_miou: float | None
    steps: int
    metrics: dict | None  # the last validation's results
    model: nn.Module  # the trained network (not DDP-wrapped), in eval mode


def train(config: TrainConfig, out_dir: str | Path, resume: bool = False) -> TrainResult:
    """Train ``config`` into ``out_dir`` (see the module docstring for what is written there).

    ``resume=True`` continues from ``out_dir/last.pt`` (a fresh start with a note when there
    is none); without it an ``out_dir`` that already holds a run is refused. Raises
    ``RtsegError`` for user mistakes and ``NonFiniteLossError`` when the loss diverges.
    """
    trainer = Trainer(config, Path(out_dir), resume)
    try:
        return trainer.run()
    finally:
        trainer.close()


class Trainer:
    def __init__(self, config: TrainConfig, out_dir: Path, resume: bool):
        self.config = config
        self.out_dir = out_dir
        self.device = resolve_device(config.train.device, local_rank(), "train.device")
        check_precision(config.train.precision, self.device, "train.precision")
        self.owns_process_group = launched_by_torchrun() and not torch.distributed.is_initialized()
        self.info = init_distributed(self.device)
        self.logs: list = []
        try:
            self.resume_state = self._find_resume_state(resume)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ set-up
    def _find_resume_state(self, resume: bool) -> dict | None:
        last = self.out_dir / LAST
        if not last.is_file():
            if resume and self.info.is_main:
                print(f"rtseg train: no checkpoint in {self.out_dir} to resume; starting a new run", file=sys.stderr)
            return None
        if not resume:
            raise RtsegError(f"{self.out_dir} already holds a run ({last}); pass --resume to continue it "
                             "or choose another --out")
        state = ckpt.load_checkpoint(last)
        changed = [k for k in config_differences(state["config"], self.config.to_dict())
                   if k not in RESUMABLE_CHANGES]
        if changed:
            raise RtsegError(f"cannot resume {last}: the config differs in {', '.join(changed)} "
                             f"(resume with the run's own config, {self.out_dir / 'config.yaml'})")
        return state

    def _setup(self) -> None:
        cfg, info = self.config, self.info
        loop = cfg.train
        if loop.batch_size % info.world_size:
            raise RtsegError(f"train.batch_size {loop.batch_size} (the global batch) must divide evenly "
                             f"over {info.world_size} processes")
        self.batch_per_rank = loop.batch_size // info.world_size
        if info.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            _write_yaml_atomic(cfg.to_dict(), self.out_dir / "config.yaml")
        barrier(info)
        # Same initial weights and generator states on every rank (DDP also broadcasts rank 0's weights).
        _seed_everything(loop.seed)

        self.layout = self._open_data()
        self.num_classes = self._num_classes(self.layout)
        for name, term in cfg.loss.items():  # a fixed weight list must fit the dataset's classes
            weights = getattr(term, "class_weights", None)
            if isinstance(weights, list) and len(weights) != self.num_classes:
                raise RtsegError(f"loss.{name}.class_weights has {len(weights)} values but the {self.layout.info.name} "
                                 f"dataset has {self.num_classes} classes")
        self.model = self._build_model()
        self.mean, self.std = model_normalisation(self.model)
        self.train_set, self.val_set = self._build_datasets(self.mean, self.std)
        self.loss = LossRecipe(cfg.loss, info=info)
        # Every label is checked before the first step; the class weights come from the same pass,
        # kept only when a loss term weighs classes by data.class_weights.
        weights = self._class_weights()
        self.class_weights = weights if self.loss.needs_class_weights else None
        self.loss.class_weights = self.class_weights

        self.sampler = SeededSampler(self.train_set, seed=loop.seed, rank=info.rank, world_size=info.world_size)
        self.steps_per_epoch = self.sampler.epoch_length // self.batch_per_rank
        if self.steps_per_epoch == 0:
            raise RtsegError(f"the training set ({len(self.train_set)} images) is smaller than one batch "
                             f"({loop.batch_size})")
        self.total_steps = loop.iterations or loop.epochs * self.steps_per_epoch
        self.val_every = loop.val_every or self.steps_per_epoch
        self.checkpoint_every = loop.checkpoint_every or self.val_every

        self.optimizer = build_optimizer(cfg.optim, self.model)
        self.scheduler = build_scheduler(cfg.optim, self.optimizer, self.total_steps)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=loop.precision == "fp16")
        self.ddp_model = self._wrap(self.model)

        self.step, self.best_miou, self.last_metrics = 0, None, None
        self.loss_sum, self.loss_count, self.seconds_before = 0.0, 0, 0.0
        if self.resume_state is not None:
            self._restore(self.resume_state)
        resume_step = self.step if self.resume_state is not None else None
        if info.is_main:
            self.steps_log = CsvLog(self.out_dir / "steps.csv", STEP_FIELDS + self._term_fields(), resume_step)
            metric_fields = ("step", "epoch", "train_loss", "lr", *self.layout.info.score_keys, "seconds")
            self.metrics_log = CsvLog(self.out_dir / "metrics.csv", metric_fields, resume_step)
            self.tensorboard = TensorBoardLog(self.out_dir / "tensorboard", purge_step=resume_step)
            self.logs = [self.steps_log, self.metrics_log, self.tensorboard]

    def _build_model(self) -> nn.Module:
        mcfg, info = self.config.model, self.info
        pretrained = None if self.resume_state is not None else (mcfg.pretrained or None)
        # Rank 0 fetches ImageNet weights first; the others then find them in the cache.
        if not info.is_main:
            barrier(info)
        try:
            model = create_model(mcfg.name, num_classes=self.num_classes, pretrained=pretrained, **mcfg.options)
        finally:
            if info.is_main:
                barrier(info)
        if mcfg.init_from and self.resume_state is None:
            if not Path(mcfg.init_from).is_file():
                raise RtsegError(f"model.init_from {mcfg.init_from} does not exist: it is the checkpoint of the run "
                                 "this one continues (train that config first, or pass --set model.init_from=PATH)")
            state = ckpt.load_checkpoint(mcfg.init_from)
            source = f"model.init_from {mcfg.init_from}"
            if mcfg.init_keys == "all":
                fit_state_dict(model, state["model"], source)
            else:
                note = load_shared_tensors(model, state["model"], source)
                if info.is_main:
                    print(f"rtseg train: {note}", file=sys.stderr)
        if mcfg.sync_bn and info.enabled:
            if self.device.type != "cuda":
                raise RtsegError("model.sync_bn needs CUDA devices (SyncBatchNorm has no CPU kernel); "
                                 "set model.sync_bn=false")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return model.to(self.device)

    def _build_datasets(self, mean, std) -> tuple[Dataset, Dataset | None]:
        dcfg = self.config.data
        augmentation = TrainAugmentation(crop=tuple(dcfg.crop), scale=tuple(dcfg.scale), hflip=dcfg.hflip,
                                         color_jitter=dcfg.color_jitter)
        train_set = SegmentationDataset(self.layout, split=dcfg.train_split, transforms=augmentation, cache=dcfg.cache)
        val_set = None
        if dcfg.val_split:
            # Validation always scores the fine annotations (coarse pre-training included).
            val_set = build_eval_dataset(self.layout.root, dcfg.val_split, dcfg.val_size, mean, std,
                                         annotation="fine", dataset=self.layout.kind)
        return train_set, val_set

    def _open_data(self) -> DatasetLayout:
        """The dataset's layout reader: ``data.root`` (``data.dataset`` or found), or the synthetic
        dataset generated under the run folder (once, by rank 0)."""
        dcfg, synthetic = self.config.data, self.config.data.synthetic
        if synthetic is None:
            return open_dataset(dcfg.root, dcfg.dataset, dcfg.annotation)
        root = self.out_dir / "synthetic"
        if self.info.is_main and not (root / ".complete").is_file():
            generate_synthetic(root, layout=synthetic.layout, train=synthetic.train, val=synthetic.val, test=0,
                               size=tuple(synthetic.size), seed=synthetic.seed, progress=self.config.train.progress)
            with atomic_open(root / ".complete", "w", encoding="utf-8") as handle:
                handle.write("generated by rtseg train\n")
        barrier(self.info)
        return open_dataset(root, synthetic.layout, dcfg.annotation)

    def _num_classes(self, layout: DatasetLayout) -> int:
        """The dataset's class count; a ``model.num_classes`` that says otherwise is refused."""
        stated, info = self.config.model.num_classes, layout.info
        if stated is not None and stated != info.num_classes:
            raise RtsegError(f"model.num_classes is {stated} but the {info.name} dataset at {layout.root} has "
                             f"{info.num_classes} classes; leave model.num_classes out (the dataset sets it)")
        return info.num_classes

    def _class_weights(self) -> torch.Tensor:
        """Every label of the training (and validation) split checked once, then the class weights
        from the counts; the first bad file stops the run in one line. Rank 0 reads, all get them."""
        if self.resume_state is not None and "class_weights" in self.resume_state:
            return self.resume_state["class_weights"].to(self.device)
        dcfg = self.config.data
        weights = torch.zeros(self.num_classes, dtype=torch.float32)
        error = None
        if self.info.is_main:
            try:
                splits = [dcfg.train_split] + ([dcfg.val_split] if dcfg.val_split else [])
                reports = [check_split(self.train_set.layout if i == 0 else self.val_set.layout, split,
                                       workers=dcfg.workers, progress=self.config.train.progress,
                                       cache_dir=self.out_dir / "cache") for i, split in enumerate(splits)]
                for report in reports:
                    if report.errors:
                        raise RtsegError(report.first_error_line())
                train = reports[0]
                if sum(train.pixels) == 0:
                    raise RtsegError(f"no labelled pixels in the {len(self.train_set)} label files of split "
                                     f"{dcfg.train_split!r} of {self.layout.root}: every pixel is ignored")
                weights = weights_from_counts(train.pixels, train.image_pixels, dcfg.class_weights).float()
            except RtsegError as exc:
                error = str(exc)
        error = broadcast_object(error, self.info)
        if error:
            raise RtsegError(error)
        weights = broadcast(weights.to(self.device), self.info)
        return weights

    def _wrap(self, model: nn.Module) -> nn.Module:
        if not self.info.enabled:
            return model
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    # ------------------------------------------------------------- checkpoints
    def _checkpoint(self, full: bool) -> dict:
        mean, std = model_normalisation(self.model)
        state = {
            "format": ckpt.FORMAT, "version": ckpt.VERSION,
            "model_name": getattr(self.model, "name", self.config.model.name),
            "num_classes": self.num_classes,
            "dataset": self.layout.info.to_dict(),
            "model_options": dict(self.config.model.options),
            "mean": list(mean), "std": list(std),
            "eval_size": list(self.config.data.val_size) if self.config.data.val_size else None,
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "step": self.step, "epoch": self.step // self.steps_per_epoch,
            "config": self.config.to_dict(),
            "best_miou": self.best_miou,
            "metrics": _summary(self.last_metrics, self.layout.info.score_keys),
        }
        if self.class_weights is not None:
            state["class_weights"] = self.class_weights.cpu()
        if full:
            state.update({
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "scaler": self.scaler.state_dict(),
                "rng": ckpt.capture_rng_state(),
                "loss_sum": self.loss_sum, "loss_count": self.loss_count,
                "seconds": self._seconds(),
            })
        return state

    def _save(self, best: bool) -> None:
        if not self.info.is_main:
            return
        ckpt.save_atomic(self._checkpoint(full=True), self.out_dir / LAST)
        if best:
            ckpt.save_atomic(self._checkpoint(full=False), self.out_dir / BEST)

    def _restore(self, state: dict) -> None:
        fit_state_dict(self.model, {k: v.to(self.device) for k, v in state["model"].items()}, str(self.out_dir / LAST))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        ckpt.restore_rng_state(state["rng"])
        self.step = int(state["step"])
        self.best_miou = state.get("best_miou")
        self.loss_sum, self.loss_count = float(state["loss_sum"]), int(state["loss_count"])
        self.seconds_before = float(state.get("seconds", 0.0))
        self.last_metrics = state.get("metrics")

    # -------------------------------------------------------------------- loop
    def run(self) -> TrainResult:
        self._setup()
        loop = self.config.train
        self.started = time.perf_counter()
        bar = tqdm(total=self.total_steps, initial=self.step, desc="train", dynamic_ncols=True,
                   disable=not (loop.progress and self.info.is_main))
        self._bar = bar
        while self.step < self.total_steps:
            epoch, skip = divmod(self.step, self.steps_per_epoch)
            self.sampler.set_epoch(epoch, skip=skip * self.batch_per_rank)
            for batch in self._loader():
                result = self._train_step(batch)
                loss, lr = result.loss, result.lr
                self.step += 1
                self.loss_sum += loss
                self.loss_count += 1
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.3g}", epoch=epoch, refresh=False)
                bar.update(1)
                if self.info.is_main and (self.step % loop.log_every == 0 or self.step == self.total_steps):
                    terms = {f"loss_{name}": value for name, value in result.terms.items()} if self._term_fields() else {}
                    row = {"step": self.step, "epoch": epoch, "loss": loss, "lr": lr, "seconds": self._seconds(), **terms}
                    self.steps_log.write(row)
                    self.tensorboard.scalars({"train/loss": loss, "train/lr": lr,
                                              **{f"train/{k.replace('_', '/', 1)}": v for k, v in terms.items()}},
                                             self.step)
                self._after_step(epoch, lr)
                if self.step >= self.total_steps:
                    break
        bar.close()
        self.model.eval()
        best = self.out_dir / BEST
        return TrainResult(self.out_dir, self.out_dir / LAST, best if best.is_file() else None, self.best_miou,
                           self.step, self.last_metrics, self.model)

    def _loader(self) -> DataLoader:
        workers = self.config.data.workers
        return DataLoader(SeededDataset(self.train_set), batch_size=self.batch_per_rank, sampler=self.sampler,
                          num_workers=workers, pin_memory=self.device.type == "cuda", drop_last=True,
                          persistent_workers=False, generator=torch.Generator())

    def _set_train_mode(self) -> None:
        self.model.train()
        if self.config.model.freeze_bn:
            for module in self.model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def _term_fields(self) -> tuple[str, ...]:
        """steps.csv columns of the single terms, when the loss has more than one."""
        names = tuple(self.config.loss)
        return tuple(f"loss_{name}" for name in names) if len(names) > 1 else ()

    def _train_step(self, batch: dict) -> StepResult:
        loop = self.config.train
        self._set_train_mode()
        images, labels = to_network_input(batch, self.device, self.mean, self.std)
        lr = float(self.scheduler.get_last_lr()[0])
        with autocast(loop.precision, self.device):
            outputs = self.ddp_model(images)
        # the main logits, or in training mode a dict of them and the network's extra outputs;
        # the config's loss terms say which output each reads
        loss, value, terms = self.loss(outputs, labels)
        shapes = {name: tuple(t.shape) for name, t in (outputs.items() if isinstance(outputs, dict)
                                                       else {"out": outputs}.items())}
        if not math.isfinite(value):
            last = self.out_dir / LAST
            kept = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint was written yet"
            raise NonFiniteLossError(
                f"the loss became {value} at step {self.step + 1} (epoch {self.step // self.steps_per_epoch}); "
                f"stopped, {kept}. Lower optim.lr, set optim.grad_clip, or train in fp32/bf16")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.config.optim.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        return StepResult(value, lr, terms, shapes)

    def dry_run(self) -> StepResult:
        """Set everything up as ``run`` does, then train one step on the first batch (``rtseg.training.dry_run``)."""
        self._setup()
        self.started = time.perf_counter()
        self.sampler.set_epoch(0)
        return self._train_step(next(iter(self._loader())))

    def _after_step(self, epoch: int, lr: float) -> None:
        validate = self.val_set is not None and (self.step % self.val_every == 0 or self.step == self.total_steps)
        improved = False
        if validate:
            results = evaluate(self.model, self.val_set, self.device, precision=self.config.train.precision,
                               workers=self.config.data.workers, limit=self.config.data.val_limit,
                               dist_info=self.info, progress=self.config.train.progress)
            self.last_metrics = results
            miou = results["miou"]
            improved = miou is not None and (self.best_miou is None or miou > self.best_miou)
            if improved:
                self.best_miou = miou
            if self.info.is_main:
                train_loss = self.loss_sum / max(self.loss_count, 1)
                summary = _summary(results, self.layout.info.score_keys)
                row = {"step": self.step, "epoch": epoch, "train_loss": train_loss, "lr": lr,
                       "seconds": self._seconds(), **summary}
                self.metrics_log.write(row)
                self.tensorboard.scalars({f"val/{k}": v for k, v in summary.items()}, self.step)
                scores = "  ".join(f"{SCORE_NAMES[k]} {_percent(v)}" for k, v in summary.items())
                self._bar.write(f"step {self.step}: {scores}  (train loss {train_loss:.4f})")
            self.loss_sum, self.loss_count = 0.0, 0
        if improved or self.step % self.checkpoint_every == 0 or self.step == self.total_steps:
            self._save(best=improved)
            barrier(self.info)  # a rank that resumes must find the file complete

    def _seconds(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started

    def close(self) -> None:
        for log in self.logs:
            log.close()
        self.logs = []
        if self.owns_process_group:
            cleanup_distributed()


# ----------------------------------------------------------------------- helpers

def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too


def load_shared_tensors(model: nn.Module, state: dict, source: str) -> str:
    """Load the tensors ``model`` and ``state`` both have (``model.init_keys: shared``); a name in both
    with another shape is an error, so is a checkpoint that shares nothing. Returns what it did."""
    own = model.state_dict()
    shared = sorted(set(own) & set(state))
    wrong = [k for k in shared if own[k].shape != state[k].shape]
    if wrong:
        raise RtsegError(f"{source}: tensors with another shape than in {type(model).__name__}: "
                         f"{', '.join(wrong[:8])}")
    if not shared:
        raise RtsegError(f"{source} shares no tensor with {type(model).__name__}: not a stage of this network")
    model.load_state_dict({**own, **{k: state[k] for k in shared}}, strict=True)
    fresh = sorted(set(own) - set(state))
    dropped = sorted(set(state) - set(own))
    return (f"{source}: loaded {len(shared)} of the network's {len(own)} tensors; "
            f"{len(fresh)} start as initialised ({_prefixes(fresh)}), "
            f"{len(dropped)} of the checkpoint are not used ({_prefixes(dropped)})")


def _prefixes(keys: list[str]) -> str:
    names = dict.fromkeys(k.split(".")[0] for k in keys)
    return ", ".join(names) or "none"


SCORE_NAMES = {"miou": "mIoU", "miiou": "iIoU", "category_miou": "category mIoU", "category_miiou": "category iIoU",
               "pixel_accuracy": "pixel accuracy", "mean_accuracy": "mean accuracy"}


def _summary(results: dict | None, keys) -> dict[str, Any] | None:
    if results is None:
        return None
    return {k: results.get(k) for k in keys}


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _write_yaml_atomic(data: dict, path: Path) -> None:
    with atomic_open(path, "w", encoding="utf-8") as handle:
        yaml.safe_dump(data, handle, sort_keys=False)
