"""A dataset's own scores from class-id predictions: what the evaluator calls for any dataset.

``DatasetScorer(info)`` picks the metric the dataset's description asks for: Cityscapes'
official class/category IoU and iIoU (predictions turned into label ids, scored against the
batch's ``label_ids`` and ``instance_ids``), or the confusion-matrix scores of any class set
(against the batch's ``label``, 255 ignored).
"""

from __future__ import annotations

from typing import Any

import torch

from rtseg.data.dataset import DatasetInfo
from rtseg.errors import RtsegError
from rtseg.metrics.cityscapes import CityscapesMetrics
from rtseg.metrics.confusion import ConfusionMetrics


class DatasetScorer:
    def __init__(self, info: DatasetInfo, device: torch.device | str | None = None):
        self.info = info
        if info.scoring == "cityscapes":
            self.metrics = CityscapesMetrics(device=device)
            self._id_table = torch.as_tensor(info.id_table().astype("int64"))
        else:
            self.metrics = ConfusionMetrics(info.class_names, device=device, ignore_index=info.ignore_index)

    @property
    def images(self) -> int:
        return int(self.metrics.images)

    def update(self, pred: torch.Tensor, batch: dict[str, Any]) -> None:
        """``pred``: ``[N, H, W]`` class ids at the label's size; ``batch``: the dataset's items, batched."""
        if self.info.scoring == "cityscapes":
            if "label_ids" not in batch:
                raise RtsegError("Cityscapes scores need the dataset's label_ids (build it with eval_targets=True)")
            gt = batch["label_ids"].to(pred.device, non_blocking=True)
            instances = batch.get("instance_ids")
            instances = instances.to(pred.device, non_blocking=True) if instances is not None else None
            label_ids = self._id_table.to(pred.device)[pred.long()]
            self.metrics.update(label_ids, gt, instances)
        else:
            self.metrics.update(pred, batch["label"].to(pred.device, non_blocking=True))

    def all_reduce(self) -> "DatasetScorer":
        self.metrics.all_reduce()
        return self

    def compute(self) -> dict[str, Any]:
        return self.metrics.compute()
