"""Scores -> labels on this CPU: ``argmax(1)`` against ``max(1).indices`` (rtseg's
``class_indices``), side by side, for the layouts and sizes segmentation produces.

    python benchmarks/bench_labels.py                 # 19 classes at 512x1024 and 1024x2048
    python benchmarks/bench_labels.py --threads 1 --rounds 5

Both give the same labels (tests/test_plumbing.py); this says what the choice is worth. Each
round times every case once, the cases taking turns, and each figure is the median over
rounds of a case's median time; the ratio is argmax over max(1).indices, so above 1 means
rtseg's way is faster.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch

from rtseg.data.processing import class_indices
from rtseg.profiling.hardware import describe


def _median_ms(step, tensor, runs: int) -> float:
    step(tensor)  # untimed: first touch of the output
    seconds = []
    for _ in range(runs):
        began = time.perf_counter()
        step(tensor)
        seconds.append(time.perf_counter() - began)
    return 1000 * statistics.median(seconds)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=10, help="timed calls per case and round")
    parser.add_argument("--classes", type=int, default=19)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    ways = {"argmax(1)": lambda t: t.argmax(1), "max(1).indices": class_indices}
    cases = [(size, dtype, layout) for size in ((512, 1024), (1024, 2048)) for dtype in (torch.float32, torch.bfloat16)
             for layout in (torch.contiguous_format, torch.channels_last)]
    times = {(case, way): [] for case in cases for way in ways}
    with torch.inference_mode():
        tensors = {case: torch.randn(1, args.classes, *case[0]).to(case[1]).contiguous(memory_format=case[2])
                   for case in cases}
        for _ in range(args.rounds):
            for case in cases:
                for way, step in ways.items():
                    times[case, way].append(_median_ms(step, tensors[case], args.runs))
    hardware = describe("cpu", args.threads)
    print(f"{hardware['cpu']} ({', '.join(hardware['cpu_flags'])}), {args.threads} threads, torch "
          f"{torch.__version__}, {args.classes} classes, median of {args.rounds} rounds x {args.runs} calls\n")
    print("| size | dtype | layout | argmax(1) ms | max(1).indices ms | argmax / max.indices |")
    print("|---|---|---|---|---|---|")
    for case in cases:
        slow, fast = (statistics.median(times[case, way]) for way in ways)
        layout = "NCHW" if case[2] == torch.contiguous_format else "channels_last"
        print(f"| {case[0][0]}x{case[0][1]} | {str(case[1]).removeprefix('torch.')} | {layout} | {slow:.1f} | "
              f"{fast:.1f} | {slow / fast:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
