"""Timing primitives of the speed protocol: warm-up until settled, one run timed alone, statistics.

``settle`` runs a step until its timings settle; ``stopwatch`` times one call (``time.perf_counter``
on CPU; CUDA events after ``torch.cuda.synchronize`` on a GPU); ``TimingStats`` summarises a
list of timings. ``rtseg.profiling.speed`` (the model) and ``rtseg.profiling.roofline`` (the
machine's peak) both time with these, under the same rules.

``time_in_blocks`` times several steps side by side without letting one disturb another: each
step runs a block of back-to-back calls (as a deployed program's loop does), and before each
block ``wait_until_idle`` waits until this process's own threads have stopped using the CPU.
Thread pools keep spinning after their work is done (ONNX Runtime's intra-op workers for
some 20-40 ms, OpenMP's for a few ms), and a spinning pool of one figure takes cores from the
next figure's run if that starts at once; measured in docs/speed.md ("The protocol").
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import numpy as np
import torch

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


@dataclass(frozen=True)
class Idle:
    waited_s: float
    idle: bool  # False: the process was still busy when ``max_seconds`` ran out


def wait_until_idle(max_seconds: float = 1.0, slice_seconds: float = 0.005, busy_fraction: float = 0.05, *,
                    clock: Callable[[], float] = time.process_time,
                    wall: Callable[[], float] = time.perf_counter,
                    sleep: Callable[[float], None] = time.sleep) -> Idle:
    """Sleep in ``slice_seconds`` slices until one slice in which this process's threads used
    less than ``busy_fraction`` of one core (``clock`` is the CPU time of all its threads);
    give up after ``max_seconds``. The other processes of the machine are not ours to wait for."""
    began = wall()
    while True:
        cpu_before, wall_before = clock(), wall()
        sleep(slice_seconds)
        used, elapsed = clock() - cpu_before, wall() - wall_before
        if used <= busy_fraction * max(elapsed, slice_seconds):
            return Idle(wall() - began, True)
        if wall() - began >= max_seconds:
            return Idle(wall() - began, False)


def time_in_blocks(steps: Sequence[Callable[[], float]], runs: int, block: int = 5,
                   before_block: Callable[[], object] | None = wait_until_idle, lead_in: int = 1) -> list[list[float]]:
    """``runs`` timings of each step, taken in blocks of ``block`` consecutive calls, the steps
    in turn (A A A, B B B, A A A, ...), ``before_block()`` (waiting until idle) before each block
    and ``lead_in`` untimed calls at its start (they wake the step's threads, which slept while
    the others ran: a program's loop does not wait for them).

    Blocks keep the steps apart (no step's threads spin while another runs) while the turns
    still spread a change of the machine's load over all steps alike."""
    if runs < 1 or block < 1 or lead_in < 0:
        raise ValueError("runs and block must be positive, lead_in not negative")
    times: list[list[float]] = [[] for _ in steps]
    while len(times[0]) < runs:
        count = min(block, runs - len(times[0]))
        for record, step in zip(times, steps):
            if before_block is not None:
                before_block()
            for _ in range(lead_in):
                step()
            record.extend(step() for _ in range(count))
    return times


def settled_medians(steps: Sequence[Callable[[], float]], runs: int = 10, block: int = 5,
                    max_seconds: float = 20.0) -> list[float]:
    """Median seconds of each step: each warmed up until settled (short windows: a choice made
    while building an engine, not a reported figure), then timed side by side in blocks."""
    for step in steps:
        settle(step, window=3, tolerance=0.05, max_runs=15, max_seconds=max_seconds)
    return [statistics.median(t) for t in time_in_blocks(steps, runs, block)]


def time_interleaved(steps: Sequence[Callable[[], float]], runs: int) -> list[list[float]]:
    """``runs`` timings of each step, taken in turn (A, B, A, B, ...)."""
    times: list[list[float]] = [[] for _ in steps]
    for _ in range(runs):
        for record, step in zip(times, steps):
            record.append(step())
    return times
