"""Which engine runs which precision on which device, and the one error when it cannot."""

from __future__ import annotations

import contextlib

import torch

from rtseg.errors import RtsegError

ENGINES = ("eager", "compile", "onnxruntime")
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
DEVICES = ("cpu", "cuda")

_WHY_NOT = {
    ("eager", "int8"): "PyTorch has no fast eager int8 convolutions; use --engine onnxruntime "
                       "(QDQ static quantization)",
    ("onnxruntime", "bf16"): "ONNX Runtime's CPU and CUDA providers have no bfloat16 convolutions; "
                             "use --engine eager or compile for bf16",
    ("compile", "int8"): "PyTorch's PT2E int8 quantizer moved out of torch into torchao, which rtseg "
                         "does not depend on; use --engine onnxruntime (QDQ static quantization)",
}

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_choice(engine: str, precision: str, device: str) -> None:
    """Raise ``RtsegError`` naming the alternatives when the combination cannot run."""
    if engine not in ENGINES:
        raise RtsegError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
    if precision not in PRECISIONS:
        raise RtsegError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if device not in DEVICES:
        raise RtsegError(f"unknown device {device!r}; choose cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise RtsegError("device 'cuda' asked for, but PyTorch sees no CUDA GPU")
    reason = _WHY_NOT.get((engine, precision))
    if reason is None and (engine, precision) == ("onnxruntime", "fp16") and device == "cpu":
        reason = "ONNX Runtime's CPU provider has no float16 convolutions; use --device cuda or --precision int8"
    if reason:
        raise RtsegError(f"engine {engine!r} cannot run precision {precision!r}: {reason}")


def autocast(precision: str, device: str):
    """``torch.autocast`` for bf16/fp16, a no-op context for fp32 and int8."""
    dtype = AUTOCAST_DTYPES.get(precision)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device, dtype=dtype)


def supported_combinations(device: str = "cpu") -> list[tuple[str, str]]:
    """Every (engine, precision) that ``check_choice`` accepts on ``device`` (ignoring GPU presence)."""
    combos = []
    for engine in ENGINES:
        for precision in PRECISIONS:
            if (engine, precision) in _WHY_NOT:
                continue
            if device == "cpu" and (engine, precision) == ("onnxruntime", "fp16"):
                continue
            combos.append((engine, precision))
    return combos
