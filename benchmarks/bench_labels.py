"""Scores -> labels on this CPU: ``argmax(1)`` against ``max(1).indices`` (rtseg's
``class_indices``), side by side, for the layouts and sizes segmentation produces.

    python benchmarks/bench_labels.py                 # 19 classes at 512x1024 and 1024x2048
    python benchmarks/bench_labels.py --threads 1 --rounds 5
    python benchmarks/bench_labels.py --upsampling    # the final up-sampling and the argmax, fused or not

Both give the same labels (tests/test_plumbing.py); this says what the choice is worth. Each
round times every case once, the cases taking turns, and each figure is the median over
rounds of a case's median time; the ratio is argmax over max(1).indices, so above 1 means
rtseg's way is faster.

``--upsampling`` times the last layer of SkipNet (19 -> 19 classes, 16x16 stride 8, from 64x128)
and of ENet (16 -> 19, 2x2 stride 2, from 256x512), UNet's 1x1 classifier (16 -> 19) and SegNet's
3x3 one (64 -> 19), all with 512x1024 outputs and channels_last input: the layer then
``argmax(1)``, against the labels taken inside it (``rtseg.inference.upsampled_labels``), eager
and compiled, and the fused step's chunk size; and the layer then ``argmax(1)`` in NCHW, the
layout of a plain ``model.eval()``. The ratio is channels_last unfused (eager, or compiled for
the compiled cases) over this case, so above 1 means the case is faster. Freed memory is kept in
the process while timing, as the speed protocol does (``--allocator``, ``rtseg.memory``): with
glibc's defaults the unfused step also pays the page faults of 40 MB of fresh scores per call.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time

import torch

from rtseg.data.processing import class_indices
from rtseg.inference.upsampled_labels import CHUNK_BYTES, UpsampledLabels
from rtseg.memory import allocator
from rtseg.models.decoders.base import fit_to
from rtseg.profiling.hardware import describe


def _median_ms(step, tensor, runs: int) -> float:
    step(tensor)  # untimed: first touch of the output
    seconds = []
    for _ in range(runs):
        began = time.perf_counter()
        step(tensor)
        seconds.append(time.perf_counter() - began)
    return 1000 * statistics.median(seconds)


# name -> (input channels, kernel, stride, padding, input height, input width): 512x1024 outputs;
# stride 1 is a convolution (UNet's 1x1 classifier of its 16-channel full-resolution map)
UPSAMPLERS = {"SkipNet x8": (19, 16, 8, 4, 64, 128), "ENet x2": (16, 2, 2, 0, 256, 512),
              "UNet 1x1 classifier": (16, 1, 1, 0, 512, 1024), "SegNet 3x3 classifier": (64, 3, 1, 1, 512, 1024)}
CHUNKS = (1 << 18, 1 << 20, 1 << 22)  # bytes of scores at once in the fused step


def _upsampling(args) -> int:
    import torch._inductor.config as inductor_config

    rows = []
    for name, (cin, kernel, stride, padding, height, width) in UPSAMPLERS.items():
        torch.manual_seed(0)
        layer = (torch.nn.ConvTranspose2d(cin, args.classes, kernel, stride, padding) if stride > 1
                 else torch.nn.Conv2d(cin, args.classes, kernel, padding=padding)).eval()
        nchw_layer = copy.deepcopy(layer)
        layer = layer.to(memory_format=torch.channels_last)
        size = (height * stride, width * stride)
        x = torch.randn(1, cin, height, width).contiguous(memory_format=torch.channels_last)
        nchw = x.contiguous()  # the same values in NCHW, made once: the NCHW case ignores its argument
        cases = {"layer + argmax(1)": lambda x, size: fit_to(layer(x), size).argmax(1),
                 "layer + argmax(1), NCHW": lambda _, size: fit_to(nchw_layer(nchw), size).argmax(1)}
        cases.update({f"fused, {chunk >> 10} KiB chunks": UpsampledLabels(layer, chunk) for chunk in CHUNKS})
        with torch.no_grad(), inductor_config.patch(freezing=True):
            cases["compiled layer + argmax(1)"] = torch.compile(cases["layer + argmax(1)"], fullgraph=True)
            cases["compiled fused"] = torch.compile(UpsampledLabels(layer, CHUNK_BYTES), fullgraph=True)
            reference = cases["layer + argmax(1)"](x, size)
            for case, step in cases.items():
                agree = (step(x, size) == reference).float().mean().item()
                if agree < 0.999:
                    raise SystemExit(f"{name} {case}: labels agree on {100 * agree:.2f} % of the pixels only")
            times = {case: [] for case in cases}
            with allocator(args.allocator) as memory:
                for _ in range(args.rounds):
                    for case, step in cases.items():
                        times[case].append(_median_ms(lambda t: step(t, size), x, args.runs))
        base = {"eager": statistics.median(times["layer + argmax(1)"]),
                "compiled": statistics.median(times["compiled layer + argmax(1)"])}
        for case in cases:
            ms = statistics.median(times[case])
            against = base["compiled" if case.startswith("compiled") else "eager"]
            rows.append(f"| {name} | {case} | {ms:.1f} | {against / ms:.2f}x |")
    _header(args)
    print(f"memory while timing: {args.allocator} ({memory.how})\n")
    print("| last layer | labels | ms | unfused / this |")
    print("|---|---|---|---|")
    print("\n".join(rows))
    return 0


def _header(args) -> None:
    hardware = describe("cpu", args.threads)
    print(f"{hardware['cpu']} ({', '.join(hardware['cpu_flags'])}), {args.threads} threads, torch "
          f"{torch.__version__}, {args.classes} classes, median of {args.rounds} rounds x {args.runs} calls\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--runs", type=int, default=10, help="timed calls per case and round")
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--upsampling", action="store_true",
                        help="time the final up-sampling and argmax, fused or not, instead")
    parser.add_argument("--allocator", choices=("reuse", "system"), default="reuse",
                        help="--upsampling: keep freed memory while timing (reuse, the protocol's default) or not")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.upsampling:
        return _upsampling(args)
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
    _header(args)
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
