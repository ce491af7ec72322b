"""Measured speed with one documented protocol: warm up until settled, then time, then summarise.

Protocol (``measure_speed``):

1. The engine prepares the model (eval mode; batch norm folded where the engine allows;
   see ``rtseg.inference``) and builds two runners on the same weights: *model only*
   (normalised image tensor in, logits out) and *end-to-end* (the same tensor in, the
   ``[N,H,W]`` label map out: forward pass plus argmax over classes).
2. Roofline, before: the machine's peak for the precision (matrix multiply, convolution on CPU)
   (``rtseg.profiling.roofline``: the best of ``peak_trials`` trials over a ladder of sizes,
   with the run's threads).
3. Warm-up: each runner runs until its timings settle, i.e. the median of the last
   ``window`` runs differs from the median of the ``window`` before by less than
   ``tolerance`` (5 %), or ``max_warmup`` runs (50) or ``max_warmup_seconds`` (60 s) have
   passed (then ``settled`` is False and the report says so).
4. At least 20 timed runs of each, in blocks of ``block`` back-to-back runs (a deployed
   program's loop), the figures taking turns block by block so that a change in the
   machine's load hits both alike; before every block the process waits until its own
   threads are idle (``rtseg.profiling.timing.wait_until_idle``), so no thread pool of the
   other figure spins while this one is timed. Each run is timed alone, with
   ``time.perf_counter`` on CPU and CUDA events (after ``torch.cuda.synchronize``) on a GPU.
5. Roofline, after: the peak again; the peak is the best of all trials, and their spread is
   reported.
6. Statistics per figure: latency median, p90, mean, std, min, max (ms); FPS = batch /
   latency, with median, p10 (the FPS of the p90 latency), mean and std. Efficiency =
   GFLOPs x model-only FPS / peak; above 100 % it is no figure but a measurement fault
   (``SpeedResult.efficiency_fault``). A model-only figure slower than the end-to-end one
   on the same engine is flagged in ``warnings``.
7. Memory: from the warm-up to the end, the allocator keeps freed memory in the process
   (``backend.allocator`` "reuse", ``rtseg.memory``), as ONNX Runtime's arena does for its own
   figures; otherwise PyTorch pays a page fault for every fresh page on every run, and how many
   depends on the process's history. The page faults per timed run are recorded, and more
   than 8 MiB of them per run is flagged in ``warnings``. bf16 on a CPU without bf16
   instructions is flagged too: it is emulated.
8. With ``profile_layers``, the end-to-end runner once more under the engine's profiler: the
   share of time and the efficiency of each kind of layer (``rtseg.profiling.layers``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from rtseg.inference.backend import Backend
from rtseg.inference.calibration import random_inputs
from rtseg.inference.engines import build_runners
from rtseg.memory import FaultCounter, allocator, faults_record
from rtseg.profiling.flops import count_flops, count_params
from rtseg.profiling.hardware import describe, has_native_bf16
from rtseg.profiling.layers import profile_runner
from rtseg.profiling.roofline import Peak, combine_peaks
from rtseg.profiling.roofline import measure_peak as matmul_peak
from rtseg.profiling.timing import TimingStats, settle, stopwatch, time_in_blocks, wait_until_idle
from rtseg.runtime import torch_threads

MIN_RUNS = 20
# Model only may be this much slower than end-to-end before the result says so (noise).
SLOWER_MODEL_TOLERANCE = 0.05
# Page faults per timed run above which the result says the figure pays for fresh pages (8 MiB).
FAULTS_PER_RUN_NOTED = 2048


@dataclass(frozen=True)
class TimingProtocol:
    """How a figure is timed: at least ``runs`` timed calls after a warm-up that settles
    (median of the last ``warmup_window`` runs within ``warmup_tolerance`` of the window before,
    at most ``max_warmup`` runs or ``max_warmup_seconds``), and the matrix-multiply peak of the
    machine measured before and after the timing when ``measure_peak`` (``peak_trials`` trials
    each time). Timed runs come in blocks of ``block`` back-to-back runs per figure, after the
    process's threads are idle. ``runs`` below 20 and ``peak_matrix`` (one small peak matrix)
    are for tests only."""

    runs: int = MIN_RUNS
    block: int = 5
    warmup_window: int = 5
    warmup_tolerance: float = 0.05
    max_warmup: int = 50
    max_warmup_seconds: float | None = 60.0
    measure_peak: bool = True
    peak_trials: int = 2
    peak_matrix: int | None = None
    profile_layers: bool = False  # also profile the end-to-end runner per kind of layer (rtseg.profiling.layers)

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
    warnings: list[str] = field(default_factory=list)
    layers: dict | None = None  # the per-kind profile, when the protocol asked for it

    @property
    def fps(self) -> float:
        return self.end_to_end.fps_median

    @property
    def fps_model(self) -> float:
        return self.model_only.fps_median

    @property
    def achieved_gflops_per_s(self) -> float:
        return self.gflops * self.fps_model

    @property
    def efficiency(self) -> float | None:
        """Achieved FLOP/s (GFLOPs x model-only FPS) over the matrix-multiply peak, 0..1;
        None without a peak, or when above 1 (then ``efficiency_fault`` says why)."""
        peak = (self.peak or {}).get("gflops_per_s")
        if not peak or self.efficiency_fault:
            return None
        return self.achieved_gflops_per_s / peak

    @property
    def efficiency_fault(self) -> str | None:
        """Set when the model ran faster than the measured peak: the peak is wrong, not the model."""
        peak = (self.peak or {}).get("gflops_per_s")
        return efficiency_fault(self.achieved_gflops_per_s, peak, self.precision)

    def as_dict(self) -> dict:
        peak = (self.peak or {}).get("gflops_per_s")
        return {
            "model": self.model, "size": f"{self.size[0]}x{self.size[1]}", "batch": self.batch,
            "engine": self.engine, "precision": self.precision, "device": self.device, "threads": self.threads,
            "fps": round(self.fps, 3), "fps_model": round(self.fps_model, 3),
            "latency_ms": round(self.end_to_end.latency_median_ms, 3),
            "latency_model_ms": round(self.model_only.latency_median_ms, 3),
            "gflops": round(self.gflops, 6), "params": self.params,
            "achieved_gflops_per_s": round(self.achieved_gflops_per_s, 2),
            "peak_gflops_per_s": round(peak, 2) if peak else None,
            "peak_spread": (self.peak or {}).get("spread"),
            "efficiency": round(self.efficiency, 5) if self.efficiency is not None else None,
            "efficiency_fault": self.efficiency_fault,
            "warnings": list(self.warnings), "layers": self.layers,
            "end_to_end": self.end_to_end.as_dict(), "model_only": self.model_only.as_dict(),
            "warmup": self.warmup, "peak": self.peak, "settings": self.settings, "hardware": self.hardware,
        }


def efficiency_fault(achieved: float, peak: float | None, precision: str) -> str | None:
    """The measurement fault of an efficiency above 100 %, in words; None when there is none."""
    if not peak or achieved <= peak:
        return None
    return (f"measurement fault: the model achieved {achieved:.1f} GFLOP/s, above the measured {precision} "
            f"peak of {peak:.1f} GFLOP/s: the peak's trials ran on a busier machine or missed this CPU's fastest "
            f"kernel; no efficiency is given")


def timing_warnings(model_only: TimingStats, end_to_end: TimingStats, details: dict) -> list[str]:
    """What a reader must know to trust the figures: model only slower than end-to-end."""
    slower = model_only.latency_median_ms / end_to_end.latency_median_ms - 1
    if slower <= SLOWER_MODEL_TOLERANCE:
        return []
    why = ("the end-to-end run takes the argmax inside the last layer, before its output phases are "
           "placed (the pixel shuffle), so it skips the full-resolution logits that the model-only output must "
           "produce" if details.get("argmax_first")
           else "the engine does more for the logits than for the labels, or the timing was disturbed")
    return [f"model only ({model_only.latency_median_ms:.1f} ms) is {100 * slower:.0f} % slower than end-to-end "
            f"({end_to_end.latency_median_ms:.1f} ms) on the same engine: {why}"]


def memory_warnings(memory: dict) -> list[str]:
    """A figure that paid for fresh pages on every run, in words (``rtseg.memory``)."""
    faults = memory.get("page_faults_per_run")
    if faults is None or faults <= FAULTS_PER_RUN_NOTED:
        return []
    cost = f"{faults:.0f} page faults per timed run ({faults * 4 / 1024:.0f} MiB of pages zeroed by the kernel)"
    if memory.get("policy") == "system":
        return [f"{cost}: the allocator returns freed memory to the system between runs; --allocator reuse "
                f"(or jemalloc/tcmalloc) keeps it, as ONNX Runtime's arena does"]
    return [f"{cost} although freed memory was to be kept ({memory.get('how')}): the figure includes them"]


def layer_warnings(layers: dict | None) -> list[str]:
    """A kind of layer profiled above the machine's peak: a measurement fault (its time or its
    FLOPs are mis-attributed, or the peak is low), so its efficiency is not given as a figure."""
    if not layers:
        return []
    return [f"profile: {k['kind']} at {k['gflops_per_s']:.0f} GFLOP/s is above the measured peak "
            f"({layers['peak_gflops_per_s']:.0f} GFLOP/s): a measurement fault, its efficiency is not reported"
            for k in layers.get("kinds", []) if (k.get("efficiency") or 0) > 1.0]


def precision_warnings(precision: str, device: str, hardware: dict) -> list[str]:
    """bf16 on a CPU without bf16 instructions: oneDNN emulates it, so the figure is no bf16 figure."""
    if precision != "bf16" or device != "cpu" or has_native_bf16(hardware.get("cpu_flags") or []):
        return []
    return [f"this CPU ({hardware.get('cpu')}, {hardware.get('torch_cpu_capability')}) has no bfloat16 "
            f"instructions: PyTorch converts to and from bf16 around emulated kernels, which is usually far "
            f"slower than fp32; bf16 figures from this machine say nothing about a CPU that has them"]


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
        with allocator(backend.allocator) as memory:
            peaks = [_peak(backend, protocol, threads)] if protocol.measure_peak else []
            steps = [stopwatch(model_runner, x, device), stopwatch(e2e_runner, x, device)]
            warmups = []
            for step in steps:
                wait_until_idle()
                warmups.append(settle(step, window=protocol.warmup_window, tolerance=protocol.warmup_tolerance,
                                      max_runs=protocol.max_warmup, max_seconds=protocol.max_warmup_seconds))
            counters = [FaultCounter(step) for step in steps]
            model_times, e2e_times = time_in_blocks(counters, protocol.runs, protocol.block)
            memory_record = faults_record(memory, counters)
            if protocol.measure_peak:
                peaks.append(_peak(backend, protocol, threads))
            peak = combine_peaks(*peaks).as_dict() if peaks else None
            layers = None
            if protocol.profile_layers:
                wait_until_idle()
                layers = profile_runner(e2e_runner, x).with_peak((peak or {}).get("gflops_per_s")).as_dict()
        hardware = describe(device, threads)
    model_stats, e2e_stats = TimingStats.from_seconds(model_times, batch), TimingStats.from_seconds(e2e_times, batch)
    return SpeedResult(
        model=getattr(model, "name", type(model).__name__), size=(int(size[0]), int(size[1])), batch=batch,
        engine=backend.engine, precision=backend.precision, device=device, threads=threads,
        gflops=count_flops(model, size) / 1e9, params=count_params(model),
        end_to_end=e2e_stats, model_only=model_stats,
        warmup={"model_only": asdict(warmups[0]), "end_to_end": asdict(warmups[1]),
                "window": protocol.warmup_window, "tolerance": protocol.warmup_tolerance,
                "max_runs": protocol.max_warmup, "max_seconds": protocol.max_warmup_seconds},
        peak=peak, hardware=hardware,
        settings={**model_runner.details, "allocator": memory_record, "protocol": protocol.as_dict()},
        warnings=(timing_warnings(model_stats, e2e_stats, model_runner.details) + memory_warnings(memory_record)
                  + precision_warnings(backend.precision, device, hardware) + layer_warnings(layers)), layers=layers)


def _peak(backend: Backend, protocol: TimingProtocol, threads: int) -> Peak:
    wait_until_idle()
    return matmul_peak(backend.precision, backend.device, matrix=protocol.peak_matrix, threads=threads,
                       trials=protocol.peak_trials)
