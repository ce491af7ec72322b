"""The machine's matrix-multiply peak for a precision, measured, not looked up.

A model's efficiency is its achieved FLOP/s over what this machine reaches on the friendliest
workload there is, a large square matrix multiply in the same precision. Measured in the
same run as the model, it tells a slow model (low efficiency) from a slow or busy machine
(low peak). fp32/bf16/fp16 use ``torch.mm`` and, on the CPU, a large 3x3 convolution in
channels_last (oneDNN's direct convolution kernels: on an AMD EPYC Zen 5 they sustained more
than ``torch.mm``, so a peak of matrix multiplies alone was beaten by models' convolutions);
int8 uses ``torch._int_mm`` (int8 x int8 -> int32) and ONNX Runtime's ``MatMulInteger``
(uint8 x int8, the pairing its quantized convolutions use). The fastest kernel is the peak.

A peak is only an upper bound if it is measured well: one multiply of one size, taken while
another thread pool spins, came out below what models sustain (efficiencies of 137-180 %).
So ``measure_peak`` runs ``trials`` trials, each over a ladder of sizes (``peak_sizes``: up
to about a second a multiply, where the multiply is compute bound), each size's figure the
median of ``runs`` settled calls after this process's threads have gone idle; a trial's figure is
its best size, the peak is the best trial, and the spread of the trials is kept, so a
disturbed measurement shows. ``combine_peaks`` joins the peaks measured before and after a
model's timing the same way.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field

import torch

from rtseg.profiling.timing import settle, wait_until_idle

_FLOAT_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
TRIALS = 3


@dataclass(frozen=True)
class Peak:
    precision: str
    gflops_per_s: float | None  # None: no way to measure it here ("n/a")
    method: str
    matrix: int  # the size of the best figure
    candidates: dict = field(default_factory=dict)  # per kernel: its best GFLOP/s, or why n/a
    trials: list = field(default_factory=list)  # each trial's best GFLOP/s, in the order taken
    sizes: tuple = ()

    @property
    def spread(self) -> float | None:
        """(best - worst) / best over the trials: how far one measurement can be off."""
        values = [t for t in self.trials if t]
        return (max(values) - min(values)) / max(values) if len(values) > 1 else None

    def as_dict(self) -> dict:
        data = asdict(self)
        data["gflops_per_s"] = round(self.gflops_per_s, 2) if self.gflops_per_s else None
        data["trials"] = [round(t, 2) for t in self.trials]
        data["sizes"] = list(self.sizes)
        data["spread"] = round(self.spread, 4) if self.spread is not None else None
        return data


def peak_sizes(precision: str, device: str) -> tuple[int, ...]:
    """Square sizes tried: from where a multiply starts to be compute bound to about a second.

    On the CPU the int8 and half-precision ladders start at 512, a probe: where the CPU lacks
    the instructions (``torch._int_mm`` without VNNI or AMX runs a reference kernel at 1-2.5
    GFLOP/s on a Zen 3 EPYC: 0.11 s a 512 multiply, 16 s a 2048 one) the 2048 call projected
    from the 512 one is too long and the kernel climbs no further, instead of spending minutes
    on a figure far below the other kernel's."""
    if device == "cuda":
        return (4096, 8192)
    return (1024, 2048) if precision == "fp32" else (512, 2048, 4096)


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

    wait_until_idle()
    settle(step, window=2, tolerance=0.05, max_runs=12, max_seconds=5.0)
    return statistics.median(step() for _ in range(runs))


def _torch_matmul(precision: str, device: str, n: int, runs: int) -> tuple[float, float]:
    if precision == "int8":
        a = torch.randint(-128, 128, (n, n), dtype=torch.int8, device=device)
        b = torch.randint(-128, 128, (n, n), dtype=torch.int8, device=device)
        seconds = _time(lambda: torch._int_mm(a, b), device, runs)
    else:
        a = torch.randn(n, n, dtype=_FLOAT_DTYPES[precision], device=device)
        b = torch.randn(n, n, dtype=_FLOAT_DTYPES[precision], device=device)
        seconds = _time(lambda: torch.mm(a, b), device, runs)
    return 2 * n ** 3 / seconds / 1e9, seconds


_CONV_CHANNELS = 256


def _torch_conv(precision: str, device: str, n: int, runs: int) -> tuple[float, float]:
    """A 3x3, 256 -> 256 channel convolution on an (n/8) x (n/8) map, channels_last (n: the
    ladder's matrix size; 1024 is 19 GFLOPs a call, as long as that multiply's 2)."""
    side = max(8, n // 8)
    dtype = _FLOAT_DTYPES[precision]
    x = torch.randn(1, _CONV_CHANNELS, side, side, dtype=dtype, device=device)
    w = torch.randn(_CONV_CHANNELS, _CONV_CHANNELS, 3, 3, dtype=dtype, device=device)
    x, w = x.contiguous(memory_format=torch.channels_last), w.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        seconds = _time(lambda: torch.nn.functional.conv2d(x, w, padding=1), device, runs)
    return 2 * side * side * _CONV_CHANNELS * _CONV_CHANNELS * 9 / seconds / 1e9, seconds


def _onnxruntime_int8_matmul(n: int, runs: int, threads: int | None) -> tuple[float, float]:
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
    del session  # its threads end here, before the next figure is timed
    return 2 * n ** 3 / seconds / 1e9, seconds


def _kernels(precision: str, device: str, threads: int | None) -> dict:
    """name -> (method, ``measure(n, runs)`` -> (GFLOP/s, median seconds of one multiply))."""
    kernels = {"torch": ("torch._int_mm" if precision == "int8" else "torch.mm",
                         lambda n, runs: _torch_matmul(precision, device, n, runs))}
    if precision == "int8" and device == "cpu":
        kernels["onnxruntime"] = ("onnxruntime MatMulInteger (u8 x s8)",
                                  lambda n, runs: _onnxruntime_int8_matmul(n, runs, threads))
    if precision in _FLOAT_DTYPES and device == "cpu":
        kernels["conv"] = ("torch conv2d 3x3 256ch channels_last", lambda n, runs: _torch_conv(precision, device, n, runs))
    return kernels


def _no_kernel(exc: Exception) -> str:
    return f"n/a: {str(exc).splitlines()[0][:120]}"


def measure_peak(precision: str = "fp32", device: str = "cpu", *, matrix: int | None = None, runs: int = 5,
                 threads: int | None = None, trials: int = TRIALS, sizes: tuple[int, ...] | None = None,
                 longest_call_s: float = 1.2) -> Peak:
    """The best GFLOP/s of square multiplies in ``precision``: ``trials`` trials over ``sizes``
    (default ``peak_sizes``; ``matrix`` tries that one size only), each size the median of ``runs``
    calls; a kernel climbs to the next size only while a call there, projected from this size's
    (the work grows as n^3), would take at most ``longest_call_s``.

    Uses PyTorch's current thread count (``measure_speed`` sets it to the run's) and ``threads``
    ONNX Runtime threads. Returns a ``Peak`` with ``gflops_per_s=None`` and the reason in
    ``candidates`` when no kernel exists.
    """
    if precision not in (*_FLOAT_DTYPES, "int8"):
        raise ValueError(f"unknown precision {precision!r}")
    if trials < 1 or runs < 1:
        raise ValueError("trials and runs must be positive")
    sizes = (matrix,) if matrix else tuple(sorted(sizes or peak_sizes(precision, device)))
    kernels = _kernels(precision, device, threads)
    best: dict[str, tuple[float, int]] = {}
    failed: dict[str, str] = {}
    trial_values: list[float] = []
    for _ in range(trials):
        trial = 0.0
        for name, (_, measure) in kernels.items():
            for n, larger in zip(sizes, (*sizes[1:], None)):
                if name in failed:
                    break
                try:
                    value, seconds = measure(n, runs)
                except (RuntimeError, NotImplementedError) as exc:  # torch: no kernel for this dtype here
                    failed[name] = _no_kernel(exc)
                    break
                except Exception as exc:  # onnxruntime's errors derive from Exception only
                    if name == "torch":
                        raise
                    failed[name] = _no_kernel(exc)
                    break
                trial = max(trial, value)
                if value > best.get(name, (0.0, 0))[0]:
                    best[name] = (value, n)
                if larger and seconds * (larger / n) ** 3 > longest_call_s:  # the next call, projected
                    break
        if trial:
            trial_values.append(trial)
    candidates = {**{k: round(v[0], 2) for k, v in best.items()}, **failed}
    if not best:
        return Peak(precision, None, "n/a", sizes[-1], candidates, [], sizes)
    name = max(best, key=lambda k: best[k][0])
    return Peak(precision, best[name][0], kernels[name][0], best[name][1], candidates, trial_values, sizes)


def combine_peaks(*peaks: Peak) -> Peak:
    """One peak from measurements of the same precision (before and after a timing): the best
    of them, with every trial kept for the spread, and each kernel's best figure."""
    measured = [p for p in peaks if p.gflops_per_s]
    if not measured:
        return peaks[0]
    best = max(measured, key=lambda p: p.gflops_per_s)
    candidates = dict(best.candidates)
    for peak in measured:
        for key, value in peak.candidates.items():
            if isinstance(value, float) and value > _as_float(candidates.get(key)):
                candidates[key] = value
    return Peak(best.precision, best.gflops_per_s, best.method, best.matrix, candidates,
                [t for p in peaks for t in p.trials], best.sizes)


def _as_float(value) -> float:
    return value if isinstance(value, float) else 0.0
