"""Scoring a network on a dataset split the way the dataset is scored.

The network sees the image at the dataset's input size (512x1024 for the paper's models);
``rtseg.data.processing.logits_to_labels`` up-samples its logits bilinearly to the size of the
ground truth (1024x2048 for Cityscapes) before the argmax, and ``rtseg.metrics.scoring``
counts what the dataset's description asks for: on Cityscapes the official class IoU, class
iIoU, category IoU and category iIoU (train ids turned into label ids), on any other dataset
IoU, pixel and mean accuracy from one confusion matrix. The trainer's validation, ``rtseg
evaluate``, the benchmark and the ONNX check of ``rtseg export`` all call ``evaluate``; it takes
a network or any callable from a normalised image batch to logits (an ONNX Runtime runner).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from tqdm import tqdm

from rtseg.data.cityscapes import CITYSCAPES
from rtseg.data.dataset import SegmentationDataset
from rtseg.data.layouts import open_dataset
from rtseg.data.processing import logits_to_labels
from rtseg.data.transforms import eval_transforms
from rtseg.distributed import DistInfo
from rtseg.metrics.scoring import DatasetScorer
from rtseg.normalisation import check_normalisation
from rtseg.runtime import autocast, check_precision

LogitsFn = Callable[[torch.Tensor], torch.Tensor]


def build_eval_dataset(root: str | Path, split: str, size: tuple[int, int] | None, mean, std,
                       annotation: str = "fine", dataset: str | None = None) -> SegmentationDataset:
    """The split of the dataset at ``root`` (its layout ``dataset``, or found) with images resized
    to ``size`` (None: as stored) and normalised with the network's ``mean``/``std``; full-size
    labels (and, for Cityscapes, label and instance ids)."""
    mean, std = check_normalisation(mean, std)
    transforms = eval_transforms(size=tuple(size) if size else None, mean=mean, std=std)
    return SegmentationDataset(open_dataset(root, dataset, annotation), split, transforms, eval_targets=True)


def predict_labels(model: nn.Module | LogitsFn, images: torch.Tensor, out_size: tuple[int, int],
                   precision: str = "fp32", id_table=None) -> torch.Tensor:
    """``[N, 3, h, w]`` normalised images -> ``[N, H, W]`` int64 labels at ``out_size``
    (train ids, or through ``id_table`` e.g. Cityscapes label ids)."""
    with torch.no_grad(), autocast(precision, images.device):
        logits = model(images)
    return logits_to_labels(logits, out_size, id_table)


def evaluate(model: nn.Module | LogitsFn, dataset: Dataset, device: str | torch.device | None = None, *,
             precision: str = "fp32", batch_size: int = 1, workers: int = 0, limit: int | None = None,
             dist_info: DistInfo | None = None, progress: bool = True) -> dict[str, Any]:
    """Score ``model`` on ``dataset`` (items with ``image`` and ``label``, and for Cityscapes
    ``label_ids`` and ``instance_ids``; ``dataset.info`` says which scores, Cityscapes' without one).

    Returns the dataset's scores (Cityscapes: ``CityscapesMetrics.compute()``, ``miou``, ``miiou``,
    ``category_miou``, ``category_miiou`` as fractions or None and the per-class/per-category
    dicts; any other: ``ConfusionMetrics.compute()``) plus ``images`` and ``seconds``. ``limit`` scores the first N images only. In a distributed
    run (``dist_info``) every rank scores every N-th image and the counts are summed, so
    every rank returns the scores of the whole set. A network is put in eval mode.
    """
    if isinstance(model, nn.Module):
        model.eval()
        if device is None:
            device = next(model.parameters()).device
    device = torch.device(device or "cpu")
    check_precision(precision, device)
    info = dist_info or DistInfo()
    count = len(dataset) if limit is None else min(limit, len(dataset))
    shard = Subset(dataset, range(info.rank, count, info.world_size))
    # A private generator: creating the loader must not draw from the global RNG (resumption).
    loader = DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda", generator=torch.Generator())
    scorer = DatasetScorer(getattr(dataset, "info", CITYSCAPES), device=device)
    start = time.perf_counter()
    with tqdm(total=len(loader), desc="evaluate", disable=not (progress and info.is_main), leave=False,
              dynamic_ncols=True) as bar:
        for batch in loader:
            images = batch["image"].to(device, non_blocking=True)
            size = (batch["label_ids"] if "label_ids" in batch else batch["label"]).shape[-2:]
            scorer.update(predict_labels(model, images, size, precision), batch)
            bar.update(1)
    if info.enabled:
        scorer.all_reduce()
    results = scorer.compute()
    results["images"] = scorer.images
    results["seconds"] = time.perf_counter() - start
    return results
