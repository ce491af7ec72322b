"""STDC-Seg's detail loss (Fan et al. 2021, arXiv 2104.13188, section 3.3; the official code is
MichaelFan01/STDC-Seg at 59ff37f: ``loss/detail_loss.py`` ``DetailAggregateLoss``, ``train.py``).

The detail target comes from the labels: a 3x3 Laplacian (8 in the centre, -1 around, zero
padding) of the train-id map at strides 1, 2 and 4, each clamped at 0 and thresholded at 0.1,
the coarser two up-sampled (nearest) to full size, fused by a 1x1 convolution with weights
(0.6, 0.3, 0.1) and thresholded at 0.1 again. The loss is binary cross entropy (mean over the
pixels) plus dice loss (``1 - (2 |p t| + 1) / (|p| + |t| + 1)`` per image, mean over images) of
the detail head's sigmoid against it; STDC trains the head at 1/8 and up-samples its logits
bilinearly with ``align_corners=True`` (the term's ``resize: bilinear_align_corners``).

As in the official code the labels enter with their ignore value (255), so the edges of
ignored regions are details too, and the zero padding makes the image border a detail
wherever the label is not class 0. One difference: the official fusion weights are an
``nn.Parameter`` handed to the optimiser, but the thresholding that follows replaces every
value, so no gradient ever reaches them and only SGD's weight decay moves them, shrinking
them over a run (a fused value of 0.3 drops below the threshold once they have shrunk by a
factor of 3); here they stay at their published values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch.nn import functional as F

from rtseg.errors import RtsegError
from rtseg.training.losses.base import LossTerm, Partial, register_loss

_LAPLACIAN = ((-1.0, -1.0, -1.0), (-1.0, 8.0, -1.0), (-1.0, -1.0, -1.0))
_FUSE = (6.0 / 10, 3.0 / 10, 1.0 / 10)
_THRESHOLD = 0.1


def detail_targets(target: torch.Tensor) -> torch.Tensor:
    """``[N, H, W]`` train ids -> ``[N, 1, H, W]`` float 0/1: STDC's fused detail target."""
    labels = target[:, None].float()
    laplacian = torch.tensor(_LAPLACIAN, device=target.device).view(1, 1, 3, 3)
    levels = []
    for stride in (1, 2, 4):
        edges = F.conv2d(labels, laplacian, stride=stride, padding=1).clamp_min(0)
        if stride > 1:
            edges = F.interpolate(edges, size=labels.shape[-2:], mode="nearest")
        levels.append((edges > _THRESHOLD).float())
    fuse = torch.tensor(_FUSE, device=target.device).view(1, 3, 1, 1)
    return (F.conv2d(torch.cat(levels, dim=1), fuse) > _THRESHOLD).float()


@register_loss("detail")
@dataclass
class DetailLoss(LossTerm):
    bce_weight: float = 1.0
    dice_weight: float = 1.0

    def check(self, where: str) -> None:
        super().check(where)
        if self.bce_weight < 0 or self.dice_weight < 0:
            raise RtsegError(f"{where}: bce_weight and dice_weight must be 0 or more")

    def partial(self, name: str, outputs: Mapping[str, torch.Tensor], target: torch.Tensor,
                class_weights: torch.Tensor | None) -> Partial:
        logits, target = self.fit(name, outputs[self.source(name)], target)
        if logits.dim() != 4 or logits.shape[1] != 1:
            raise RtsegError(f"loss.{name}: output {self.source(name)!r} must be [N, 1, H, W] detail logits, "
                             f"got {list(logits.shape)}")
        logits = logits.float()
        details = detail_targets(target)
        bce = F.binary_cross_entropy_with_logits(logits, details, reduction="sum")
        p, t = torch.sigmoid(logits).flatten(1), details.flatten(1)
        dice = 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)
        n = torch.tensor(float(logits.shape[0]), device=logits.device)
        return Partial((bce, dice.sum()), (torch.tensor(float(details.numel()), device=logits.device), n))

    def combine(self, sums: Sequence[torch.Tensor], counts: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.bce_weight * sums[0] / counts[0].clamp_min(1.0) + self.dice_weight * sums[1] / counts[1].clamp_min(1.0)
