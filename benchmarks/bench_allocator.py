"""What keeping freed memory is worth: each PyTorch setting with glibc's defaults against
``reuse``, side by side in one run.

    python benchmarks/bench_allocator.py                       # SkipNet-MobileNet, SkipNet-ShuffleNet, ENet
    python benchmarks/bench_allocator.py --models enet --settings plain --rounds 5

Why processes and not the protocol's blocks: glibc's state depends on the process's past (a
``reuse`` block leaves free chunks in the heap that a later ``system`` block is served from),
so the two policies cannot take turns inside one process. Each figure is therefore the
plainest program (``rtseg.profiling.plain_program``: one model, one loop, a fresh process)
started with or without glibc's keep-freed-memory environment (``rtseg.memory.ENVIRONMENT``),
the two policies taking turns round after round (the order swapped every round), so that a
load change hits both alike. What it prints, as Markdown: per (model, setting) the median
end-to-end FPS under each policy and their ratio, with the ratio of every round beside it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_speed import SETTINGS  # noqa: E402  (the settings' definitions, one place)

DEFAULT_MODELS = ("skipnet-mobilenet_v1", "skipnet-shufflenet_v1", "enet")
POLICIES = ("system", "reuse")


def parse_args(argv=None) -> argparse.Namespace:
    from rtseg.commands.arguments import size_argument

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated model names")
    parser.add_argument("--settings", default="plain,eager-fp32",
                        help="comma-separated PyTorch settings of bench_speed.py (default plain,eager-fp32)")
    parser.add_argument("--size", type=size_argument, default=(512, 1024))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="times each policy is started (default 3)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per process (default 20)")
    parser.add_argument("--output", help="write the results as JSON to this file")
    args = parser.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    args.settings = [s for s in args.settings.split(",") if s]
    for setting in args.settings:
        if setting not in SETTINGS or SETTINGS[setting]["engine"] == "onnxruntime":
            torch_settings = [s for s, v in SETTINGS.items() if v["engine"] != "onnxruntime"]
            parser.error(f"--settings: {setting!r} is not one of {', '.join(torch_settings)} "
                         f"(ONNX Runtime keeps its own arena: the policy does not reach it)")
    if args.rounds < 1 or args.runs < 1:
        parser.error("--rounds and --runs must be at least 1")
    return args


def program_settings(setting: str) -> dict | None:
    """The plain program's settings: None is ``model.eval()`` as a user writes it."""
    return None if setting == "plain" else SETTINGS[setting]


def measure(args) -> list[dict]:
    import torch
    from tqdm import tqdm

    from rtseg.profiling.plain_program import plain_torch_seconds

    x = torch.randn(1, 3, *args.size)
    entries = [dict(model=m, setting=s, fps={p: [] for p in POLICIES}) for m in args.models for s in args.settings]
    with tqdm(total=len(entries) * args.rounds * len(POLICIES), desc="processes", file=sys.stderr) as progress:
        for round_number in range(args.rounds):
            for entry in entries:
                order = POLICIES if round_number % 2 == 0 else POLICIES[::-1]
                for policy in order:
                    seconds = plain_torch_seconds(entry["model"], x, args.threads, program_settings(entry["setting"]),
                                                  runs=args.runs, allocator=policy)
                    entry["fps"][policy].append(1.0 / statistics.median(seconds))
                    progress.update()
    for entry in entries:
        system, reuse = entry["fps"]["system"], entry["fps"]["reuse"]
        entry["rounds"] = [r / s for s, r in zip(system, reuse)]
        entry["median_fps"] = {p: statistics.median(v) for p, v in entry["fps"].items()}
        entry["ratio"] = entry["median_fps"]["reuse"] / entry["median_fps"]["system"]
    return entries


def report(entries: list[dict], args, hardware: dict) -> str:
    lines = [f"Allocator policy, end-to-end FPS at {args.size[0]}x{args.size[1]}, {args.threads} threads, "
             f"{hardware.get('cpu')} ({', '.join(hardware.get('cpu_flags') or []) or 'no flags read'}); "
             f"each figure the median of {args.rounds} processes x {args.runs} runs, policies taking turns:",
             "", "| model | setting | system FPS | reuse FPS | reuse / system | per round |", "|---|---|---|---|---|---|"]
    for e in entries:
        rounds = ", ".join(f"{r:.2f}" for r in e["rounds"])
        lines.append(f"| {e['model']} | {e['setting']} | {e['median_fps']['system']:.2f} | "
                     f"{e['median_fps']['reuse']:.2f} | {e['ratio']:.2f}x | {rounds} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    from rtseg.atomic import atomic_open
    from rtseg.profiling.hardware import describe

    hardware = describe("cpu", args.threads)
    entries = measure(args)
    print(report(entries, args, hardware))
    if args.output:
        with atomic_open(args.output, "w", encoding="utf-8") as handle:
            json.dump({"hardware": hardware, "size": list(args.size), "threads": args.threads, "entries": entries},
                      handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
