"""Scoring a network on a Cityscapes split the way the official evaluator does.

The network sees the image at the dataset's input size (512x1024 for the paper's models);
its logits are up-sampled bilinearly to the size of the ground truth (1024x2048 for
Cityscapes), the argmax train ids become official label ids, and ``CityscapesMetrics``
counts class IoU, class iIoU, category IoU and category iIoU. The trainer's validation,
``rtseg evaluate`` and the benchmark all call ``evaluate``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from rtseg.data.labels import train_to_label_ids
from rtseg.engine.distributed import DistInfo
from rtseg.engine.precision import autocast, check_precision


def build_eval_dataset(root: str | Path, split: str = "val", size: tuple[int, int] | None = None,
                       mean=None, std=None, annotation: str = "fine") -> Dataset:
    """The split with images resized to ``size`` (None: as stored), full-size label and instance ids."""
    from rtseg.data.cityscapes import CityscapesDataset
    from rtseg.data.transforms import eval_transforms

    kwargs = {k: v for k, v in (("mean", mean), ("std", std)) if v is not None}
    transforms = eval_transforms(size=tuple(size) if size else None, **kwargs)
    return CityscapesDataset(str(root), split=split, annotation=annotation, transforms=transforms, eval_targets=True)


def predict_train_ids(model: nn.Module, images: torch.Tensor, out_size: tuple[int, int],
                      precision: str = "fp32") -> torch.Tensor:
    """``[N, 3, h, w]`` normalised images -> ``[N, H, W]`` int64 train ids at ``out_size``.

    Logits are up-sampled bilinearly before the argmax (not the argmax map afterwards), in
    float32 so that fp16 logits do not tie.
    """
    with torch.no_grad(), autocast(precision, images.device):
        logits = model(images)
    logits = logits.float()
    if tuple(logits.shape[-2:]) != tuple(out_size):
        logits = F.interpolate(logits, size=tuple(out_size), mode="bilinear", align_corners=False)
    return logits.argmax(1)


def evaluate(model: nn.Module, dataset: Dataset, device: str | torch.device | None = None, *,
             precision: str = "fp32", batch_size: int = 1, workers: int = 0, limit: int | None = None,
             dist_info: DistInfo | None = None, progress: bool = True) -> dict[str, Any]:
    """Score ``model`` on ``dataset`` (items with ``image``, ``label_ids``, ``instance_ids``).

    Returns ``CityscapesMetrics.compute()`` (``miou``, ``miiou``, ``category_miou``,
    ``category_miiou`` as fractions or None, and the per-class/per-category dicts) plus
    ``images`` and ``seconds``. ``limit`` scores the first N images only. In a distributed
    run (``dist_info``) every rank scores every N-th image and the counts are summed, so
    every rank returns the scores of the whole set. The model is left in eval mode.
    """
    from rtseg.metrics.cityscapes import CityscapesMetrics

    device = torch.device(device) if device is not None else next(model.parameters()).device
    check_precision(precision, device)
    info = dist_info or DistInfo()
    count = len(dataset) if limit is None else min(limit, len(dataset))
    shard = Subset(dataset, range(info.rank, count, info.world_size))
    # A private generator: creating the loader must not draw from the global RNG (resumption).
    loader = DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda", generator=torch.Generator())
    metrics = CityscapesMetrics(device=device)
    model.eval()
    start = time.perf_counter()
    bar = _progress(len(loader), progress and info.is_main, "evaluate")
    for batch in loader:
        images = batch["image"].to(device, non_blocking=True)
        gt = batch["label_ids"].to(device, non_blocking=True)
        instances = batch["instance_ids"].to(device, non_blocking=True) if "instance_ids" in batch else None
        pred = train_to_label_ids(predict_train_ids(model, images, gt.shape[-2:], precision))
        metrics.update(pred, gt, instances)
        bar.update(1)
    bar.close()
    if info.enabled:
        metrics.all_reduce()
    results = metrics.compute()
    results["images"] = int(metrics.images)
    results["seconds"] = time.perf_counter() - start
    return results


def _progress(total: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, dynamic_ncols=True)
