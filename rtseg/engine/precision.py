"""fp32 / bf16 / fp16 as torch.autocast contexts, checked against the device."""

from __future__ import annotations

import contextlib

import torch

from rtseg.errors import RtsegError

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device, option: str = "precision") -> None:
    if precision not in ("fp32", "bf16", "fp16"):
        raise RtsegError(f"{option} must be fp32, bf16 or fp16, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise RtsegError(f"{option} fp16 needs a CUDA device (on {device.type} use bf16 or fp32)")
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise RtsegError(f"{option} bf16 is not supported by {torch.cuda.get_device_name(device)}; use fp16")


def autocast(precision: str, device: torch.device):
    """``torch.autocast`` for bf16/fp16; a no-op context for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=DTYPES[precision])
