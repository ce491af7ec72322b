"""The benchmark's files: per-stage JSON records, the combined ``results.json`` and ``results.csv``.

Layout of a benchmark folder ``DIR``::

    DIR/results.json               everything below, combined (what the report is rendered from)
    DIR/results.csv                one row per model: scores, cost, speed
    DIR/report.md, report.html     the report; DIR/images/*.png its figures
    DIR/data/                      the synthetic dataset (when no --data was given)
    DIR/runs/<key>/train/          the trainer's folder (checkpoints, logs)
    DIR/runs/<key>/<stage>.json    one record per finished stage: train, evaluate, cost, speed
    DIR/runs/<key>/predictions/    train-id PNGs of the first validation images (the qualitative figure)

A stage is finished when its record exists and was made with the same inputs; deleting a
record makes the next run redo that stage only. Every file is written atomically
(temporary file, then ``os.replace``), so an interrupted run never leaves half a file.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from rtseg import __version__
from rtseg.atomic import atomic_open
from rtseg.data.cityscapes import CITYSCAPES
from rtseg.data.dataset import DatasetInfo
from rtseg.errors import RtsegError
from rtseg.profiling.hardware import describe

FORMAT = "rtseg-benchmark"
VERSION = 1
RESULTS_JSON, RESULTS_CSV = "results.json", "results.csv"
STAGES = ("train", "evaluate", "cost", "speed")


def write_atomic(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to a temporary file beside ``path``, then rename it onto ``path``."""
    with atomic_open(path, "wb") as handle:
        handle.write(data.encode("utf-8") if isinstance(data, str) else data)



def write_json(path: str | Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=2, default=_jsonable) + "\n")


def read_json(path: str | Path) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RtsegError(f"{path} does not exist") from None
    except (OSError, ValueError) as exc:
        raise RtsegError(f"cannot read {path}: {exc}".splitlines()[0]) from exc


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "item"):  # numpy / torch scalars
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def load_results(out_dir: str | Path) -> dict:
    """``DIR/results.json`` of an earlier benchmark, checked to be one."""
    path = Path(out_dir) / RESULTS_JSON
    results = read_json(path)
    if not isinstance(results, dict) or results.get("format") != FORMAT:
        raise RtsegError(f"{path} is not an rtseg benchmark result (written by 'rtseg benchmark')")
    if results.get("version", 0) > VERSION:
        raise RtsegError(f"{path} has format version {results['version']}; this rtseg reads up to {VERSION}")
    return results


# --- per-stage records ------------------------------------------------------------------

def stage_path(out_dir: Path, key: str, stage: str) -> Path:
    return Path(out_dir) / "runs" / key / f"{stage}.json"


def read_stage(out_dir: Path, key: str, stage: str) -> dict | None:
    """The stage's record, or None when it is missing or unreadable (then the stage runs again)."""
    path = stage_path(out_dir, key, stage)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "inputs" in record and "result" in record else None


def write_stage(out_dir: Path, key: str, stage: str, inputs: dict, result: dict) -> None:
    write_json(stage_path(out_dir, key, stage), {"stage": stage, "inputs": inputs, "result": result})


# --- the combined results -----------------------------------------------------------------

CSV_FIELDS_HEAD = ("key", "model", "decoder", "encoder", "coarse")
CSV_FIELDS_TAIL = ("params", "eval_params", "gflops_512x1024", "gflops_360x640", "fps", "fps_model", "latency_ms",
                   "latency_model_ms", "speed_size", "engine", "precision", "device", "threads",
                   "train_steps", "train_seconds", "checkpoint")


def results_dataset(results: dict) -> DatasetInfo:
    """The dataset a study ran on (``settings.dataset``); results from before it was recorded: Cityscapes."""
    described = (results.get("settings") or {}).get("dataset")
    return DatasetInfo.from_dict(described, "results.json's settings.dataset") if described else CITYSCAPES


def csv_fields(dataset: DatasetInfo = CITYSCAPES) -> list[str]:
    return [*CSV_FIELDS_HEAD, *dataset.score_keys, *(f"iou_{name.replace(' ', '_')}" for name in dataset.class_names),
            *CSV_FIELDS_TAIL]


def csv_row(model: dict, dataset: DatasetInfo = CITYSCAPES) -> dict:
    """One model's record (``results["models"][i]``) as a flat CSV row (scores as fractions)."""
    evaluation = model.get("evaluate") or {}
    cost = model.get("cost") or {}
    speed = model.get("speed") or {}
    train = model.get("train") or {}
    row = {k: model.get(k) for k in ("key", "model", "decoder", "encoder", "coarse")}
    row.update({k: evaluation.get(k) for k in dataset.score_keys})
    class_iou = evaluation.get("class_iou") or {}
    row.update({f"iou_{name.replace(' ', '_')}": class_iou.get(name) for name in dataset.class_names})
    row.update({
        "params": cost.get("params"),
        "eval_params": cost.get("eval_params"),
        "gflops_512x1024": (cost.get("gflops") or {}).get("512x1024"),
        "gflops_360x640": (cost.get("gflops") or {}).get("360x640"),
        **{k: speed.get(k) for k in ("fps", "fps_model", "latency_ms", "latency_model_ms", "engine", "precision",
                                     "device", "threads")},
        "speed_size": speed.get("size"),
        "train_steps": train.get("steps"),
        "train_seconds": train.get("seconds"),
        "checkpoint": train.get("checkpoint"),
    })
    return row


def write_csv(path: str | Path, models: list[dict], dataset: DatasetInfo = CITYSCAPES) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=csv_fields(dataset), extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for model in models:
        writer.writerow({k: "" if v is None else v for k, v in csv_row(model, dataset).items()})
    write_atomic(path, buffer.getvalue())


def assemble_results(entries: Sequence, records: dict[str, dict], failures: Sequence[tuple[str, str, str]],
                     settings: dict, notes: Sequence[str], quick_cuts: Sequence[str], device: str,
                     threads: int | None) -> dict:
    """What ``results.json`` holds: every entry's stage results (None where missing or stale), the
    study's settings and notes, the machine, and how it was run."""
    models = []
    for entry in entries:
        decoder, encoder = entry.parts
        models.append({"key": entry.key, "model": entry.model, "decoder": decoder if encoder else None,
                       "encoder": encoder, "whole_model": None if encoder else decoder, "coarse": entry.coarse,
                       "options": entry.options, **records[entry.key],
                       "errors": {stage: error for key, stage, error in failures if key == entry.key}})
    return {
        "format": FORMAT, "version": VERSION, "rtseg": __version__,
        "written": datetime.datetime.now().isoformat(timespec="seconds"),
        "settings": {**settings, "command": command_line(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY")},
        "quick_cuts": list(quick_cuts),
        "notes": list(notes),
        "hardware": describe(device.split(":")[0], threads),
        "models": models,
    }


def command_line() -> str | None:
    """``rtseg benchmark ...`` as typed (also through ``python -m rtseg`` or torchrun); None from Python."""
    program = Path(sys.argv[0])
    if program.name == "rtseg" or (program.name == "__main__.py" and program.parent.name == "rtseg"):
        return " ".join(["rtseg", *sys.argv[1:]])
    return None


def disk_usage(out_dir: Path) -> dict[str, int]:
    """Bytes under each top-level entry of a study folder (files and folders), largest first."""
    out_dir = Path(out_dir)
    sizes = {}
    for path in sorted(out_dir.iterdir()) if out_dir.is_dir() else []:
        files_below = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
        sizes[path.name + ("/" if path.is_dir() else "")] = sum(p.stat().st_size for p in files_below)
    return dict(sorted(sizes.items(), key=lambda item: -item[1]))
