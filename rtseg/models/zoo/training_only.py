"""Heads a network trains with but does not evaluate with (auxiliary, boundary, booster heads).

A zoo network names them in ``training_only`` (its child modules' names). They are part of the
network, so a training-time checkpoint (the authors' releases carry them) loads whole; but the
eval output does not depend on them, so the parameter count a reader compares with a paper's
is ``inference_param_count``, and a release published without them loads with these heads left
at their initialisation (``fill_training_only``): they only matter to further training.
"""

from __future__ import annotations

from typing import Mapping

import torch
from torch import nn


def training_only_prefixes(model: nn.Module) -> tuple[str, ...]:
    return tuple(f"{name}." for name in getattr(model, "training_only", ()))


def inference_param_count(model: nn.Module) -> int:
    """Parameters the eval-mode output depends on: all but those of the training-only heads."""
    prefixes = training_only_prefixes(model)
    return sum(p.numel() for name, p in model.named_parameters() if not name.startswith(prefixes))


def fill_training_only(model: nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` plus this network's own values for each training-only head the file lacks entirely.

    A head the file holds in part is left alone, so that loading names what is missing.
    """
    state = dict(state)
    own = model.state_dict()
    for prefix in training_only_prefixes(model):
        if not any(key.startswith(prefix) for key in state):
            state.update({key: value for key, value in own.items() if key.startswith(prefix)})
    return state
