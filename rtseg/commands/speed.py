"""``rtseg speed``: measured FPS, model only and end-to-end, with the protocol in rtseg.profiling.speed."""

from __future__ import annotations

import argparse

from rtseg.commands.arguments import positive_int, print_json, size_argument
from rtseg.commands.common import add_allocator_argument, add_backend_arguments, add_model_arguments, backend_from_args, model_from_args
from rtseg.errors import RtsegError
from rtseg.inference.calibration import images_from_root
from rtseg.profiling.layers import KindTime, LayerProfile
from rtseg.profiling.speed import MIN_RUNS, SpeedResult, TimingProtocol, measure_speed


def add_parser(sub: argparse._SubParsersAction, help: str) -> None:
    parser = sub.add_parser("speed", help=help,
                            description="Warm up until timings settle, time at least 20 runs, report "
                                        "median/p90/mean/std of latency and FPS, the hardware, and the "
                                        "efficiency against this machine's matrix-multiply peak.")
    add_model_arguments(parser, checkpoint=True)
    parser.add_argument("--size", type=size_argument, default=(512, 1024), help="HEIGHTxWIDTH (default 512x1024)")
    parser.add_argument("--batch", type=positive_int, default=1, help="images per run (default 1)")
    add_backend_arguments(parser)
    add_allocator_argument(parser)
    parser.add_argument("--runs", type=int, default=MIN_RUNS, help=f"timed runs of each figure (at least {MIN_RUNS})")
    parser.add_argument("--calibration-data", metavar="ROOT",
                        help="int8: calibrate on images of this dataset root or folder (default: random "
                             "images, which is fine for timing but not for accuracy)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile the end-to-end run per kind of layer (ONNX Runtime's profiler or "
                             "torch.profiler): share of time, GFLOP/s and efficiency of each kind")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.runs < MIN_RUNS:
        raise RtsegError(f"--runs must be at least {MIN_RUNS} (the protocol's minimum), got {args.runs}")
    if args.calibration_data and args.precision != "int8":
        raise RtsegError("--calibration-data is for --precision int8")
    backend = backend_from_args(args)
    model, _ = model_from_args(args)
    calibration = None
    if args.calibration_data:
        calibration = images_from_root(args.calibration_data, args.size, 8 * args.batch, model.mean, model.std,
                                       args.batch)
    result = measure_speed(model, args.size, backend, TimingProtocol(runs=args.runs, profile_layers=args.profile),
                           batch=args.batch, calibration=calibration)
    print_json(result.as_dict()) if args.json else print(format_result(result))
    return 0


def format_result(result: SpeedResult) -> str:
    hw = result.hardware
    where = hw["gpu"] if result.device == "cuda" else f"{hw['cpu']}, {result.threads} threads"
    lines = [f"{result.model} at {result.size[0]}x{result.size[1]}, batch {result.batch}: "
             f"{result.engine} {result.precision} on {result.device} ({where})"]
    for label, stats in (("end-to-end (image tensor -> label map)", result.end_to_end),
                         ("model only (image tensor -> logits)   ", result.model_only)):
        lines.append(f"  {label}: {stats.fps_median:7.2f} FPS   latency median {stats.latency_median_ms:.1f} ms, "
                     f"p90 {stats.latency_p90_ms:.1f}, mean {stats.latency_mean_ms:.1f} +- "
                     f"{stats.latency_std_ms:.1f} ({stats.runs} runs)")
    line = f"  {result.gflops:.2f} GFLOPs/image -> {result.achieved_gflops_per_s:.1f} GFLOP/s achieved"
    peak = result.peak or {}
    if peak.get("gflops_per_s"):
        spread = f", trials spread {100 * peak['spread']:.0f}%" if peak.get("spread") is not None else ""
        line += (f"; {result.precision} peak {peak['gflops_per_s']:.0f} GFLOP/s ({peak['method']}, "
                 f"best of {len(peak.get('trials', []))} trials{spread}) -> ")
        line += (f"efficiency {100 * result.efficiency:.1f}%" if result.efficiency is not None
                 else "efficiency: MEASUREMENT FAULT (the model beat the peak)")
    elif result.peak is not None:
        line += f"; {result.precision} peak n/a"
    lines.append(line)
    if result.efficiency_fault:
        lines.append(f"  {result.efficiency_fault}")
    memory = result.settings.get("allocator") or {}
    if memory:
        faults = memory.get("page_faults_per_run")
        lines.append(f"  memory: {memory['policy']} ({memory['how']})"
                     + (f", {faults:.0f} page faults per timed run" if faults is not None else ""))
    lines += [f"  warning: {text}" for text in result.warnings]
    if result.layers:
        lines.append(f"  per kind of layer (end-to-end, {result.layers['runs']} profiled runs; efficiency against "
                     f"the {result.precision} peak):")
        lines += ["    " + line for line in LayerProfile(**{**result.layers, "kinds": [
            KindTime(**k) for k in result.layers["kinds"]]}).table().splitlines()]
    warm = result.warmup
    settled = all(warm[k]["settled"] for k in ("model_only", "end_to_end"))
    lines.append(f"  warm-up {warm['model_only']['runs']}+{warm['end_to_end']['runs']} runs "
                 f"({'settled' if settled else 'NOT settled: the machine is busy, compare with care'}); "
                 f"engine build {result.settings.get('build_s', 0):.1f} s; "
                 f"load average {hw['load_average_1min']} on {hw['usable_cores']} cores; "
                 f"torch {hw['versions']['torch']}, onnxruntime {hw['versions']['onnxruntime']}")
    return "\n".join(lines)
