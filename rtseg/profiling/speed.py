"""Measured speed with one documented protocol: warm up until settled, then time, then summarise.

Protocol (``measure_speed``):

1. The engine prepares the model (eval mode; batch norm folded where the engine allows;
   see ``rtseg.inference``) and builds two runners on the same weights: *model only*
   (normalised image tensor in, logits out) and *end-to-end* (the same tensor in, the
   ``[N,H,W]`` label map out: forward pass plus argmax over classes).
2. Warm-up: each runner runs until its timings settle, i.e. the median of the last
   ``window`` runs differs from the median of the ``window`` before by less than
   ``tolerance`` (5 %), or ``max_warmup`` runs (50) or ``max_warmup_seconds`` (60 s) have
   passed (then ``settled`` is False and the report says so).
3. At least 20 timed runs of each, alternating model-only and end-to-end, so a change in
   the machine's load (a shared CPU) hits both figures alike. Each run is timed alone,
   with ``time.perf_counter`` on CPU and CUDA events (after ``torch.cuda.synchronize``) on
   a GPU.
4. Statistics per figure: latency median, p90, mean, std, min, max (ms); FPS = batch /
   latency, with median, p10 (the FPS of the p90 latency), mean and std.
5. Roofline: the machine's matrix-multiply peak for the precision, measured in the same
   run (``rtseg.profiling.roofline``); efficiency = GFLOPs x model-only FPS / peak.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

MIN_RUNS = 20


@dataclass(frozen=True)
class TimingStats:
    """Latency (ms) and throughput (images/s) of ``runs`` timed calls on ``batch`` images each."""

    runs: int
    batch: int
    latency_median_ms: float
    latency_p90_ms: float
    latency_mean_ms: float
    latency_std_ms: float
    latency_min_ms: float
    latency_max_ms: float
    fps_median: float
    fps_p10: float  # the FPS of the p90 latency: 90 % of runs were at least this fast
    fps_mean: float
    fps_std: float

    @classmethod
    def from_seconds(cls, seconds: Sequence[float], batch: int = 1) -> "TimingStats":
        if not seconds:
            raise ValueError("no timed runs")
        latency = np.asarray(seconds, dtype=np.float64) * 1e3
        fps = batch * 1e3 / latency
        return cls(runs=len(latency), batch=batch,
                   latency_median_ms=float(np.median(latency)), latency_p90_ms=float(np.percentile(latency, 90)),
                   latency_mean_ms=float(latency.mean()), latency_std_ms=float(latency.std(ddof=1)) if len(latency) > 1 else 0.0,
                   latency_min_ms=float(latency.min()), latency_max_ms=float(latency.max()),
                   fps_median=float(np.median(fps)), fps_p10=float(np.percentile(fps, 10)),
                   fps_mean=float(fps.mean()), fps_std=float(fps.std(ddof=1)) if len(fps) > 1 else 0.0)

    def as_dict(self) -> dict:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


@dataclass(frozen=True)
class WarmUp:
    runs: int
    settled: bool
    last_median_ms: float


def settle(step: Callable[[], float], *, window: int = 5, tolerance: float = 0.05, max_runs: int = 50,
           max_seconds: float | None = None) -> WarmUp:
    """Call ``step`` (one run, returns its seconds) until the timings settle; see the module docstring.

    Settled means: the median of the last ``window`` runs is within ``tolerance`` (relative)
    of the median of the ``window`` runs before. At most ``max_runs`` calls, and no new call
    once the recorded runs add up to ``max_seconds`` (a busy machine may never settle).
    """
    if window < 1 or max_runs < 1:
        raise ValueError("window and max_runs must be positive")
    times: list[float] = []
    while len(times) < max_runs and (max_seconds is None or sum(times) < max_seconds):
        times.append(step())
        if len(times) >= 2 * window:
            last = statistics.median(times[-window:])
            before = statistics.median(times[-2 * window:-window])
            if abs(last - before) <= tolerance * before:
                return WarmUp(len(times), True, last * 1e3)
    return WarmUp(len(times), False, statistics.median(times[-window:]) * 1e3)


def stopwatch(fn: Callable[[torch.Tensor], object], x: torch.Tensor, device: str = "cpu") -> Callable[[], float]:
    """A step for ``settle``/timing: one call of ``fn(x)``, its wall time in seconds.

    On CUDA, pending work is synchronised first and the call is bracketed by CUDA events,
    so the time is the GPU's, not the launch's.
    """
    if device == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def step() -> float:
            torch.cuda.synchronize()
            start.record()
            fn(x)
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        return step

    def step() -> float:
        began = time.perf_counter()
        fn(x)
        return time.perf_counter() - began
    return step


def time_interleaved(steps: Sequence[Callable[[], float]], runs: int) -> list[list[float]]:
    """``runs`` timings of each step, taken in turn (A, B, A, B, ...)."""
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(runs):
        for record, step in zip(times, steps):
            record.append(step())
    return times


@dataclass
class SpeedResult:
    """One ``measure_speed`` run; ``as_dict()`` is what ``rtseg speed --json`` prints."""

    model: str
    size: tuple[int, int]
    batch: int
    engine: str
    precision: str
    device: str
    threads: int
    gflops: float  # per image, 2 x multiply-adds
    params: int
    end_to_end: TimingStats
    model_only: TimingStats
    warmup: dict
    peak: dict | None
    hardware: dict
    settings: dict = field(default_factory=dict)

    @property
    def fps(self) -> float:
        return self.end_to_end.fps_median

    @property
    def fps_model(self) -> float:
        return self.model_only.fps_median

    @property
    def efficiency(self) -> float | None:
        """Achieved FLOP/s (GFLOPs x model-only FPS) over the matrix-multiply peak, 0..1."""
        peak = (self.peak or {}).get("gflops_per_s")
        return self.gflops * self.fps_model / peak if peak else None

    def as_dict(self) -> dict:
        peak = (self.peak or {}).get("gflops_per_s")
        return {
            "model": self.model, "size": f"{self.size[0]}x{self.size[1]}", "batch": self.batch,
            "engine": self.engine, "precision": self.precision, "device": self.device, "threads": self.threads,
            "fps": round(self.fps, 3), "fps_model": round(self.fps_model, 3),
            "latency_ms": round(self.end_to_end.latency_median_ms, 3),
            "latency_model_ms": round(self.model_only.latency_median_ms, 3),
            "gflops": round(self.gflops, 6), "params": self.params,
            "achieved_gflops_per_s": round(self.gflops * self.fps_model, 2),
            "peak_gflops_per_s": round(peak, 2) if peak else None,
            "efficiency": round(self.efficiency, 5) if self.efficiency is not None else None,
            "end_to_end": self.end_to_end.as_dict(), "model_only": self.model_only.as_dict(),
            "warmup": self.warmup, "peak": self.peak, "settings": self.settings, "hardware": self.hardware,
        }


def example_input(model: nn.Module, size: tuple[int, int], batch: int = 1, device: str = "cpu") -> torch.Tensor:
    """A normalised image batch (smooth random content in a real image's range)."""
    from rtseg.inference.calibration import model_normalisation, normalise, random_images

    mean, std = model_normalisation(model)
    return normalise(random_images(batch, size, seed=123), mean, std).to(device)


def measure_speed(model: nn.Module, size: tuple[int, int], batch: int = 1, engine: str = "eager",
                  precision: str = "fp32", threads: int | None = None, device: str = "cpu", *,
                  runs: int = MIN_RUNS, warmup_window: int = 5, warmup_tolerance: float = 0.05,
                  max_warmup: int = 50, max_warmup_seconds: float | None = 60.0, calibration=None,
                  measure_peak: bool = True, peak_matrix: int | None = None,
                  channels_last: bool | None = None, fold_bn: bool = True, subpixel: bool | None = None,
                  runners=None) -> SpeedResult:
    """Time ``model`` at ``size`` (``(H, W)``) with ``engine`` and ``precision``; see the module docstring.

    ``threads`` sets PyTorch's intra-op threads for the measurement (restored afterwards)
    and ONNX Runtime's; None keeps PyTorch's current number. ``runs`` below 20 is allowed for
    tests only: the protocol asks for 20. ``peak_matrix`` overrides the roofline's matrix size
    (tests use a small one). ``calibration`` (int8) yields normalised batches;
    ``runners`` (a ``(model_only, end_to_end)`` pair from ``rtseg.inference.build_runners``)
    skips building them again, e.g. when a benchmark measures the same setting repeatedly.
    """
    from rtseg.inference.runner import build_runners
    from rtseg.profiling.flops import count_flops, count_params
    from rtseg.profiling.hardware import describe

    previous_threads = torch.get_num_threads()
    threads = int(threads) if threads else previous_threads
    torch.set_num_threads(threads)
    try:
        if runners is None:
            runners = build_runners(model, size, batch=batch, engine=engine, precision=precision, device=device,
                                    threads=threads, calibration=calibration, channels_last=channels_last,
                                    fold_bn=fold_bn, subpixel=subpixel)
        model_runner, e2e_runner = runners
        x = example_input(model, size, batch, device)
        steps = [stopwatch(model_runner, x, device), stopwatch(e2e_runner, x, device)]
        warmups = [settle(step, window=warmup_window, tolerance=warmup_tolerance, max_runs=max_warmup,
                          max_seconds=max_warmup_seconds) for step in steps]
        model_times, e2e_times = time_interleaved(steps, runs)
        peak = None
        if measure_peak:
            from rtseg.profiling.roofline import measure_peak as matmul_peak

            peak = matmul_peak(precision, device, matrix=peak_matrix, threads=threads).as_dict()
        hardware = describe(device, threads)
    finally:
        torch.set_num_threads(previous_threads)
    return SpeedResult(
        model=getattr(model, "name", type(model).__name__), size=(int(size[0]), int(size[1])), batch=batch,
        engine=engine, precision=precision, device=device, threads=threads,
        gflops=count_flops(model, size) / 1e9, params=count_params(model),
        end_to_end=TimingStats.from_seconds(e2e_times, batch), model_only=TimingStats.from_seconds(model_times, batch),
        warmup={"model_only": asdict(warmups[0]), "end_to_end": asdict(warmups[1]),
                "window": warmup_window, "tolerance": warmup_tolerance, "max_runs": max_warmup,
                "max_seconds": max_warmup_seconds},
        peak=peak, hardware=hardware, settings=dict(model_runner.details))
