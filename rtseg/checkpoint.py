"""Checkpoints that load with ``torch.load(weights_only=True)``, written atomically.

A checkpoint is a dict of tensors, numbers, strings, lists and dicts only (no pickled
objects), so loading one never runs code::

    format       "rtseg-checkpoint"
    version      1
    model_name   "skipnet-mobilenet_v1"   (everything create_model needs to rebuild it)
    num_classes  19
    model_options {"width": 0.5}
    model        state dict
    optimizer, scheduler, scaler   state dicts (absent from weights-only exports)
    step, epoch, epoch_step        where training stands
    rng          torch / cuda / numpy / python generator states, as tensors
    config       the TrainConfig as a dict
    mean, std    the input normalisation of the network's weights
    eval_size    the network input size the run validated at
    class_weights, best_miou, metrics

This module only reads and writes the file; ``rtseg.models.load_model`` rebuilds the network.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rtseg.atomic import atomic_open
from rtseg.errors import RtsegError

FORMAT = "rtseg-checkpoint"
VERSION = 1


def save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then ``os.replace`` onto it.

    A run killed mid-write leaves the previous checkpoint intact, never a truncated one.
    """
    with atomic_open(path, "wb", fsync=True) as handle:
        torch.save(obj, handle)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Read an rtseg checkpoint safely (``weights_only=True``); one-line error if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise RtsegError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise RtsegError(f"cannot read checkpoint {path}: {type(exc).__name__}: {exc}".splitlines()[0]) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise RtsegError(f"{path} is not an rtseg checkpoint (written by 'rtseg train')")
    if state.get("version", 0) > VERSION:
        raise RtsegError(f"checkpoint {path} has format version {state['version']}; "
                         f"this rtseg reads up to {VERSION}: upgrade rtseg")
    return state


# --- random number generators ---------------------------------------------------------
# Stored as tensors and plain numbers so that weights_only loading accepts them.

def capture_rng_state() -> dict:
    numpy_state = np.random.get_state()
    python_state = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(numpy_state[1].astype(np.int64)), "pos": int(numpy_state[2]),
                  "has_gauss": int(numpy_state[3]), "cached_gaussian": float(numpy_state[4])},
        "python": {"version": int(python_state[0]), "state": torch.tensor(python_state[1], dtype=torch.int64)},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"].cpu())
    numpy = state["numpy"]
    np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["pos"],
                         numpy["has_gauss"], numpy["cached_gaussian"]))
    python = state["python"]
    random.setstate((python["version"], tuple(int(v) for v in python["state"].tolist()), None))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
