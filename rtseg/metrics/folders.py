"""Score a folder of prediction PNGs: labelIds against Cityscapes, as the official evaluator finds
them, or class ids against any other dataset.

Any other dataset (CamVid, a folder dataset; found by ``rtseg.data.layouts``): the prediction of
the label ``<split>/<name>`` is ``PRED_DIR/<name>.png`` holding class ids 0..C-1 (the index in
the dataset's class list, what ``rtseg predict --format classids`` writes), scored with one
confusion matrix over the split (``rtseg.metrics.confusion``).

Ground truth: ``<root>/gtFine/<split>/**/<name>_gtFine_labelIds.png`` (and ``_instanceIds.png``
beside each) for a Cityscapes root, or the same files anywhere under a plain folder.
Predictions: any ``<name>*.png`` under the prediction folder, ``<name>`` being
``<city>_<seq>_<frame>``, exactly one per ground-truth image (the official ``getPrediction``
rule). The PNGs are decoded and counted in worker processes; only the small additive state of
``CityscapesMetrics`` comes back.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from rtseg.data.dataset import DatasetLayout
from rtseg.data.io import read_label_png
from rtseg.data.layouts import detect_layout, open_dataset
from rtseg.errors import RtsegError
from rtseg.metrics.cityscapes import CityscapesMetrics
from rtseg.metrics.confusion import ConfusionMetrics
from rtseg.metrics.label_space import MAX_INSTANCE_ID, NUM_LABEL_IDS

GT_SUFFIX = "_gtFine_labelIds.png"
INSTANCE_SUFFIX = "_gtFine_instanceIds.png"


@dataclass(frozen=True)
class ScoredPair:
    """One ground-truth image and the prediction matched to it."""

    name: str  # "<city>_<seq>_<frame>"
    prediction: str
    label_ids: str
    instance_ids: str | None


def find_ground_truth(gt: str | os.PathLike, split: str | None = None) -> list[tuple[str, str, str | None]]:
    """(name, labelIds file, instanceIds file or None) for every ground-truth image, sorted by name.

    ``gt`` is a Cityscapes root (``gtFine/<split>/`` is read, split defaults to ``val``), the
    ``gtFine`` folder itself, or any folder holding ``*_gtFine_labelIds.png`` files. Instance
    files are all present (iIoU is scored) or all absent (iIoU is ``None``); a partial set is an
    error naming the first missing file.
    """
    path = Path(gt).expanduser()
    if not path.is_dir():
        raise RtsegError(f"ground truth {path} {'is not a folder' if path.exists() else 'does not exist'}; "
                         f"give a Cityscapes root (with gtFine/) or a folder of *{GT_SUFFIX} files")
    if path.name == "gtFine" or (path / "gtFine").is_dir():
        gt_fine = path if path.name == "gtFine" else path / "gtFine"
        folder = gt_fine / (split or "val")
        if not folder.is_dir():
            raise RtsegError(f"ground truth {path} has no split folder {folder} (splits: train, val, test)")
    elif split is not None:
        raise RtsegError(f"split {split!r} needs a Cityscapes root with gtFine/, but {path} is a plain folder "
                         f"of label files; leave the split out to score every *{GT_SUFFIX} in it")
    else:
        folder = path
    labels = sorted(folder.rglob(f"*{GT_SUFFIX}"), key=lambda p: p.name)
    if not labels:
        raise RtsegError(f"no *{GT_SUFFIX} files under {folder}")
    found = []
    for label in labels:
        instance = label.with_name(label.name[: -len(GT_SUFFIX)] + INSTANCE_SUFFIX)
        found.append((label.name[: -len(GT_SUFFIX)], str(label), str(instance) if instance.is_file() else None))
    missing = [label for (_, label, instance) in found if instance is None]
    if missing and len(missing) < len(found):
        expected = missing[0][: -len(GT_SUFFIX)] + INSTANCE_SUFFIX
        raise RtsegError(f"ground truth {missing[0]} has no instance file {expected} while others have one; "
                         f"iIoU needs all of them (or none)")
    return found


def frame_name(file_name: str) -> str | None:
    """``frankfurt_000000_000294_leftImg8bit.png`` -> ``frankfurt_000000_000294`` (None if no such prefix)."""
    parts = file_name[: -len(".png")].split("_") if file_name.endswith(".png") else []
    return "_".join(parts[:3]) if len(parts) >= 3 else None


def match_predictions(pred_dir: str | os.PathLike, ground_truth: list[tuple[str, str, str | None]]) -> list[ScoredPair]:
    """Pairs every ground-truth image with the one ``<name>*.png`` under ``pred_dir``."""
    folder = Path(pred_dir).expanduser()
    if not folder.is_dir():
        raise RtsegError(f"prediction folder {folder} {'is not a folder' if folder.exists() else 'does not exist'}")
    by_name: dict[str, list[str]] = {}
    for root, _, files in os.walk(folder):
        for file in files:
            name = frame_name(file)
            if name is not None:
                by_name.setdefault(name, []).append(os.path.join(root, file))
    pairs = []
    for name, label_ids, instance_ids in ground_truth:
        candidates = by_name.get(name, [])
        if not candidates:
            raise RtsegError(f"no prediction for ground truth {label_ids}: expected a file {name}*.png under {folder}")
        if len(candidates) > 1:
            shown = ", ".join(sorted(candidates)[:3])
            raise RtsegError(f"{len(candidates)} predictions for ground truth {label_ids}: {shown}; keep one {name}*.png")
        pairs.append(ScoredPair(name, candidates[0], label_ids, instance_ids))
    return pairs


def _check_range(ids: np.ndarray, path: str, what: str, high: int, hint: str) -> None:
    low, top = int(ids.min()), int(ids.max())
    if low < 0 or top > high:
        raise RtsegError(f"{what} {path} holds id {top if top > high else low}, not a Cityscapes {hint}")


def score_pair(pair: ScoredPair) -> dict[str, np.ndarray]:
    """Decodes and counts one pair (in a worker process); returns the metric state as numpy arrays."""
    pred = read_label_png(pair.prediction, "prediction")
    labels = read_label_png(pair.label_ids, "ground truth")
    if pred.shape != labels.shape:
        raise RtsegError(f"prediction {pair.prediction} is {pred.shape[1]}x{pred.shape[0]} but its ground truth "
                         f"{pair.label_ids} is {labels.shape[1]}x{labels.shape[0]} (width x height)")
    _check_range(pred, pair.prediction, "prediction", NUM_LABEL_IDS - 1,
                 f"label id (0..{NUM_LABEL_IDS - 1}; train ids convert with rtseg.data.labels.train_to_label_ids)")
    _check_range(labels, pair.label_ids, "ground truth", NUM_LABEL_IDS - 1, f"label id (0..{NUM_LABEL_IDS - 1})")
    instances = None
    if pair.instance_ids is not None:
        instances = read_label_png(pair.instance_ids, "instance file")
        if instances.shape != labels.shape:
            raise RtsegError(f"instance file {pair.instance_ids} is {instances.shape[1]}x{instances.shape[0]}, "
                             f"its labelIds file {labels.shape[1]}x{labels.shape[0]}")
        _check_range(instances, pair.instance_ids, "instance file", MAX_INSTANCE_ID,
                     f"instance id (0..{MAX_INSTANCE_ID})")
    metrics = CityscapesMetrics(device="cpu")
    metrics.update(pred, labels, instances)
    return {name: value.numpy() for name, value in metrics.state().items()}


def _worker_setup() -> None:
    """Each decoding worker counts on its own thread. The workers are forked, and a forked child
    that enters an OpenMP parallel region its parent already used can hang (libgomp is not
    fork-safe); the work per image is a few memory-bound passes that threads barely speed up."""
    torch.set_num_threads(1)


def score_folders(pred_dir: str | os.PathLike, gt: str | os.PathLike, split: str | None = None,
                  workers: int | None = None, progress: bool = True, dataset: str | None = None) -> dict[str, Any]:
    """Scores every ground-truth image of ``gt`` against its prediction under ``pred_dir``.

    Cityscapes (a root, its ``gtFine`` folder or a folder of ``*_gtFine_labelIds.png``): returns
    ``CityscapesMetrics.compute()`` plus ``images`` and ``instances`` (whether instance files were
    found, i.e. whether iIoU is scored). Any other dataset (detected, or ``dataset``):
    ``ConfusionMetrics.compute()`` plus ``images`` and ``dataset``. ``workers=0`` decodes in this
    process.
    """
    workers = min(8, os.cpu_count() or 1) if workers is None else workers
    if workers < 0:
        raise RtsegError(f"--workers {workers}: give 0 (decode in this process) or more")
    kind = dataset or detect_layout(gt)
    if kind not in (None, "cityscapes"):
        return score_layout(pred_dir, open_dataset(gt, kind), split or "val", workers, progress)
    pairs = match_predictions(pred_dir, find_ground_truth(gt, split))
    metrics = CityscapesMetrics(device="cpu")
    _accumulate(metrics, score_pair, pairs, [], workers, progress)
    return {**metrics.compute(), "images": len(pairs), "instances": pairs[0].instance_ids is not None}


def score_layout(pred_dir: str | os.PathLike, layout: DatasetLayout, split: str = "val", workers: int = 0,
                 progress: bool = True) -> dict[str, Any]:
    """Class-id PNGs ``PRED_DIR/<name>.png`` against the labels of ``layout``'s ``split``."""
    folder = Path(pred_dir).expanduser()
    if not folder.is_dir():
        raise RtsegError(f"prediction folder {folder} {'is not a folder' if folder.exists() else 'does not exist'}")
    pairs = []
    for sample in layout.samples(split):
        prediction = folder / f"{sample.name}.png"
        if not prediction.is_file():
            raise RtsegError(f"no prediction for label {sample.label}: expected {prediction}")
        pairs.append(ScoredPair(sample.name, str(prediction), sample.label, None))
    metrics = ConfusionMetrics(layout.info.class_names, device="cpu")
    _accumulate(metrics, score_class_ids, pairs, [layout] * len(pairs), workers, progress)
    return {**metrics.compute(), "images": len(pairs), "dataset": layout.info.name}


def score_class_ids(pair: ScoredPair, layout: DatasetLayout) -> dict[str, np.ndarray]:
    """Decodes and counts one class-id prediction against its label (in a worker process)."""
    pred = read_label_png(pair.prediction, "prediction")
    labels = layout.read_label(pair.label_ids)
    if pred.shape != labels.shape:
        raise RtsegError(f"prediction {pair.prediction} is {pred.shape[1]}x{pred.shape[0]} but its label "
                         f"{pair.label_ids} is {labels.shape[1]}x{labels.shape[0]} (width x height)")
    classes = layout.info.num_classes
    top = int(pred.max())
    if top >= classes:
        raise RtsegError(f"prediction {pair.prediction} holds class id {top}, outside 0..{classes - 1} "
                         f"(the {classes} classes of {layout.info.name}; predictions hold class ids, "
                         f"rtseg predict --format classids)")
    metrics = ConfusionMetrics(layout.info.class_names, device="cpu")
    metrics.update(pred, labels)
    return {name: value.numpy() for name, value in metrics.state().items()}


def _accumulate(metrics, score, pairs: list[ScoredPair], extra: list, workers: int, progress: bool) -> None:
    """Adds ``score(pair[, extra])``'s state of every pair to ``metrics``, in order (the first bad
    file is the one reported, whatever the workers' timing), in ``workers`` processes."""
    arguments = [pairs, extra] if extra else [pairs]
    bar = tqdm(total=len(pairs), desc="score", unit="img", disable=not progress, file=sys.stderr)
    try:
        if workers == 0 or len(pairs) == 1:
            for args in zip(*arguments):
                metrics.add_state(score(*args))
                bar.update()
        else:
            pool = ProcessPoolExecutor(max_workers=min(workers, len(pairs)), initializer=_worker_setup)
            try:
                chunksize = max(1, min(8, len(pairs) // (4 * workers)))
                for state in pool.map(score, *arguments, chunksize=chunksize):
                    metrics.add_state(state)
                    bar.update()
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
    finally:
        bar.close()
