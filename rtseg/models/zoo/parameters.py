"""Which parameters a network's eval output depends on (the rest belong to training-only heads).

Papers count a network's parameters without its auxiliary, boundary and detail heads, which
only the training losses read; ``eval_parameter_names`` finds them by back-propagating the
eval-mode output of a meta-device copy (shapes only: no memory, no compute), so no network
has to list its training-only heads by hand.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def eval_parameter_names(model: nn.Module, size: tuple[int, int] = (64, 64)) -> set[str]:
    """Names of the parameters that receive a gradient from the eval-mode output."""
    meta = copy.deepcopy(model).to("meta").eval()
    for p in meta.parameters():
        p.requires_grad_(True)
        p.grad = None
    out = meta(torch.zeros(2, 3, *size, device="meta"))
    out.sum().backward()
    return {name for name, p in meta.named_parameters() if p.grad is not None}


def count_eval_params(model: nn.Module, size: tuple[int, int] = (64, 64)) -> int:
    """Parameters the eval output depends on (what papers report as the network's size)."""
    names = eval_parameter_names(model, size)
    return sum(p.numel() for name, p in model.named_parameters() if name in names)
