"""Turning the keys of the authors' release files into the zoo networks' keys.

Each network's ``convert_state_dict`` is a table of official names -> ours plus the wrapping its
release adds; the pieces every table needs are here:

* ``rename_by_rules``: the first of a list of ``(regex, replacement)`` rules that matches at the
  start of a key rewrites it (CoinCheung's BiSeNet heads, PaddleSeg's PP-LiteSeg, Tramac's
  Fast-SCNN);
* ``rename_prefixes``: the first official module prefix that starts a key is replaced by ours
  (DDRNet's and PIDNet's heads, BiSeNet V2's last booster);
* ``unwrap_training_checkpoint``: HRNet-Semantic-Segmentation's ``FullModel`` wrapper (DDRNet,
  PIDNet);
* ``paddle_bn_name`` and ``fill_batch_counts``: PaddlePaddle's and InPlace-ABN's batch norms,
  which name their statistics differently or keep no batch counter.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping

import torch
from torch import nn

Rules = Iterable[tuple[re.Pattern, str]]


def compile_rules(rules: Iterable[tuple[str, str]]) -> tuple[tuple[re.Pattern, str], ...]:
    return tuple((re.compile(pattern), replacement) for pattern, replacement in rules)


def rename_by_rules(key: str, rules: Rules) -> str:
    """``key`` rewritten by the first rule whose pattern matches at its start; unchanged if none does."""
    for pattern, replacement in rules:
        if pattern.match(key):
            return pattern.sub(replacement, key, count=1)
    return key


def rename_prefixes(key: str, renames: Mapping[str, str]) -> str:
    """``key`` with the first official prefix in ``renames`` that starts it replaced by ours."""
    for official, ours in renames.items():
        if key.startswith(official):
            return ours + key[len(official):]
    return key


def unwrap_training_checkpoint(state: Mapping[str, torch.Tensor], renames: Mapping[str, str]) -> dict[str, torch.Tensor]:
    """An HRNet-style release -> the network's keys.

    HRNet-Semantic-Segmentation's training wraps the network in ``FullModel(model, loss)`` and
    saves that, so each network key is prefixed ``model.`` and the loss's buffers come along
    (the class weights of its cross entropy: ``loss.criterion.weight`` in DDRNet's release,
    ``sem_loss.criterion.weight`` in PIDNet's). Those are dropped; ``renames`` maps official
    module prefixes (``final_layer.``) onto ours (``head.``).
    """
    if any(key.startswith("model.") for key in state):
        state = {key[len("model."):]: value for key, value in state.items() if key.startswith("model.")}
    return {rename_prefixes(key, renames): value for key, value in state.items()}


# PaddlePaddle names a batch norm's running statistics differently.
_PADDLE_BN = {"_mean": "running_mean", "_variance": "running_var"}


def paddle_bn_name(key: str) -> str:
    """``..._batch_norm._mean`` style PaddlePaddle statistics -> PyTorch's ``running_*`` names."""
    head, _, last = key.rpartition(".")
    return f"{head}.{_PADDLE_BN[last]}" if last in _PADDLE_BN else key


def fill_batch_counts(module: nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Add the ``num_batches_tracked`` counters that PaddlePaddle and InPlace-ABN files lack.

    The counter only matters for BN with ``momentum=None``, which no zoo network uses.
    """
    state = dict(state)
    for key, value in module.state_dict().items():
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = torch.zeros_like(value)
    return state
