"""Reading state-dict files safely and fitting them to a module with a readable error."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from rtseg.errors import RtsegError
from rtseg.models.pdparams import read_pdparams
from rtseg.models.weights_path import expand_weights_path

# Checkpoint formats nest the weights under one of these keys.
_NESTED_KEYS = ("state_dict", "model", "model_state", "module")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a ``.pth``/``.pt``/``.bin`` (torch), ``.safetensors`` or ``.pdparams`` (PaddlePaddle)
    file without running pickled code.

    ``${RTSEG_WEIGHTS:-weights}/file.pth`` in a path is the weights folder (``rtseg.models.weights_path``).
    """
    path = expand_weights_path(path)
    if not path.is_file():
        raise RtsegError(f"weights file {path} does not exist")
    if path.suffix == ".pdparams":
        return read_pdparams(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, or a pickle that needs arbitrary code
        raise RtsegError(f"cannot read weights file {path}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    for key in _NESTED_KEYS:
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
            break
    if isinstance(state, Mapping) and state and all(
            isinstance(v, Mapping) and all(isinstance(t, torch.Tensor) for t in v.values()) for v in state.values()):
        # One state dict per child module (CoinCheung/BiSeNet's backbone_v2.pth: "detail", "segment").
        state = {f"{child}.{key}": tensor for child, sub in state.items() for key, tensor in sub.items()}
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise RtsegError(f"weights file {path} holds no state dict of tensors")
    # DataParallel / DDP checkpoints prefix every key with "module.".
    return {k[7:] if k.startswith("module.") else k: v for k, v in state.items()}


def fit_state_dict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` with an error that names what does not fit and where from."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong_shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong_shape:
        parts = []
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                            ("keys with another shape", wrong_shape)):
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... ({len(keys)} in all)" if len(keys) > 8 else "")
                parts.append(f"{label}: {shown}")
        raise RtsegError(f"{source} does not fit {type(module).__name__}: " + "; ".join(parts))
    module.load_state_dict(state, strict=True)
