"""Weighted cross entropy whose mean is taken over the whole global batch.

``F.cross_entropy(weight=w, reduction="mean")`` divides by the summed weights of the
rank's own pixels. DDP then averages the ranks' gradients, which is not the gradient of the
global batch's mean when ranks hold different numbers of (weighted, non-ignored) pixels.
Summing the weights over all ranks first makes an N-process step equal a 1-process step
over the same images.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from rtseg.data.labels import IGNORE_INDEX
from rtseg.distributed import DistInfo, all_reduce_sum


def weighted_cross_entropy(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None,
                           info: DistInfo | None = None,
                           ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, torch.Tensor]:
    """``(loss to back-propagate, global mean loss for logging)``.

    The first is scaled so that after DDP's gradient averaging the gradient is that of the
    global weighted mean; the second is that mean (the same on every rank), detached.
    """
    info = info or DistInfo()
    loss_sum = F.cross_entropy(logits.float(), target, weight=weight, ignore_index=ignore_index, reduction="sum")
    valid = target != ignore_index
    if weight is None:
        normaliser = valid.sum().to(torch.float32)
    else:
        normaliser = weight[target[valid]].sum()
    totals = torch.stack([loss_sum.detach(), normaliser.detach().to(loss_sum.dtype)])
    all_reduce_sum(totals, info)
    global_normaliser = totals[1].clamp_min(1e-12)  # a batch of ignored pixels only: loss 0
    loss = loss_sum * info.world_size / global_normaliser
    return loss, totals[0] / global_normaliser
