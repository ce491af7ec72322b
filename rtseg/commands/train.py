"""``rtseg train CONFIG.yaml [--set key=value ...] [--resume] [--out DIR] [--dry-run]``.

Also the entry point of distributed training: ``torchrun --nproc_per_node=N -m rtseg train ...``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rtseg.checkpoint import load_checkpoint
from rtseg.distributed import is_main_process
from rtseg.errors import RtsegError
from rtseg.training.config import TrainConfig, apply_override, load_config
from rtseg.training.dry_run import DryRunReport, dry_run
from rtseg.training.trainer import LAST, train


def add_parser(sub: argparse._SubParsersAction, help: str) -> None:
    parser = sub.add_parser(
        "train", help=help,
        description="Train a model from a YAML config. Several GPUs or machines: "
                    "torchrun --nproc_per_node=N -m rtseg train CONFIG.yaml ...")
    parser.add_argument("config", nargs="?",
                        help="YAML config (see configs/); without it the paper's recipe plus --set; "
                             "optional with --resume --out")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config key, e.g. --set optim.lr=3e-4 --set train.batch_size=8")
    parser.add_argument("--out", help="output folder (default runs/<config name>)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint")
    parser.add_argument("--dry-run", action="store_true",
                        help="check that the config starts: one training step with random weights on a few "
                             "synthetic images, nothing written")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.dry_run:
        if args.resume:
            raise RtsegError("--dry-run starts a config afresh; it does not go with --resume")
        config = load_config(args.config, args.overrides)
        print(format_dry_run(args.config or "the default recipe", dry_run(config)))
        return 0
    if args.config:
        config = load_config(args.config, args.overrides)
        out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    elif args.resume:
        if not args.out:
            raise RtsegError("--resume needs --out DIR (the run to continue) or the run's CONFIG.yaml")
        # The run's own config, from its checkpoint (plus any --set, e.g. data.root).
        data = load_checkpoint(Path(args.out) / LAST)["config"]
        for item in args.overrides:
            apply_override(data, item)
        config = TrainConfig.from_dict(data, str(Path(args.out) / LAST))
        out = Path(args.out)
    else:
        # No file: the paper's recipe (the defaults) with the --set overrides.
        config = load_config(None, args.overrides)
        out = Path(args.out) if args.out else Path("runs") / config.model.name

    result = train(config, out, resume=args.resume)
    if result.model is not None and is_main_process():
        best = f"{100 * result.best_miou:.1f}" if result.best_miou is not None else "-"
        print(f"trained {config.model.name} for {result.steps} steps; best val mIoU {best}")
        print(f"checkpoints: {result.last_checkpoint}" + (f", {result.best_checkpoint}" if result.best_checkpoint else ""))
    return 0


def format_dry_run(name: str, report: DryRunReport) -> str:
    height, width = report.crop
    outputs = ", ".join(f"{k} {list(v)}" for k, v in report.outputs.items())
    terms = " + ".join(f"{k} {v:.4f}" for k, v in report.terms.items())
    decay = "; ".join(f"{wd:g} on {n} tensors ({values / 1e6:.2f}M values)" for wd, n, values in report.decay)
    return "\n".join([
        f"dry run of {name}: it starts (one training step on {report.device})",
        f"  model      {report.model}, {report.parameters / 1e6:.2f}M parameters, random weights",
        f"  data       {report.images} synthetic images, {height}x{width} crops",
        f"  outputs    {outputs}",
        f"  loss       {report.loss:.4f}" + (f" (terms before their weights: {terms})" if len(report.terms) > 1 else ""),
        f"  decay      {decay}",
        f"  replaced   {', '.join(report.replaced)}; nothing was written",
    ])
