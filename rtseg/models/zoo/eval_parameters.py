"""Which parameters a network's eval output depends on; the rest belong to training-only heads.

Papers count a network's parameters without its auxiliary, boundary, booster and detail heads,
which only the training losses read. ``eval_parameter_names`` finds the parameters the eval
output depends on by back-propagating the eval-mode output of a meta-device copy (shapes only:
no storage is copied, nothing is computed, the network itself is not touched): a parameter
outside the eval graph gets no gradient at all. So no network lists its training-only heads by
hand, and the answer cannot drift from the forward pass. It works for any ``nn.Module`` that
maps an image batch to a tensor in eval mode, hence for every ``SegmentationNetwork``;
``rtseg.profiling.flops`` reports it as a model's ``eval_params``. It lives in the models layer,
below profiling, because loading the zoo's release files needs it (``fill_training_heads``);
profiling imports it from here, and ``meta_copy`` with it.

``training_only_modules`` names the heads themselves (the largest submodules none of whose
parameters the eval output reads), which is what a release file may lack: the authors'
evaluation files leave them out (Fast-SCNN's), and ``fill_training_heads`` loads such a file
with those heads at their initialisation, since they only matter to further training.
"""

from __future__ import annotations

import copy
from typing import Mapping

import torch
from torch import nn

PROBE_SIZE = (64, 64)  # every registered network runs there; the answer does not depend on the size


def meta_copy(model: nn.Module) -> nn.Module:
    """A deep copy whose parameters and buffers live on the meta device (no storage is copied)."""
    memo = {}
    for tensor in list(model.parameters()) + list(model.buffers()):
        meta = torch.empty_like(tensor, device="meta")
        memo[id(tensor)] = nn.Parameter(meta, tensor.requires_grad) if isinstance(tensor, nn.Parameter) else meta
    return copy.deepcopy(model, memo)


def eval_parameter_names(model: nn.Module, size: tuple[int, int] = PROBE_SIZE) -> set[str]:
    """Names of the parameters that receive a gradient from the eval-mode output at ``size``."""
    meta = meta_copy(model).eval()
    params = dict(meta.named_parameters())
    for p in params.values():
        p.requires_grad_(True)  # a frozen layer is still part of the eval output
    out = meta(torch.zeros(1, 3, *size, device="meta"))
    grads = torch.autograd.grad(out.sum(), list(params.values()), allow_unused=True)
    return {name for name, grad in zip(params, grads) if grad is not None}


def count_eval_params(model: nn.Module, size: tuple[int, int] = PROBE_SIZE) -> int:
    """Parameters the eval output depends on (what papers report as the network's size)."""
    names = eval_parameter_names(model, size)
    return sum(p.numel() for name, p in model.named_parameters() if name in names)


def training_only_modules(model: nn.Module, size: tuple[int, int] = PROBE_SIZE) -> tuple[str, ...]:
    """The largest submodules that have parameters and none the eval output depends on."""
    used = eval_parameter_names(model, size)

    def heads(prefix: str, module: nn.Module) -> list[str]:
        names = [prefix + name for name, _ in module.named_parameters()]
        if names and not used.intersection(names):
            return [prefix.rstrip(".")]
        return [head for name, child in module.named_children() for head in heads(f"{prefix}{name}.", child)]

    return tuple(heads("", model))


def fill_training_heads(model: nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` (in ``model``'s keys) plus ``model``'s own values for each training-only head the
    file lacks entirely. A head the file holds in part is left alone, so that loading names what
    is missing."""
    state = dict(state)
    own = model.state_dict()
    if set(own) <= set(state):
        return state  # nothing is missing: no head to fill in
    for head in training_only_modules(model):
        prefix = f"{head}."
        if not any(key.startswith(prefix) for key in state):
            state.update({key: value for key, value in own.items() if key.startswith(prefix)})
    return state
