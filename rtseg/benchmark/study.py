"""``run_benchmark``: the comparative study, resumable, one model and one stage at a time.

For each entry (a model, trained fine-only or coarse -> fine) four stages run in order:

* ``train``    the paper's config (or the ``--quick`` schedule), through ``rtseg.training``;
               an interrupted training continues from its last checkpoint;
* ``evaluate`` the trained checkpoint on the val split, with the official Cityscapes scores,
               plus predictions of the first validation images for the qualitative figure;
* ``cost``     parameters and GFLOPs at 512x1024 (Table 2) and 360x640 (Table 3);
* ``speed``    the speed protocol of ``rtseg.profiling.speed`` at 512x1024 (smaller with --quick).

Each finished stage leaves a record (``DIR/runs/<key>/<stage>.json``, see
``rtseg.benchmark.results``) holding the inputs it was made with. A stage whose record exists
with the same inputs is not redone; one whose inputs changed (another engine, a retrained
checkpoint) runs again. After every model the combined ``results.json``/``results.csv`` are
rewritten, and at the end the report is rendered. This module only sequences the stages;
``stages`` does each one's work, ``dataset`` provides the data, ``results`` the files.

Under ``torchrun`` every process trains (DistributedDataParallel); evaluation, timing and
the files are rank 0's, and the other ranks wait for it at the next model's training.
"""

from __future__ import annotations

import datetime
import sys
import time
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from rtseg.benchmark import results as files
from rtseg.benchmark.dataset import StudyData, prepare_synthetic, synthetic_spec, user_data
from rtseg.benchmark.report import render_report
from rtseg.benchmark.schedule import QUICK, QuickSchedule, TrainingStage, training_stages
from rtseg.benchmark.selection import Entry, resolve_models
from rtseg.benchmark.stages import (QUALITATIVE_IMAGES, checkpoint_identity, cost_entry, estimate_work,
                                    evaluate_entry, relative, remove_checkpoints, resolve, size_text, speed_entry,
                                    train_entry)
from rtseg.distributed import DistInfo, barrier, cleanup_distributed, init_distributed
from rtseg.errors import RtsegError
from rtseg.inference.backend import Backend
from rtseg.profiling.speed import TimingProtocol
from rtseg.runtime import resolve_device
from rtseg.training.config import config_differences
from rtseg.training.trainer import RESUMABLE_CHANGES

PAPER_SPEED_SIZE = (512, 1024)
# How long other ranks may wait for rank 0 (evaluation and timing) under torchrun.
DISTRIBUTED_TIMEOUT = datetime.timedelta(hours=6)


@dataclass(frozen=True)
class BenchmarkSettings:
    """Everything a study is run with, besides the models and the output folder.

    ``data``: a dataset root (None: the synthetic dataset under ``DIR/data``), ``dataset`` its
    layout (None: found); ``quick``: the
    short schedule of ``schedule`` instead of the configs; ``device``: where training and
    evaluation run (auto, cpu, cuda, cuda:1); ``backend``: how the speed stage times (its
    device follows ``device``); ``protocol``: the timing protocol (fewer runs are for tests);
    ``speed_size``: the timing input size (default 512x1024, the schedule's with ``quick``);
    ``options``: model options for every model (e.g. ``{"width": 0.25}``); ``keep_checkpoints``
    False: once all four stages of a model are done, its training checkpoints are deleted (the
    records keep their identity, so a resume stays done; a stage that must run again later then
    trains the model again). ``rtseg demo`` does this to stay small.
    """

    data: str | Path | None = None
    dataset: str | None = None
    quick: bool = False
    device: str = "auto"
    backend: Backend = Backend()
    protocol: TimingProtocol = TimingProtocol()
    speed_size: tuple[int, int] | None = None
    options: dict = field(default_factory=dict)
    configs_dir: str | Path | None = None
    schedule: QuickSchedule = QUICK
    progress: bool = True
    keep_checkpoints: bool = True


@dataclass
class BenchmarkResult:
    out_dir: Path
    results: dict  # what results.json holds
    json_path: Path
    csv_path: Path
    report_paths: list[Path]
    ran: list[tuple[str, str]] = field(default_factory=list)  # (key, stage) pairs this call ran
    failures: list[tuple[str, str, str]] = field(default_factory=list)  # (key, stage, error)
    is_main: bool = True  # False on the other ranks of a torchrun run (they write nothing)


def run_benchmark(models: str | Sequence[str | Entry], out_dir: str | Path,
                  settings: BenchmarkSettings | None = None, *, report: bool = True) -> BenchmarkResult:
    """Train, evaluate, count and time ``models`` into ``out_dir``; see the module docstring.

    ``models``: ``"paper"``, ``"all"``, ``"a,b"`` or a list of names or entries
    (``"<model>-coarse"`` for coarse pre-training). A model whose stage fails is reported and
    the others go on; ``failures`` lists them.
    """
    return _Study(models, Path(out_dir), settings or BenchmarkSettings()).run(report)


class _Study:
    def __init__(self, models, out_dir: Path, settings: BenchmarkSettings):
        self.settings = settings
        self.out_dir = out_dir
        self.progress = settings.progress
        self.device = str(resolve_device(settings.device))
        self.backend = replace(settings.backend, device=self.device.split(":")[0]).check()
        self.protocol = settings.protocol
        if self.protocol.runs < 1:
            raise RtsegError(f"speed runs must be at least 1, got {self.protocol.runs}")
        self.speed_size = tuple(settings.speed_size or (settings.schedule.speed_size if settings.quick
                                                        else PAPER_SPEED_SIZE))
        self.configs_dir = Path(settings.configs_dir) if settings.configs_dir else None
        self.synthetic = settings.data is None
        self.data = None if self.synthetic else user_data(settings.data, settings.dataset)
        has_coarse = self.synthetic or self.data.has_coarse
        self.entries, self.notes = resolve_models(models, has_coarse=has_coarse, options=settings.options)
        self.models_spec = models if isinstance(models, str) else ",".join(e.key for e in self.entries)
        self.dist: DistInfo = init_distributed(torch.device(self.device), timeout=DISTRIBUTED_TIMEOUT)
        self.is_main = self.dist.is_main
        self.ran: list[tuple[str, str]] = []
        self.failures: list[tuple[str, str, str]] = []
        self.bar = None
        self.plans: dict[str, list[TrainingStage]] = {}

    # ------------------------------------------------------------------ run
    def run(self, report: bool) -> BenchmarkResult:
        try:
            self._run_all()
        finally:
            if self.bar is not None:
                self.bar.close()
            if self.dist.owned:
                cleanup_distributed()
        results = self._write_results() if self.is_main else {}
        report_paths = render_report(self.out_dir, results) if report and self.is_main else []
        return BenchmarkResult(self.out_dir, results, self.out_dir / files.RESULTS_JSON,
                               self.out_dir / files.RESULTS_CSV, report_paths, self.ran, self.failures,
                               self.is_main)

    def _run_all(self) -> None:
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.synthetic:
            spec = synthetic_spec(self.settings.quick, self.settings.schedule, any(e.coarse for e in self.entries))
            if self.is_main:
                prepare_synthetic(self.out_dir / "data", spec, self.progress, self._note)
            barrier(self.dist)
            self.data = StudyData(self.out_dir / "data", spec)
        # Every entry's configs are built (and checked) before anything trains.
        self.plans = {e.key: training_stages(e, self.out_dir / "runs" / e.key, data_root=self.data.root,
                                             synthetic=self.synthetic, quick=self.settings.quick, device=self.device,
                                             progress=self.progress and self.is_main, configs_dir=self.configs_dir,
                                             schedule=self.settings.schedule, image_height=self.data.image_height(),
                                             dataset=self.data.kind, num_classes=self.data.info.num_classes)
                      for e in self.entries}
        work = {e.key: estimate_work(e, self.plans[e.key], self.data, self.speed_size, self.protocol.runs,
                                     QUALITATIVE_IMAGES) for e in self.entries}
        done = sum(work[e.key][s] for e in self.entries for s in files.STAGES if self._is_done(e, s))
        self.bar = _progress_bar(sum(sum(w.values()) for w in work.values()), done, self.progress and self.is_main)
        for number, entry in enumerate(self.entries, 1):
            for stage in files.STAGES:
                if self._is_done(entry, stage):
                    continue
                self.bar.set_description_str(f"benchmark [{number}/{len(self.entries)}] {entry.key}: {stage}")
                self._run_stage(entry, stage)
                self.bar.update(work[entry.key][stage])
            if self.is_main and not self.settings.keep_checkpoints:
                self._remove_checkpoints(entry)
            if self.is_main:
                self._write_results()
        barrier(self.dist)  # the other ranks wait for rank 0's last evaluation and timing

    # ------------------------------------------------------------- stages
    def _inputs(self, entry: Entry, stage: str) -> dict | None:
        """What a stage's result depends on; None when it cannot run yet (no checkpoint)."""
        plan = self.plans[entry.key]
        if stage == "train":
            return {"configs": [s.config.to_dict() for s in plan]}
        if stage == "cost":
            return {"model": entry.model, "options": entry.options, "sizes": ["512x1024", "360x640"]}
        identity = self._identity(entry)
        if identity is None:
            return None
        if stage == "evaluate":
            config = plan[-1].config
            size = config.data.val_size
            return {**identity, "size": size_text(size) if size else None, "limit": config.data.val_limit,
                    "qualitative": QUALITATIVE_IMAGES, "data": str(self.data.root)}
        return {**identity, "size": size_text(self.speed_size), "backend": self.backend.as_dict(),
                "protocol": self.protocol.as_dict()}

    def _is_done(self, entry: Entry, stage: str) -> bool:
        record = files.read_stage(self.out_dir, entry.key, stage)
        if record is None:
            return False
        inputs = self._inputs(entry, stage)
        if stage == "train" and self._checkpoint(entry) is None:
            # deleted by the user: train (or resume) again; removed once the model was done: done
            # while every later stage is, else the model must be trained again to run that stage
            return _removed(record) and all(self._is_done(entry, s) for s in files.STAGES if s != "train")
        if stage == "train" and record["inputs"] != inputs:
            changed = _config_changes(record["inputs"], inputs)
            if changed:
                raise RtsegError(f"{self.out_dir / 'runs' / entry.key} was trained with other settings "
                                 f"({', '.join(changed)}); choose another --out or delete that folder")
            return True  # only how the run reports changed (device, progress): the training stands
        return inputs is not None and record["inputs"] == inputs

    def _checkpoint(self, entry: Entry) -> Path | None:
        record = files.read_stage(self.out_dir, entry.key, "train")
        if record is None:
            return None
        path = resolve(record["result"]["checkpoint"], self.out_dir)
        return path if path.is_file() else None

    def _identity(self, entry: Entry) -> dict | None:
        """What the later stages' records depend on: the checkpoint's path and identity, from the
        file, or from the train record when the file was removed after the model was done."""
        checkpoint = self._checkpoint(entry)
        if checkpoint is not None:
            return {"checkpoint": relative(checkpoint, self.out_dir), **checkpoint_identity(checkpoint)}
        record = files.read_stage(self.out_dir, entry.key, "train")
        if record is not None and _removed(record):
            return {"checkpoint": record["result"]["checkpoint"], **record["result"]["checkpoint_identity"]}
        return None

    def _remove_checkpoints(self, entry: Entry) -> None:
        """Delete a finished model's training checkpoints, noting it (and their identity) in its train record."""
        record = files.read_stage(self.out_dir, entry.key, "train")
        if record is None or _removed(record) or not all(self._is_done(entry, s) for s in files.STAGES):
            return
        identity = self._identity(entry)
        removed = remove_checkpoints(self.plans[entry.key])
        result = {**record["result"], "checkpoint_identity": {k: identity[k] for k in ("bytes", "mtime_ns")},
                  "checkpoint_removed": True}
        files.write_stage(self.out_dir, entry.key, "train", record["inputs"], result)
        self._note(f"{entry.key}: done; removed its checkpoints ({removed / 1e6:.1f} MB)")

    def _run_stage(self, entry: Entry, stage: str) -> None:
        if stage != "train" and not self.is_main:
            return
        if stage in ("evaluate", "speed") and self._checkpoint(entry) is None:
            self._note(f"{entry.key}: {stage} skipped, the model has no trained checkpoint")
            return
        started = time.perf_counter()
        try:
            result = self._execute(entry, stage)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # one model's failure (divergence, out of memory) must not stop the study
            message = f"{type(exc).__name__}: {exc}".splitlines()[0]
            self.failures.append((entry.key, stage, message))
            self._note(f"{entry.key}: {stage} FAILED: {message}")
            if not isinstance(exc, RtsegError) and self.is_main:
                traceback.print_exc(file=sys.stderr)
            return
        self.ran.append((entry.key, stage))
        # Asked after the stage: training changes the checkpoint, so its record's inputs are the configs only.
        inputs = self._inputs(entry, stage)
        if self.is_main:
            result["stage_seconds"] = round(time.perf_counter() - started, 2)
            files.write_stage(self.out_dir, entry.key, stage, inputs, result)
            self._note(f"{entry.key}: {_summary(stage, result)}")

    def _execute(self, entry: Entry, stage: str) -> dict:
        plan = self.plans[entry.key]
        if stage == "train":
            return train_entry(plan, self.out_dir)
        if stage == "cost":
            return cost_entry(entry, self.data.info.num_classes)
        checkpoint = self._checkpoint(entry)
        if stage == "evaluate":
            return evaluate_entry(checkpoint, plan[-1].config.data, self.data.kind, self.device,
                                  self.out_dir / "runs" / entry.key / "predictions", self.out_dir, self.progress)
        return speed_entry(checkpoint, self.speed_size, self.backend, self.protocol)

    # ------------------------------------------------------------- helpers
    def _note(self, text: str) -> None:
        if not self.is_main:
            return
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def _write_results(self) -> dict:
        records = {}
        for entry in self.entries:
            # a record made with other inputs (another engine, an older checkpoint) is not this run's
            current = {stage: entry.key in self.plans and self._is_done(entry, stage) for stage in files.STAGES}
            records[entry.key] = {stage: (files.read_stage(self.out_dir, entry.key, stage) or {}).get("result")
                                  if current[stage] else None for stage in files.STAGES}
        settings = {
            "models": self.models_spec, "quick": self.settings.quick, "device": self.device,
            "engine": self.backend.engine, "precision": self.backend.precision, "threads": self.backend.threads,
            "speed_size": size_text(self.speed_size), "speed_runs": self.protocol.runs,
            "data": "synthetic" if self.synthetic else str(self.data.root),
            "synthetic": self.data.synthetic if self.synthetic else None,
            "dataset": self.data.info.to_dict(),
        }
        results = files.assemble_results(self.entries, records, self.failures, settings, self.notes,
                                         self.settings.schedule.cuts(self.synthetic, self.speed_size)
                                         if self.settings.quick else [], self.device, self.backend.threads)
        files.write_json(self.out_dir / files.RESULTS_JSON, results)
        files.write_csv(self.out_dir / files.RESULTS_CSV, results["models"], self.data.info)
        return results


def _removed(train_record: dict) -> bool:
    return bool(train_record["result"].get("checkpoint_removed"))


def _config_changes(old: dict, new: dict) -> list[str]:
    """Config keys that differ between two train records, ignoring how a run reports and where it runs."""
    old_configs, new_configs = old.get("configs", []), new.get("configs", [])
    if len(old_configs) != len(new_configs):
        return ["the training stages"]
    changed = []
    for a, b in zip(old_configs, new_configs):
        changed += [k for k in config_differences(a, b) if k not in RESUMABLE_CHANGES and k not in changed]
    return changed


def _summary(stage: str, result: dict) -> str:
    if stage == "train":
        seconds = result.get("seconds")
        return f"trained {result['steps']} steps" + (f" in {seconds:.0f} s" if seconds else "")
    if stage == "evaluate":
        miou = result.get("miou")
        return f"evaluated: mIoU {100 * miou:.1f}" if miou is not None else "evaluated: mIoU undefined"
    if stage == "cost":
        params = result.get("eval_params") or result["params"]
        return f"{params / 1e6:.2f} M parameters, {result['gflops']['512x1024']:.1f} GFLOPs at 512x1024"
    return (f"timed at {result['size']}: {result['fps']:.1f} FPS end-to-end, {result['fps_model']:.1f} FPS model only "
            f"({result['engine']}, {result['precision']})")


def _progress_bar(total: float, done: float, enabled: bool):
    # The bar counts estimated work (GFLOPs), so its ETA weighs a VGG stage above an ENet one.
    return tqdm(total=total, initial=done, disable=not enabled, dynamic_ncols=True, file=sys.stderr,
                bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed} elapsed, ETA {remaining}")
