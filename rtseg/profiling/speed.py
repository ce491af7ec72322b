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

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from rtseg.inference.backend import Backend
from rtseg.inference.calibration import random_inputs
from rtseg.inference.engines import build_runners
from rtseg.profiling.flops import count_flops, count_params
from rtseg.profiling.hardware import describe
from rtseg.profiling.roofline import measure_peak as matmul_peak
from rtseg.profiling.timing import TimingStats, settle, stopwatch, time_interleaved
from rtseg.runtime import torch_threads

MIN_RUNS = 20


@dataclass(frozen=True)
class TimingProtocol:
    """How a figure is timed: at least ``runs`` timed calls after a warm-up that settles
    (median of the last ``warmup_window`` runs within ``warmup_tolerance`` of the window before,
    at most ``max_warmup`` runs or ``max_warmup_seconds``), and the matrix-multiply peak of the
    machine measured in the same run when ``measure_peak``. ``runs`` below 20 and
    ``peak_matrix`` (a smaller peak matrix) are for tests only."""

    runs: int = MIN_RUNS
    warmup_window: int = 5
    warmup_tolerance: float = 0.05
    max_warmup: int = 50
    max_warmup_seconds: float | None = 60.0
    measure_peak: bool = True
    peak_matrix: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)


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


def measure_speed(model: nn.Module, size: tuple[int, int], backend: Backend | None = None,
                  protocol: TimingProtocol | None = None, *, batch: int = 1, calibration=None,
                  runners=None) -> SpeedResult:
    """Time ``model`` at ``size`` (``(H, W)``) on ``backend`` with ``protocol``; see the module docstring.

    ``backend.threads`` sets PyTorch's intra-op threads for the measurement (the caller's are
    restored afterwards) and ONNX Runtime's; None keeps PyTorch's current number.
    ``calibration`` (int8) yields normalised batches; ``runners`` (a ``(model_only, end_to_end)``
    pair from ``rtseg.inference.build_runners`` for the same backend) skips building them again.
    """
    backend = (backend or Backend()).check()
    protocol = protocol or TimingProtocol()
    device = backend.device
    with torch_threads(backend.threads) as threads:
        backend = backend.with_options(threads=threads)
        if runners is None:
            runners = build_runners(model, size, backend, batch=batch, calibration=calibration)
        model_runner, e2e_runner = runners
        x = random_inputs(model, size, batch, seed=123, device=device)
        steps = [stopwatch(model_runner, x, device), stopwatch(e2e_runner, x, device)]
        warmups = [settle(step, window=protocol.warmup_window, tolerance=protocol.warmup_tolerance,
                          max_runs=protocol.max_warmup, max_seconds=protocol.max_warmup_seconds) for step in steps]
        model_times, e2e_times = time_interleaved(steps, protocol.runs)
        peak = None
        if protocol.measure_peak:
            peak = matmul_peak(backend.precision, device, matrix=protocol.peak_matrix, threads=threads).as_dict()
        hardware = describe(device, threads)
    return SpeedResult(
        model=getattr(model, "name", type(model).__name__), size=(int(size[0]), int(size[1])), batch=batch,
        engine=backend.engine, precision=backend.precision, device=device, threads=threads,
        gflops=count_flops(model, size) / 1e9, params=count_params(model),
        end_to_end=TimingStats.from_seconds(e2e_times, batch), model_only=TimingStats.from_seconds(model_times, batch),
        warmup={"model_only": asdict(warmups[0]), "end_to_end": asdict(warmups[1]),
                "window": protocol.warmup_window, "tolerance": protocol.warmup_tolerance,
                "max_runs": protocol.max_warmup, "max_seconds": protocol.max_warmup_seconds},
        peak=peak, hardware=hardware, settings=dict(model_runner.details))
