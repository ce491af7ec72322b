"""What keeping freed memory is worth: each PyTorch setting with glibc's defaults against
``reuse``, side by side in one run.

    python benchmarks/bench_allocator.py                       # SkipNet-MobileNet, SkipNet-ShuffleNet, ENet
    python benchmarks/bench_allocator.py --models enet --settings plain --rounds 5
    python benchmarks/bench_allocator.py --huge-pages      # and reuse with PyTorch's huge pages

Why processes and not the protocol's blocks: glibc's state depends on the process's past (a
``reuse`` block leaves free chunks in the heap that a later ``system`` block is served from),
so the two policies cannot take turns inside one process. Each figure is therefore the
plainest program (``rtseg.profiling.plain_program``: one model, one loop, a fresh process)
started with or without glibc's keep-freed-memory environment (``rtseg.memory.ENVIRONMENT``),
the two policies taking turns round after round (the order swapped every round), so that a
load change hits both alike. ``--huge-pages`` adds a third variant, ``reuse`` with
``THP_MEM_ALLOC_ENABLE=1`` (PyTorch then asks the kernel for 2 MiB pages for every tensor of
2 MiB or more, fewer TLB misses for memory-bound layers; read once when torch loads, so only a
process's environment can set it). What it prints, as Markdown: per (model, setting) the
median end-to-end FPS of each variant and its ratio to ``system``, with the ratio of every
round beside it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from rtseg.atomic import atomic_open
from rtseg.commands.arguments import size_argument
from rtseg.profiling import plain_program
from rtseg.profiling.hardware import describe

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_speed import SETTINGS  # noqa: E402  (the settings' definitions, one place)

DEFAULT_MODELS = ("skipnet-mobilenet_v1", "skipnet-shufflenet_v1", "enet")
# name -> (rtseg.memory policy, variables added to the process's environment)
VARIANTS = {"system": ("system", {}), "reuse": ("reuse", {}),
            "reuse+thp": ("reuse", {"THP_MEM_ALLOC_ENABLE": "1"})}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated model names")
    parser.add_argument("--settings", default="plain,eager-fp32",
                        help="comma-separated PyTorch settings of bench_speed.py (default plain,eager-fp32)")
    parser.add_argument("--size", type=size_argument, default=(512, 1024))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3, help="times each policy is started (default 3)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per process (default 20)")
    parser.add_argument("--huge-pages", action="store_true",
                        help="also time reuse with PyTorch's transparent huge pages (THP_MEM_ALLOC_ENABLE=1)")
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
    args.variants = ["system", "reuse"] + (["reuse+thp"] if args.huge_pages else [])
    return args


def program_settings(setting: str) -> dict | None:
    """The plain program's settings: None is ``model.eval()`` as a user writes it."""
    return None if setting == "plain" else SETTINGS[setting]


def measure(args) -> list[dict]:
    import torch
    from tqdm import tqdm

    x = torch.randn(1, 3, *args.size)
    entries = [dict(model=m, setting=s, fps={v: [] for v in args.variants}) for m in args.models
               for s in args.settings]
    with tqdm(total=len(entries) * args.rounds * len(args.variants), desc="processes", file=sys.stderr) as progress:
        for round_number in range(args.rounds):
            for entry in entries:
                order = args.variants if round_number % 2 == 0 else args.variants[::-1]
                for variant in order:
                    policy, environment = VARIANTS[variant]
                    seconds = plain_program.plain_torch_seconds(entry["model"], x, args.threads, program_settings(entry["setting"]),
                                                  runs=args.runs, allocator=policy, environment=environment)
                    entry["fps"][variant].append(1.0 / statistics.median(seconds))
                    progress.update()
    for entry in entries:
        system = entry["fps"]["system"]
        entry["median_fps"] = {v: statistics.median(fps) for v, fps in entry["fps"].items()}
        entry["ratio"] = {v: entry["median_fps"][v] / entry["median_fps"]["system"] for v in args.variants[1:]}
        entry["rounds"] = {v: [f / s for s, f in zip(system, entry["fps"][v])] for v in args.variants[1:]}
    return entries


def report(entries: list[dict], args, hardware: dict) -> str:
    lines = [f"Allocator policy, end-to-end FPS at {args.size[0]}x{args.size[1]}, {args.threads} threads, "
             f"{hardware.get('cpu')} ({', '.join(hardware.get('cpu_flags') or []) or 'no flags read'}); "
             f"each figure the median of {args.rounds} processes x {args.runs} runs, variants taking turns:", ""]
    others = args.variants[1:]
    lines.append("| model | setting | " + " | ".join(f"{v} FPS" for v in args.variants) + " | "
                 + " | ".join(f"{v} / system (per round)" for v in others) + " |")
    lines.append("|---|---|" + "---|" * (len(args.variants) + len(others)))
    for e in entries:
        fps = " | ".join(f"{e['median_fps'][v]:.2f}" for v in args.variants)
        ratios = " | ".join(f"{e['ratio'][v]:.2f}x ({', '.join(f'{r:.2f}' for r in e['rounds'][v])})" for v in others)
        lines.append(f"| {e['model']} | {e['setting']} | {fps} | {ratios} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
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
