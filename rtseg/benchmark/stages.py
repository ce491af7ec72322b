"""The four stages of one benchmark entry: train, evaluate, cost, speed.

Each function does the work and returns a JSON-able dict; ``rtseg.benchmark.runner`` decides
which stages still need to run and records what they return.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from rtseg.benchmark.schedule import TrainingStage
from rtseg.benchmark.selection import Entry

# Input sizes of the paper's cost figures: Table 2 (512x1024) and Table 3 (360x640).
COST_SIZES = ((512, 1024), (360, 640))


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
    from rtseg.engine.trainer import train

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


def checkpoint_identity(path: Path) -> dict:
    """What tells one checkpoint from a retrained one: its size and modification time."""
    stat = Path(path).stat()
    return {"bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def evaluate_entry(checkpoint: Path, data_root: Path, size, limit: int | None, device: str,
                   qualitative: int, predictions_dir: Path, out_dir: Path, progress: bool = True) -> dict:
    """Score the checkpoint on the val split; save its predictions for the first ``qualitative`` images."""
    import torch

    from rtseg.engine.checkpoint import load_model
    from rtseg.engine.evaluator import build_eval_dataset, evaluate, predict_train_ids

    model, _ = load_model(checkpoint, device)
    dataset = build_eval_dataset(data_root, "val", size, getattr(model, "mean", None), getattr(model, "std", None))
    scores = evaluate(model, dataset, device, limit=limit, progress=progress)
    scores.pop("confusion", None)
    samples = []
    for index in range(min(qualitative, len(dataset))):
        item = dataset[index]
        label_size = tuple(item["label_ids"].shape[-2:])
        with torch.no_grad():
            pred = predict_train_ids(model, item["image"][None].to(device), label_size)[0]
        path = predictions_dir / f"{item['name']}.png"
        _write_png(path, pred.to(torch.uint8).cpu().numpy())
        files = dataset.samples[index]
        samples.append({"name": item["name"], "image": relative(files.image, out_dir),
                        "label_ids": relative(files.label_ids, out_dir), "prediction": relative(path, out_dir)})
    return {**scores, "split": "val", "input_size": size_text(size) if size else "as stored",
            "qualitative": samples}


def _write_png(path: Path, array) -> None:
    from PIL import Image

    from rtseg.benchmark.results import write_atomic

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    write_atomic(path, buffer.getvalue())


def cost_entry(entry: Entry, num_classes: int = 19) -> dict:
    """Parameters and GFLOPs (2 x multiply-adds) of the full model at the paper's sizes (meta device)."""
    from rtseg.models import create_model
    from rtseg.profiling.flops import count_flops, count_params

    model = create_model(entry.model, num_classes=num_classes, **entry.options)
    flops = {size_text(size): count_flops(model, size) for size in COST_SIZES}
    return {"params": count_params(model), "gflops": {k: round(v / 1e9, 3) for k, v in flops.items()}}


def speed_entry(checkpoint: Path, size, engine: str, precision: str, device: str, threads: int | None,
                runs: int, **speed_options) -> dict:
    """The speed protocol (``rtseg.profiling.speed.measure_speed``) on the trained weights;
    ``speed_options`` go to ``measure_speed`` (e.g. ``max_warmup`` in tests)."""
    import torch

    from rtseg.engine.checkpoint import load_model
    from rtseg.profiling.speed import measure_speed

    device_type = torch.device(device).type
    model, _ = load_model(checkpoint, device)
    result = measure_speed(model, tuple(size), batch=1, engine=engine, precision=precision, threads=threads,
                           device=device_type, runs=runs, **speed_options)
    return result.as_dict()
