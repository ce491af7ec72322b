"""Where and how torch runs: device names, autocast precisions, and thread counts for one block.

The one autocast helper (training, evaluation and the inference engines all use it), the one
device resolver, and ``torch_threads``: library code that needs a thread count sets it for
the call and puts the caller's back, so importing rtseg never changes a program's settings.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from rtseg.errors import RtsegError
from rtseg.options import TRAIN_PRECISIONS

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str | torch.device, local_rank: int = 0, option: str = "--device") -> torch.device:
    """``"auto"`` -> this process's GPU when there is one, else the CPU; ``cuda`` -> ``cuda:<local_rank>``."""
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise RtsegError(f"{option} {name!r} is not a device (auto, cpu, cuda, cuda:1, ...)") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RtsegError(f"{option} is {name!r} but PyTorch sees no CUDA device")
        if device.index is None:
            device = torch.device("cuda", local_rank)
    return device


def check_precision(precision: str, device: torch.device | str, option: str = "precision") -> None:
    """Training/evaluation precisions (autocast): fp16 needs CUDA, bf16 a GPU that has it."""
    device = torch.device(device)
    if precision not in TRAIN_PRECISIONS:
        raise RtsegError(f"{option} must be one of {', '.join(TRAIN_PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise RtsegError(f"{option} fp16 needs a CUDA device (on {device.type} use bf16 or fp32)")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise RtsegError(f"{option} bf16 is not supported by {torch.cuda.get_device_name(device)}; use fp16")


def autocast(precision: str, device: torch.device | str):
    """``torch.autocast`` for bf16/fp16; a no-op context for fp32 (and int8, which is not autocast)."""
    dtype = AUTOCAST_DTYPES.get(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[int]:
    """Run a block with PyTorch's intra-op thread count at ``threads`` (None: leave it), then restore it."""
    previous = torch.get_num_threads()
    wanted = int(threads) if threads else previous
    if wanted < 1:
        raise RtsegError(f"threads must be positive, got {threads}")
    if wanted != previous:
        torch.set_num_threads(wanted)
    try:
        yield wanted
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
