"""``run_benchmark``: the comparative study, resumable, one model and one stage at a time.

For each entry (a model, trained fine-only or coarse -> fine) four stages run in order:

* ``train``    the paper's config (or the ``--quick`` schedule), through ``rtseg.engine.trainer``;
               an interrupted training continues from its last checkpoint (``resume=True``);
* ``evaluate`` the trained checkpoint on the val split, with the official Cityscapes scores,
               plus predictions of the first validation images for the qualitative figure;
* ``cost``     parameters and GFLOPs at 512x1024 (Table 2) and 360x640 (Table 3);
* ``speed``    the speed protocol of ``rtseg.profiling.speed`` at 512x1024 (smaller with --quick).

Each finished stage leaves a record (``DIR/runs/<key>/<stage>.json``, see
``rtseg.benchmark.results``) holding the inputs it was made with. A stage whose record exists
with the same inputs is not redone; one whose inputs changed (another engine, a retrained
checkpoint) runs again. After every model the combined ``results.json``/``results.csv`` are
rewritten, and at the end the report is rendered.

Under ``torchrun`` every process trains (DistributedDataParallel); evaluation, timing and
the files are rank 0's, and the other ranks wait for it at the next model's training.
"""

from __future__ import annotations

import datetime
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from rtseg.benchmark import results as files
from rtseg.benchmark.schedule import QUICK, QuickSchedule, TrainingStage, training_stages
from rtseg.benchmark.selection import Entry, resolve_models
from rtseg.benchmark.stages import (checkpoint_identity, cost_entry, evaluate_entry, relative, resolve,
                                    size_text, speed_entry, train_entry)
from rtseg.errors import RtsegError

PAPER_SPEED_SIZE = (512, 1024)
QUALITATIVE_IMAGES = 3
# The synthetic dataset a full (not --quick) run generates: the paper's input size.
FULL_SYNTHETIC = {"train": 64, "val": 16, "size": (512, 1024)}
# How long other ranks may wait for rank 0 (evaluation and timing) under torchrun.
DISTRIBUTED_TIMEOUT = datetime.timedelta(hours=6)


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


def run_benchmark(models: str | Sequence[str], out_dir: str | Path, data: str | Path | None = None,
                  quick: bool = False, *, device: str = "auto", engine: str = "eager", precision: str = "fp32",
                  threads: int | None = None, speed_size: tuple[int, int] | None = None, speed_runs: int = 20,
                  speed_options: dict | None = None, options: dict | None = None, configs_dir: str | Path | None = None, progress: bool = True,
                  report: bool = True, schedule: QuickSchedule = QUICK) -> BenchmarkResult:
    """Train, evaluate, count and time ``models`` into ``out_dir``; see the module docstring.

    ``models``: ``"paper"``, ``"all"``, ``"a,b"`` or a list of names (``"<model>-coarse"`` for
    coarse pre-training). ``data``: a Cityscapes root; None generates the synthetic dataset
    under ``out_dir/data``. ``quick``: the short schedule of ``schedule`` instead of the configs.
    ``options``: model options for every model (e.g. ``{"width": 0.25}``). ``speed_runs``
    below the protocol's 20, and ``speed_options`` (more keyword arguments of
    ``measure_speed``, e.g. ``{"max_warmup": 2}``), are for tests. A model whose stage fails is reported and the
    others go on; ``failures`` lists them.
    """
    runner = _Runner(models, Path(out_dir), data, quick, device, engine, precision, threads, speed_size, speed_runs,
                     dict(speed_options or {}), options, configs_dir, progress, schedule)
    return runner.run(report)


class _Runner:
    def __init__(self, models, out_dir, data, quick, device, engine, precision, threads, speed_size, speed_runs,
                 speed_options, options, configs_dir, progress, schedule):
        import torch

        if engine not in ("eager", "compile", "onnxruntime"):
            raise RtsegError(f"--engine {engine!r} is not one of eager, compile, onnxruntime")
        if precision not in ("fp32", "bf16", "fp16", "int8"):
            raise RtsegError(f"--precision {precision!r} is not one of fp32, bf16, fp16, int8")
        if speed_runs < 1:
            raise RtsegError(f"speed runs must be at least 1, got {speed_runs}")
        self.out_dir = out_dir
        self.quick, self.schedule, self.progress = quick, schedule, progress
        self.device = _resolve_device(device)
        self.engine, self.precision, self.threads, self.speed_runs = engine, precision, threads, speed_runs
        self.speed_options = speed_options
        self.speed_size = tuple(speed_size) if speed_size else (schedule.speed_size if quick else PAPER_SPEED_SIZE)
        self.configs_dir = Path(configs_dir) if configs_dir else None
        self.synthetic = data is None
        self.data_root = out_dir / "data" if self.synthetic else Path(data)
        if not self.synthetic:
            from rtseg.data.cityscapes import check_root

            check_root(self.data_root)
        has_coarse = self.synthetic or (self.data_root / "gtCoarse").is_dir()
        self.entries, self.notes = resolve_models(models, has_coarse=has_coarse, options=options)
        self.models_spec = models if isinstance(models, str) else ",".join(e.key for e in self.entries)
        self.dist = _init_distributed(torch.device(self.device))
        self.is_main = self.dist is None or self.dist.rank == 0
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
            self._leave_distributed()
        results = self._write_results() if self.is_main else {}
        report_paths = []
        if report and self.is_main:
            from rtseg.benchmark.report import render_report

            report_paths = render_report(self.out_dir, results)
        return BenchmarkResult(self.out_dir, results, self.out_dir / files.RESULTS_JSON,
                               self.out_dir / files.RESULTS_CSV, report_paths, self.ran, self.failures,
                               self.is_main)

    def _run_all(self) -> None:
        if self.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        if self.synthetic:
            self._prepare_synthetic()
        # Every entry's configs are built (and checked) before anything trains.
        plans = {e.key: training_stages(e, self.out_dir / "runs" / e.key, data_root=self.data_root,
                                        synthetic=self.synthetic, quick=self.quick, device=self.device,
                                        progress=self.progress and self.is_main, configs_dir=self.configs_dir,
                                        schedule=self.schedule, image_height=self._image_height())
                 for e in self.entries}
        self.plans = plans
        work = {e.key: self._estimate_work(e, plans[e.key]) for e in self.entries}
        done = sum(work[e.key][s] for e in self.entries for s in files.STAGES if self._is_done(e, s, plans[e.key]))
        self.bar = _progress_bar(sum(sum(w.values()) for w in work.values()), done, self.progress and self.is_main)
        for number, entry in enumerate(self.entries, 1):
            for stage in files.STAGES:
                if self._is_done(entry, stage, plans[entry.key]):
                    continue
                self.bar.set_description_str(f"benchmark [{number}/{len(self.entries)}] {entry.key}: {stage}")
                self._run_stage(entry, stage, plans[entry.key])
                self.bar.update(work[entry.key][stage])
            if self.is_main:
                self._write_results()
        self._barrier()  # the other ranks wait for rank 0's last evaluation and timing

    # ------------------------------------------------------------- stages
    def _inputs(self, entry: Entry, stage: str, plan: list[TrainingStage]) -> dict | None:
        """What a stage's result depends on; None when it cannot run yet (no checkpoint)."""
        if stage == "train":
            return {"configs": [s.config.to_dict() for s in plan]}
        if stage == "cost":
            return {"model": entry.model, "options": entry.options, "sizes": ["512x1024", "360x640"]}
        checkpoint = self._checkpoint(entry)
        if checkpoint is None:
            return None
        identity = {"checkpoint": relative(checkpoint, self.out_dir), **checkpoint_identity(checkpoint)}
        if stage == "evaluate":
            config = plan[-1].config
            size = config.data.val_size
            return {**identity, "size": size_text(size) if size else None, "limit": config.data.val_limit,
                    "qualitative": QUALITATIVE_IMAGES, "data": str(self.data_root)}
        return {**identity, "size": size_text(self.speed_size), "engine": self.engine, "precision": self.precision,
                "device": self.device, "threads": self.threads, "runs": self.speed_runs,
                **({"options": self.speed_options} if self.speed_options else {})}

    def _is_done(self, entry: Entry, stage: str, plan: list[TrainingStage]) -> bool:
        record = files.read_stage(self.out_dir, entry.key, stage)
        if record is None:
            return False
        inputs = self._inputs(entry, stage, plan)
        if stage == "train" and self._checkpoint(entry) is None:
            return False  # the checkpoint was deleted: train (or resume) again
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

    def _run_stage(self, entry: Entry, stage: str, plan: list[TrainingStage]) -> None:
        if stage != "train" and not self.is_main:
            return
        if stage in ("evaluate", "speed") and self._checkpoint(entry) is None:
            self._note(f"{entry.key}: {stage} skipped, the model has no trained checkpoint")
            return
        inputs = self._inputs(entry, stage, plan)
        started = time.perf_counter()
        try:
            result = self._execute(entry, stage, plan)
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
        if stage == "train":
            # Training changes the checkpoint, so its record's inputs are the configs only.
            inputs = self._inputs(entry, stage, plan)
        if self.is_main:
            result["stage_seconds"] = round(time.perf_counter() - started, 2)
            files.write_stage(self.out_dir, entry.key, stage, inputs, result)
            self._note(f"{entry.key}: {_summary(stage, result)}")

    def _execute(self, entry: Entry, stage: str, plan: list[TrainingStage]) -> dict:
        run_dir = self.out_dir / "runs" / entry.key
        if stage == "train":
            return train_entry(plan, self.out_dir)
        if stage == "cost":
            return cost_entry(entry, plan[-1].config.model.num_classes)
        checkpoint = self._checkpoint(entry)
        if stage == "evaluate":
            data = plan[-1].config.data
            return evaluate_entry(checkpoint, self.data_root, data.val_size, data.val_limit, self.device,
                                  QUALITATIVE_IMAGES, run_dir / "predictions", self.out_dir, self.progress)
        return speed_entry(checkpoint, self.speed_size, self.engine, self.precision, self.device, self.threads,
                           self.speed_runs, **self.speed_options)

    # ------------------------------------------------------------- helpers
    def _prepare_synthetic(self) -> None:
        """Generate the synthetic dataset under DIR/data once (again if the wanted set changed)."""
        coarse = any(e.coarse for e in self.entries)
        if self.quick:
            spec = {"train": self.schedule.synthetic_train, "val": self.schedule.synthetic_val,
                    "size": list(self.schedule.synthetic_size)}
        else:
            spec = {**FULL_SYNTHETIC, "size": list(FULL_SYNTHETIC["size"])}
        spec.update({"test": 0, "seed": 0, "coarse": coarse, "train_extra": spec["train"] if coarse else 0})
        marker = self.data_root / ".complete"
        if self.is_main:
            try:
                existing = files.read_json(marker) if marker.is_file() else None
            except RtsegError:
                existing = None
            if existing != spec:
                from rtseg.data.synthetic import generate_synthetic_cityscapes

                self._note(f"generating the synthetic dataset in {self.data_root}")
                generate_synthetic_cityscapes(self.data_root, train=spec["train"], val=spec["val"], test=0,
                                              size=tuple(spec["size"]), seed=spec["seed"], coarse=coarse,
                                              train_extra=spec["train_extra"], progress=self.progress)
                files.write_json(marker, spec)
        self._barrier()
        self.synthetic_spec = spec

    def _estimate_work(self, entry: Entry, plan: list[TrainingStage]) -> dict[str, float]:
        """Relative cost of each stage (forward-pass GFLOPs), so the progress bar's ETA means something."""
        from rtseg.models import create_model
        from rtseg.profiling.flops import count_flops

        model = create_model(entry.model, num_classes=plan[-1].config.model.num_classes, **entry.options)
        gflops = count_flops(model, (128, 256)) / 1e9  # scaled by pixels below: convolutions are linear in them

        def at(size) -> float:
            return gflops * size[0] * size[1] / (128 * 256)

        train = 0.0
        for stage in plan:
            loop, crop = stage.config.train, stage.config.data.crop
            steps = loop.iterations or loop.epochs * max(1, self._count_images("train") // loop.batch_size)
            train += 3 * loop.batch_size * steps * at(crop)  # forward + backward ~ 3 forward passes
        data = plan[-1].config.data
        images = self._count_images("val")
        if data.val_limit:
            images = min(images, data.val_limit)
        val_size = data.val_size or (self.synthetic_spec["size"] if self.synthetic else (1024, 2048))
        evaluate = images * at(val_size) + QUALITATIVE_IMAGES * at(val_size)
        speed = (2 * self.speed_runs + 30) * at(self.speed_size)  # timed runs of both figures + warm-up
        return {"train": train, "evaluate": evaluate, "cost": 0.001 * train + 1e-3, "speed": speed}

    def _image_height(self) -> int:
        """Height of the data's first training image (1024 for Cityscapes): --quick scales from it."""
        if self.synthetic:
            return int(self.synthetic_spec["size"][0])
        from PIL import Image

        first = next((self.data_root / "leftImg8bit" / "train").glob("*/*_leftImg8bit.png"), None)
        if first is None:
            return 1024
        with Image.open(first) as image:
            return image.height

    def _count_images(self, split: str) -> int:
        if self.synthetic:
            return int(self.synthetic_spec[split])
        folder = self.data_root / "leftImg8bit" / split
        return sum(1 for _ in folder.glob("*/*_leftImg8bit.png")) if folder.is_dir() else 1

    def _note(self, text: str) -> None:
        if not self.is_main:
            return
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def _barrier(self) -> None:
        if self.dist is not None:
            import torch.distributed as dist

            dist.barrier()

    def _leave_distributed(self) -> None:
        if self.dist is not None and self.dist.owned:
            from rtseg.engine.distributed import cleanup_distributed

            cleanup_distributed()

    def _write_results(self) -> dict:
        from rtseg import __version__
        from rtseg.profiling.hardware import describe

        models = []
        for entry in self.entries:
            decoder, encoder = entry.parts
            record = {"key": entry.key, "model": entry.model, "decoder": decoder if encoder else None,
                      "encoder": encoder, "whole_model": None if encoder else decoder, "coarse": entry.coarse,
                      "options": entry.options}
            plan = self.plans.get(entry.key)
            for stage in files.STAGES:
                stored = files.read_stage(self.out_dir, entry.key, stage)
                # a record made with other inputs (another engine, an older checkpoint) is not this run's
                current = stored is not None and plan is not None and self._is_done(entry, stage, plan)
                record[stage] = stored["result"] if current else None
            record["errors"] = {stage: error for key, stage, error in self.failures if key == entry.key}
            models.append(record)
        results = {
            "format": files.FORMAT, "version": files.VERSION, "rtseg": __version__,
            "written": datetime.datetime.now().isoformat(timespec="seconds"),
            "settings": {
                "models": self.models_spec, "quick": self.quick, "device": self.device, "engine": self.engine,
                "precision": self.precision, "threads": self.threads, "speed_size": size_text(self.speed_size),
                "speed_runs": self.speed_runs,
                "data": "synthetic" if self.synthetic else str(self.data_root),
                "synthetic": self.synthetic_spec if self.synthetic else None,
                "command": _command_line(),
                "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            },
            "quick_cuts": self.schedule.cuts(self.synthetic, self.speed_size) if self.quick else [],
            "notes": list(self.notes),
            "hardware": describe(self.device.split(":")[0], self.threads),
            "models": models,
        }
        files.write_json(self.out_dir / files.RESULTS_JSON, results)
        files.write_csv(self.out_dir / files.RESULTS_CSV, models)
        return results


def _command_line() -> str | None:
    """``rtseg benchmark ...`` as typed (also through ``python -m rtseg`` or torchrun); None from Python."""
    program = Path(sys.argv[0])
    if program.name == "rtseg" or (program.name == "__main__.py" and program.parent.name == "rtseg"):
        return " ".join(["rtseg", *sys.argv[1:]])
    return None


def _resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RtsegError(f"--device {name!r} is not a device (auto, cpu, cuda, cuda:1)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RtsegError(f"--device {name} asked for, but no CUDA device is available")
    return name


def _init_distributed(device):
    """Join torchrun's process group ourselves (the trainer then reuses it and leaves it open),
    with a timeout long enough for rank 0 to evaluate and time a model while the others wait."""
    from rtseg.engine.distributed import launched_by_torchrun

    if not launched_by_torchrun():
        return None
    import torch
    import torch.distributed as dist

    owned = not dist.is_initialized()
    if owned:
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=DISTRIBUTED_TIMEOUT)
    return _Rank(dist.get_rank(), owned)


@dataclass(frozen=True)
class _Rank:
    rank: int
    owned: bool  # this benchmark created the process group (and destroys it at the end)


def _config_changes(old: dict, new: dict) -> list[str]:
    """Config keys that differ between two train records, ignoring how a run reports and where it runs."""
    from rtseg.engine.config import config_differences
    from rtseg.engine.trainer import RESUMABLE_CHANGES

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
        return f"{result['params'] / 1e6:.2f} M parameters, {result['gflops']['512x1024']:.1f} GFLOPs at 512x1024"
    return (f"timed at {result['size']}: {result['fps']:.1f} FPS end-to-end, {result['fps_model']:.1f} FPS model only "
            f"({result['engine']}, {result['precision']})")


def _progress_bar(total: float, done: float, enabled: bool):
    from tqdm import tqdm

    # The bar counts estimated work (GFLOPs), so its ETA weighs a VGG stage above an ENet one.
    return tqdm(total=total, initial=done, disable=not enabled, dynamic_ncols=True, file=sys.stderr,
                bar_format="{desc} {percentage:3.0f}%|{bar}| {elapsed} elapsed, ETA {remaining}")
