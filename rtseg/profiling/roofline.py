"""The machine's matrix-multiply peak for a precision, measured, not looked up.

A model's efficiency is its achieved FLOP/s over what this machine reaches on the friendliest
workload there is, a large square matrix multiply in the same precision. Measured in the
same run as the model, it tells a slow model (low efficiency) from a slow or busy machine
(low peak). fp32/bf16/fp16 use ``torch.mm``; int8 uses ``torch._int_mm`` (int8 x int8 -> int32)
and ONNX Runtime's ``MatMulInteger`` (uint8 x int8, the pairing its quantized convolutions
use) and keeps the faster, since each engine has its own int8 kernels.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field

import torch

from rtseg.profiling.timing import settle

_FLOAT_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Peak:
    precision: str
    gflops_per_s: float | None  # None: no way to measure it here ("n/a")
    method: str
    matrix: int
    candidates: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["gflops_per_s"] = round(self.gflops_per_s, 2) if self.gflops_per_s else None
        return data


def _matrix_size(precision: str, device: str) -> int:
    if device == "cuda":
        return 8192
    return 1024 if precision == "fp32" else 2048  # ~20-50 ms a multiply on a few CPU cores


def _time(fn, device: str, runs: int) -> float:
    """Median seconds of ``fn()`` after it has settled (same rules as the model timing)."""
    def step() -> float:
        if device == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            torch.cuda.synchronize()
            start.record()
            fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        began = time.perf_counter()
        fn()
        return time.perf_counter() - began

    settle(step, window=3, tolerance=0.05, max_runs=20)
    return statistics.median(step() for _ in range(runs))


def _torch_matmul(precision: str, device: str, n: int, runs: int) -> float:
    if precision == "int8":
        a = torch.randint(-128, 128, (n, n), dtype=torch.int8, device=device)
        b = torch.randint(-128, 128, (n, n), dtype=torch.int8, device=device)
        seconds = _time(lambda: torch._int_mm(a, b), device, runs)
    else:
        a = torch.randn(n, n, dtype=_FLOAT_DTYPES[precision], device=device)
        b = torch.randn(n, n, dtype=_FLOAT_DTYPES[precision], device=device)
        seconds = _time(lambda: torch.mm(a, b), device, runs)
    return 2 * n ** 3 / seconds / 1e9


def _onnxruntime_int8_matmul(n: int, runs: int, threads: int | None) -> float:
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["a", "b"], ["y"])], "peak",
        [helper.make_tensor_value_info("a", TensorProto.UINT8, [n, n]),
         helper.make_tensor_value_info("b", TensorProto.INT8, [n, n])],
        [helper.make_tensor_value_info("y", TensorProto.INT32, [n, n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feed = {"a": rng.integers(0, 256, (n, n), dtype=np.uint8), "b": rng.integers(-128, 128, (n, n), dtype=np.int8)}
    seconds = _time(lambda: session.run(None, feed), "cpu", runs)
    return 2 * n ** 3 / seconds / 1e9


def measure_peak(precision: str = "fp32", device: str = "cpu", *, matrix: int | None = None, runs: int = 10,
                 threads: int | None = None) -> Peak:
    """GFLOP/s of a square ``matrix`` x ``matrix`` multiply in ``precision`` (median of ``runs``).

    Uses PyTorch's current thread count (``measure_speed`` sets it to the run's). Returns a
    ``Peak`` with ``gflops_per_s=None`` and the reason in ``method`` when no kernel exists.
    """
    if precision not in (*_FLOAT_DTYPES, "int8"):
        raise ValueError(f"unknown precision {precision!r}")
    n = matrix or _matrix_size(precision, device)
    candidates: dict[str, float | str] = {}
    try:
        candidates["torch"] = _torch_matmul(precision, device, n, runs)
    except (RuntimeError, NotImplementedError) as exc:  # no kernel for this dtype on this device
        candidates["torch"] = f"n/a: {str(exc).splitlines()[0][:120]}"
    if precision == "int8" and device == "cpu":
        try:
            candidates["onnxruntime"] = _onnxruntime_int8_matmul(n, runs, threads)
        except Exception as exc:  # onnxruntime missing or without MatMulInteger
            candidates["onnxruntime"] = f"n/a: {str(exc).splitlines()[0][:120]}"
    measured = {k: v for k, v in candidates.items() if isinstance(v, float)}
    if not measured:
        return Peak(precision, None, "n/a", n, candidates)
    best = max(measured, key=measured.get)
    method = {"torch": "torch._int_mm" if precision == "int8" else "torch.mm",
              "onnxruntime": "onnxruntime MatMulInteger (u8 x s8)"}[best]
    return Peak(precision, measured[best], method, n,
                {k: round(v, 2) if isinstance(v, float) else v for k, v in candidates.items()})
