"""``rtseg`` command line: one sub-command per module in ``rtseg/commands``.

Each command module defines ``add_parser(subparsers)`` (cheap: no heavy imports at module
level) and ``run(args) -> int``. A user mistake raises ``RtsegError`` and is printed as one
line, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from rtseg.errors import RtsegError

# name -> module; the order is the order of ``rtseg --help``.
COMMANDS = {
    "models": "rtseg.commands.models",
    "flops": "rtseg.commands.flops",
    "demo": "rtseg.commands.demo",
    "benchmark": "rtseg.commands.benchmark",
    "report": "rtseg.commands.report",
    "synth": "rtseg.commands.synth",
    "train": "rtseg.commands.train",
    "evaluate": "rtseg.commands.evaluate",
    "score": "rtseg.commands.score",
    "predict": "rtseg.commands.predict",
    "speed": "rtseg.commands.speed",
    "export": "rtseg.commands.export",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rtseg", description="Real-time semantic segmentation benchmark: models, training, evaluation, cost, speed, export and reports.")
    from rtseg import __version__

    parser.add_argument("--version", action="version", version=f"rtseg {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMANDS.values():
        importlib.import_module(module_name).add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except RtsegError as exc:
        print(f"rtseg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rtseg {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
