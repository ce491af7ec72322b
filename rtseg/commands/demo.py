"""``rtseg demo`` (what ``make demo`` runs): the comparative study on the synthetic dataset.

Generates the synthetic Cityscapes-layout dataset under ``--out`` and runs ``rtseg benchmark
--quick`` over the paper's seven fine-only Table 1 models, ENet, and two of today's real-time
models (Fast-SCNN, PIDNet-S): train, evaluate, count,
time, then write the report. Interrupted, it resumes where it stopped.
"""

from __future__ import annotations

import argparse
import time

from rtseg.benchmark import DEMO_MODELS, BenchmarkSettings, run_benchmark
from rtseg.benchmark.results import disk_usage
from rtseg.benchmark.tables import eval_params, model_label, num, pct
from rtseg.commands.benchmark import print_quick_cuts, report_outcome


def add_parser(sub: argparse._SubParsersAction, help: str) -> None:
    parser = sub.add_parser(
        "demo", help=help,
        description="Generate the synthetic dataset under --out and run 'rtseg benchmark --quick' over the "
                    "paper's seven fine-only Table 1 models, ENet, Fast-SCNN and PIDNet-S, then write the report. Run it again "
                    "to resume.")
    parser.add_argument("--out", default="demo", help="output folder (default ./demo)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda (default auto)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    parser.add_argument("--keep-checkpoints", action="store_true",
                        help="keep every model's training checkpoints (by default a model's are deleted once "
                             "its four stages are done: the report and a resume do not need them)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    started = time.perf_counter()
    print(f"rtseg demo: the paper's seven Table 1 models, ENet, Fast-SCNN and PIDNet-S, --quick on synthetic data, into {args.out}/")
    print_quick_cuts(synthetic=True)
    print("(the full study: rtseg benchmark --data /path/to/cityscapes --models paper --out DIR)\n", flush=True)
    result = run_benchmark(list(DEMO_MODELS), args.out, BenchmarkSettings(quick=True, device=args.device,
                                                                          progress=args.progress,
                                                                          keep_checkpoints=args.keep_checkpoints))
    print()
    print(summary_table(result.results))
    print()
    status = report_outcome(result)
    print(files_text(result.out_dir, args.keep_checkpoints))
    minutes, seconds = divmod(round(time.perf_counter() - started), 60)
    print(f"done in {minutes} min {seconds:02d} s; open {result.out_dir / 'report.html'}")
    return status


def files_text(out_dir, kept_checkpoints: bool) -> str:
    """Where the demo's files are and how large they are."""
    usage = disk_usage(out_dir)
    parts = ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in usage.items())
    note = ("" if kept_checkpoints else "; each model's checkpoints were deleted once its stages were done "
            "(--keep-checkpoints keeps them)")
    return f"{out_dir}/ holds {sum(usage.values()) / 1e6:.1f} MB: {parts}{note}"


def summary_table(results: dict) -> str:
    """A few columns per model for the terminal; the report has the full tables."""
    header = ("model", "mIoU %", "params M", "GFLOPs 512x1024", "FPS end-to-end")
    rows = [header]
    for model in results["models"]:
        evaluation, cost, speed = model.get("evaluate") or {}, model.get("cost") or {}, model.get("speed") or {}
        rows.append((model_label(model), pct(evaluation.get("miou")),
                     num(eval_params(cost) / 1e6, 2) if cost else "-", num((cost.get("gflops") or {}).get("512x1024")),
                     (num(speed.get("fps")) + f" at {speed['size']}") if speed else "-"))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in
                               enumerate(zip(row, widths))) for row in rows)
