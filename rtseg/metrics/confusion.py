"""Scores of any class set from one confusion matrix over the split: IoU, pixel and mean accuracy.

The usual definitions (mmsegmentation's ``IoUMetric``, torchmetrics' ``JaccardIndex`` with
``ignore_index``): pixels whose ground truth is ignored (255) are dropped before counting;
``IoU_c = TP / (TP + FP + FN)``, None where the class is neither in the ground truth nor
predicted; ``miou`` the mean of the defined ones; ``pixel_accuracy`` the share of counted
pixels predicted right; ``mean_accuracy`` the mean over classes present in the ground truth
of ``TP / (TP + FN)``. Written here because torchmetrics is not a dependency and the state
must add up across worker processes and DDP ranks like ``CityscapesMetrics``'.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from rtseg.errors import RtsegError
from rtseg.metrics.state import AdditiveState, as_batches, mean_defined, ratio

IGNORE = 255


class ConfusionMetrics(AdditiveState):
    """``update(pred, gt)`` with class ids (``[N, H, W]`` or ``[H, W]``; gt may hold 255 = ignore)."""

    def __init__(self, class_names: Sequence[str], device: torch.device | str | None = None,
                 ignore_index: int = IGNORE):
        self.class_names = tuple(class_names)
        self.num_classes = len(self.class_names)
        self.ignore_index = int(ignore_index)
        if not 0 < self.num_classes <= 255 or 0 <= self.ignore_index < self.num_classes:
            raise RtsegError(f"{self.num_classes} classes with ignore index {self.ignore_index}: "
                             "give 1..255 classes and an ignore index outside them")
        super().__init__(device)

    def spec(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        return {"confusion": ((self.num_classes, self.num_classes), torch.int64), "images": ((), torch.int64)}

    @torch.no_grad()
    def update(self, pred, gt) -> None:
        pred, gt, _ = as_batches(pred, gt)
        self._follow(pred)
        pred, gt = pred.to(self.device).to(torch.int64), gt.to(self.device).to(torch.int64)
        counted = gt != self.ignore_index
        extremes = torch.stack([*torch.aminmax(pred), *torch.aminmax(torch.where(counted, gt, 0))]).tolist()
        if extremes[0] < 0 or extremes[1] >= self.num_classes:
            bad = extremes[0] if extremes[0] < 0 else extremes[1]
            raise RtsegError(f"prediction holds class id {bad}, outside 0..{self.num_classes - 1} "
                             f"(the {self.num_classes} classes)")
        if extremes[2] < 0 or extremes[3] >= self.num_classes:
            bad = extremes[2] if extremes[2] < 0 else extremes[3]
            raise RtsegError(f"ground truth holds class id {bad}, outside 0..{self.num_classes - 1} "
                             f"and {self.ignore_index} (ignored)")
        pairs = gt[counted] * self.num_classes + pred[counted]
        self.confusion += torch.bincount(pairs, minlength=self.num_classes ** 2).view(self.num_classes,
                                                                                      self.num_classes)
        self.images += pred.shape[0]

    def compute(self) -> dict[str, Any]:
        """``miou``, ``pixel_accuracy``, ``mean_accuracy`` (fractions or None), ``class_iou`` and
        ``class_accuracy`` by class name (None where undefined), the confusion matrix (rows: truth)."""
        confusion = self.confusion.cpu().to(torch.float64)
        tp = confusion.diagonal()
        truth, predicted = confusion.sum(1), confusion.sum(0)
        class_iou = {name: ratio(tp[c], truth[c] + predicted[c] - tp[c]) for c, name in enumerate(self.class_names)}
        class_accuracy = {name: ratio(tp[c], truth[c]) for c, name in enumerate(self.class_names)}
        return {
            "miou": mean_defined(class_iou.values()),
            "pixel_accuracy": ratio(tp.sum(), confusion.sum()),
            "mean_accuracy": mean_defined(class_accuracy.values()),
            "class_iou": class_iou,
            "class_accuracy": class_accuracy,
            "confusion": self.confusion.cpu().tolist(),
        }
