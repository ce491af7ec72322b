"""The four stages of one benchmark entry: train, evaluate, cost, speed.

Each function does the work and returns a JSON-able dict; ``rtseg.benchmark.runner`` decides
which stages still need to run and records what they return.
"""

from __future__ import annotations

import csv
from pathlib import Path

import torch

from rtseg.benchmark.schedule import TrainingStage
from rtseg.benchmark.selection import Entry
from rtseg.data.io import write_png
from rtseg.inference.backend import Backend
from rtseg.models import create_model, load_model
from rtseg.profiling.flops import count_eval_params, count_flops, count_params
from rtseg.profiling.speed import TimingProtocol, measure_speed
from rtseg.training.config import DataConfig
from rtseg.training.evaluator import build_eval_dataset, evaluate, predict_labels
from rtseg.training.trainer import train

# Input sizes of the paper's cost figures: Table 2 (512x1024) and Table 3 (360x640).
COST_SIZES = ((512, 1024), (360, 640))
# Validation images whose predictions the report's qualitative figure shows.
QUALITATIVE_IMAGES = 3


def size_text(size) -> str:
    return f"{int(size[0])}x{int(size[1])}"


def relative(path: str | Path, root: Path) -> str:
    """``path`` relative to ``root`` when it lies inside it (results stay valid if DIR moves)."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def resolve(path: str, root: Path) -> Path:
    return Path(path) if Path(path).is_absolute() else root / path


def train_entry(stages: list[TrainingStage], out_dir: Path) -> dict:
    """Train every stage in turn (coarse, then fine), continuing any interrupted one."""
    records = []
    final = None
    for stage in stages:
        # resume only what an earlier call left (the trainer would announce a fresh start otherwise)
        result = train(stage.config, stage.out_dir, resume=(Path(stage.out_dir) / "last.pt").is_file())
        records.append({
            "name": stage.name, "config": stage.source, "out_dir": relative(stage.out_dir, out_dir),
            "steps": result.steps, "best_miou": result.best_miou, "seconds": _trained_seconds(stage.out_dir),
        })
        final = result
        del result
    checkpoint = final.best_checkpoint or final.last_checkpoint
    return {
        "stages": records, "steps": records[-1]["steps"],
        "seconds": round(sum(r["seconds"] or 0.0 for r in records), 2),
        "checkpoint": relative(checkpoint, out_dir),
        "checkpoint_kind": "best validation mIoU" if final.best_checkpoint else "last",
    }


def _trained_seconds(train_dir: Path) -> float | None:
    """The trainer's own running time (across resumptions): the last row of its steps.csv."""
    try:
        with open(Path(train_dir) / "steps.csv", newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        return round(float(rows[-1]["seconds"]), 2) if rows else None
    except (OSError, KeyError, ValueError):
        return None


def remove_checkpoints(stages: list[TrainingStage]) -> int:
    """Delete the checkpoints (``*.pt``) of every training stage's folder; the bytes freed."""
    freed = 0
    for stage in stages:
        for path in Path(stage.out_dir).glob("*.pt"):
            freed += path.stat().st_size
            path.unlink()
    return freed


def checkpoint_identity(path: Path) -> dict:
    """What tells one checkpoint from a retrained one: its size and modification time."""
    stat = Path(path).stat()
    return {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def evaluate_entry(checkpoint: Path, data: DataConfig, dataset_kind: str, device: str, predictions_dir: Path,
                   out_dir: Path, progress: bool = True) -> dict:
    """Score the checkpoint on the validation split of ``data.root`` (``data.val_split``, else
    ``val``; at ``data.val_size``, the first ``data.val_limit`` images); write its predictions
    of the first ``QUALITATIVE_IMAGES`` images and their ground truth (class-id PNGs, the
    report's picture) into ``predictions_dir``; paths in the result are relative to ``out_dir``."""
    split = data.val_split or "val"
    data_root, size, limit, qualitative = data.root, data.val_size, data.val_limit, QUALITATIVE_IMAGES
    model, _ = load_model(checkpoint, device)
    dataset = build_eval_dataset(data_root, split, size, model.mean, model.std, dataset=dataset_kind)
    scores = evaluate(model, dataset, device, limit=limit, progress=progress)
    scores.pop("confusion", None)
    samples = []
    for index in range(min(qualitative, len(dataset))):
        item = dataset[index]
        label = item["label"]
        pred = predict_labels(model, item["image"][None].to(device), tuple(label.shape[-2:]))[0]
        name = item["name"].replace("/", "_")
        path = write_png(predictions_dir / f"{name}.png", pred.to(torch.uint8).cpu().numpy())
        truth = write_png(predictions_dir / f"{name}_label.png", label.to(torch.uint8).numpy())
        files = dataset.samples[index]
        samples.append({"name": item["name"], "image": relative(files.image, out_dir),
                        "label_ids": relative(files.label, out_dir), "label": relative(truth, out_dir),
                        "prediction": relative(path, out_dir)})
    return {**scores, "split": split, "input_size": size_text(size) if size else "as stored",
            "qualitative": samples}


def cost_entry(entry: Entry, num_classes: int = 19) -> dict:
    """Parameters (all, and those the eval output uses: no training-only heads) and GFLOPs
    (2 x multiply-adds) of the full model at the paper's sizes (meta device)."""
    model = create_model(entry.model, num_classes=num_classes, **entry.options)
    flops = {size_text(size): count_flops(model, size) for size in COST_SIZES}
    return {"params": count_params(model), "eval_params": count_eval_params(model, COST_SIZES[0]),
            "gflops": {k: round(v / 1e9, 3) for k, v in flops.items()}}


def speed_entry(checkpoint: Path, size, backend: Backend, protocol: TimingProtocol) -> dict:
    """The speed protocol (``rtseg.profiling.speed.measure_speed``) on the trained weights."""
    model, _ = load_model(checkpoint, backend.device)
    return measure_speed(model, tuple(size), backend, protocol).as_dict()


def estimate_work(entry: Entry, plan: list[TrainingStage], data, speed_size, speed_runs: int,
                  qualitative: int) -> dict[str, float]:
    """Relative cost of each stage (forward-pass GFLOPs), so the progress bar's ETA means something.

    ``data`` is the study's ``rtseg.benchmark.dataset.StudyData``."""
    model = create_model(entry.model, num_classes=data.info.num_classes, **entry.options)
    gflops = count_flops(model, (128, 256)) / 1e9  # scaled by pixels below: convolutions are linear in them

    def at(size) -> float:
        return gflops * size[0] * size[1] / (128 * 256)

    train_work = 0.0
    for stage in plan:
        loop, crop = stage.config.train, stage.config.data.crop
        steps = loop.iterations or loop.epochs * max(1, data.count_images("train") // loop.batch_size)
        train_work += 3 * loop.batch_size * steps * at(crop)  # forward + backward ~ 3 forward passes
    config = plan[-1].config.data
    images = data.count_images("val")
    if config.val_limit:
        images = min(images, config.val_limit)
    val_size = config.val_size or data.image_size()
    evaluate_work = (images + qualitative) * at(val_size)
    speed_work = (2 * speed_runs + 30) * at(speed_size)  # timed runs of both figures + warm-up
    return {"train": train_work, "evaluate": evaluate_work, "cost": 0.001 * train_work + 1e-3, "speed": speed_work}
