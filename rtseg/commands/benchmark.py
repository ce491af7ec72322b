"""``rtseg benchmark``: the paper's comparative study (or any models) in one command.

    rtseg benchmark --models skipnet-mobilenet_v1,enet --quick --out runs/bench
    rtseg benchmark --data /path/to/cityscapes --models paper --out runs/paper

Interrupted, the same command resumes: finished models and stages are not redone.
"""

from __future__ import annotations

import argparse

from rtseg.benchmark import QUICK, BenchmarkSettings, run_benchmark
from rtseg.commands.arguments import size_argument
from rtseg.commands.common import add_allocator_argument, model_options_from_args
from rtseg.distributed import is_main_process
from rtseg.inference.backend import Backend
from rtseg.options import ENGINES, PRECISIONS


def add_parser(sub: argparse._SubParsersAction, help: str) -> None:
    parser = sub.add_parser(
        "benchmark", help=help,
        description="For each model: train (its configs/<model>.yaml, or a short schedule with --quick), "
                    "evaluate on val, count GFLOPs at 512x1024 and 360x640, time it with the speed protocol; "
                    "then write results.json, results.csv, report.md and report.html into --out. Run it again "
                    "to resume: finished stages are not redone.")
    parser.add_argument("--models", default="paper", metavar="LIST|paper|realtime|all",
                        help="comma-separated model names (skipnet-mobilenet_v1,enet; add -coarse for coarse "
                             "pre-training then fine-tuning), 'paper' (Tables 1 and 3), 'realtime' (today's "
                             "real-time models, docs/zoo.md), 'all', or keywords and names mixed: "
                             "paper,realtime (default paper)")
    parser.add_argument("--data", metavar="ROOT",
                        help="dataset folder: Cityscapes (leftImg8bit/, gtFine/, gtCoarse/ for the coarse rows), CamVid "
                             "or a folder dataset (dataset.yaml); without it a synthetic Cityscapes is generated "
                             "under --out/data")
    parser.add_argument("--dataset", choices=("cityscapes", "camvid", "folder"),
                        help="the layout of --data (default: found)")
    parser.add_argument("--quick", action="store_true",
                        help="a short CPU schedule instead of the paper's configs (the report lists what it cuts)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (resumes what is there)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda (default auto)")
    parser.add_argument("--engine", default="eager", choices=ENGINES,
                        help="inference engine for the timing (default eager)")
    parser.add_argument("--precision", default="fp32", choices=PRECISIONS,
                        help="precision for the timing (default fp32); training follows the configs")
    parser.add_argument("--threads", type=int, help="CPU threads for the timing (default: PyTorch's)")
    add_allocator_argument(parser)
    parser.add_argument("--speed-size", type=size_argument, metavar="HxW",
                        help="timing input size (default 512x1024; 256x512 with --quick)")
    parser.add_argument("--configs", metavar="DIR", help="folder of the training configs (default: configs/)")
    parser.add_argument("--option", "-O", action="append", default=[], metavar="KEY=VALUE",
                        help="model option for every model, e.g. -O width=0.5")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bars")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.quick and is_main_process():
        print_quick_cuts(synthetic=args.data is None, speed_size=args.speed_size)
    settings = BenchmarkSettings(data=args.data, dataset=args.dataset, quick=args.quick, device=args.device,
                                 backend=Backend(args.engine, args.precision, threads=args.threads,
                                                 allocator=args.allocator),
                                 speed_size=args.speed_size, options=model_options_from_args(args),
                                 configs_dir=args.configs, progress=args.progress)
    return report_outcome(run_benchmark(args.models, args.out, settings))


def print_quick_cuts(synthetic: bool, speed_size=None) -> None:
    print("--quick cuts, against the paper's study:")
    for line in QUICK.cuts(synthetic=synthetic, speed_size=speed_size):
        print(f"  - {line}")
    print(flush=True)


def report_outcome(result) -> int:
    """Print where the results are; 1 when a stage failed (the rest of the study is still written)."""
    if not result.is_main:
        return 0
    print(f"results: {result.json_path} and {result.csv_path}")
    for path in result.report_paths:
        print(f"report: {path}")
    for key, stage, error in result.failures:
        print(f"failed: {key} ({stage}): {error}")
    return 1 if result.failures else 0
