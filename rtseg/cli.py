"""``rtseg`` command line: one sub-command per module in ``rtseg/commands``, imported only when run.

``COMMANDS`` names each command's module and one-line help, so ``rtseg --help`` lists them
without importing torch; ``rtseg NAME ...`` imports that one module, whose ``add_parser(sub,
help)`` declares its options and whose ``run(args) -> int`` calls the library and prints.

A user's mistake raises ``RtsegError`` and is printed as one line; ``rtseg --traceback NAME``
(or ``RTSEG_TRACEBACK=1``) prints the whole traceback instead, with its causes, for a bug report.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from typing import NamedTuple

from rtseg import __version__
from rtseg.errors import RtsegError


class Command(NamedTuple):
    module: str
    help: str
    # Environment defaults the command's process needs before torch loads (the user's own win).
    environment: tuple[tuple[str, str], ...] = ()


# The demo shares a small CPU between training, data loading and evaluation: idle OpenMP threads
# must sleep, not spin (on the project's shared 2-core machine, 100 quick training steps of
# SkipNet-MobileNet took 156 s with the default policy, 16 s with PASSIVE). OpenMP reads the
# variable once, when torch loads, so it is set before the command's module is imported.
_SLEEPING_OPENMP = (("OMP_WAIT_POLICY", "PASSIVE"),)


# The order is the order of ``rtseg --help``.
COMMANDS = {
    "models": Command("rtseg.commands.models", "list encoders, decoders and models with their cost"),
    "flops": Command("rtseg.commands.flops", "count parameters and GFLOPs of a model at an input size"),
    "demo": Command("rtseg.commands.demo", "the comparative study on the built-in synthetic dataset (make demo)",
                    _SLEEPING_OPENMP),
    "benchmark": Command("rtseg.commands.benchmark",
                         "train, evaluate, count and time models; write the paper's tables, plots and pictures"),
    "report": Command("rtseg.commands.report", "re-render a benchmark's report.md and report.html from its results.json"),
    "synth": Command("rtseg.commands.synth", "write a synthetic street-scene dataset (Cityscapes, CamVid or folder layout)"),
    "data": Command("rtseg.commands.data", "check a dataset: every label read once, problems file by file, class weights"),
    "train": Command("rtseg.commands.train", "train a model from a YAML config (torchrun -m rtseg train for several GPUs)"),
    "evaluate": Command("rtseg.commands.evaluate", "score a checkpoint on a dataset (Cityscapes: class/category IoU and iIoU)"),
    "score": Command("rtseg.commands.score", "score prediction PNGs against a dataset's ground truth (Cityscapes: official)"),
    "predict": Command("rtseg.commands.predict", "segment images or a video: test-server PNGs, colour maps, overlays"),
    "speed": Command("rtseg.commands.speed", "measure FPS (model only and end-to-end) with a fixed protocol"),
    "export": Command("rtseg.commands.export", "export a model to ONNX (optionally int8), checked against PyTorch"),
}


def _command_in(argv: list[str]) -> str | None:
    """The sub-command named on the command line (the first word that is one), if any."""
    return next((word for word in argv if word in COMMANDS), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; ``command``'s module is imported for its options, the others only listed."""
    parser = argparse.ArgumentParser(
        prog="rtseg", description="Real-time semantic segmentation benchmark: models, training, evaluation, cost, "
                                  "speed, export and reports.")
    parser.add_argument("--version", action="version", version=f"rtseg {__version__}")
    parser.add_argument("--traceback", action="store_true",
                        help="on an error print the full traceback, not one line (also RTSEG_TRACEBACK=1)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, spec in COMMANDS.items():
        if name == command:
            for key, value in spec.environment:
                os.environ.setdefault(key, value)
            importlib.import_module(spec.module).add_parser(sub, spec.help)
        else:
            sub.add_parser(name, help=spec.help, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command_in(argv)).parse_args(argv)
    show_traceback = args.traceback or os.environ.get("RTSEG_TRACEBACK", "") not in ("", "0")
    try:
        return int(args.run(args) or 0)
    except RtsegError as exc:
        if show_traceback:
            traceback.print_exc()
        else:
            print(f"rtseg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rtseg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
