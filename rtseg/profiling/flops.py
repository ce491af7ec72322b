"""Parameters and multiply-adds, counted by ``torch.utils.flop_counter``.

``FlopCounterMode`` reports FLOPs as 2 x multiply-adds for matmuls and convolutions
(transposed ones included), which is also the RTSeg paper's GFLOPs convention; we report
both ``gmacs`` and ``gflops`` so nobody confuses them. The count runs on the meta device,
so even VGG16 at 1024x2048 costs no memory and no time.

Parameters are counted twice: ``params``, all of them, and ``eval_params``, those the eval
output depends on (``rtseg.models.zoo.eval_parameters``: the eval output of a meta copy
back-propagated), which leaves out training-only heads (auxiliary, boundary, detail) as papers
do; the two are equal for a network without such heads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from rtseg.models.zoo.eval_parameters import count_eval_params, meta_copy


@dataclass(frozen=True)
class Cost:
    params: int  # all parameters
    eval_params: int  # those the eval output depends on (no training-only heads)
    gmacs: float
    gflops: float
    height: int
    width: int

    def as_dict(self) -> dict:
        return asdict(self)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, size: tuple[int, int], batch: int = 1) -> int:
    """FLOPs (2 x MACs) of one eval-mode forward pass at ``size``, on the meta device."""
    was_training = model.training
    model.eval()
    try:
        meta_model = meta_copy(model)
        x = torch.zeros(batch, 3, *size, device="meta")
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            meta_model(x)
        return int(counter.get_total_flops())
    finally:
        model.train(was_training)


def measure_cost(model: nn.Module, size: tuple[int, int]) -> Cost:
    flops = count_flops(model, size)
    return Cost(params=count_params(model), eval_params=count_eval_params(model, size), gmacs=flops / 2e9,
                gflops=flops / 1e9, height=size[0], width=size[1])
