"""``rtseg demo``: what ``make demo`` runs. For now, the model grid with its cost."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("demo", help="the main job on the built-in synthetic dataset (make demo)")
    parser.add_argument("--out", default="demo", help="output folder (default ./demo)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rtseg.commands.models import DEFAULT_SIZES, format_grid, grid_costs

    print("rtseg model grid: parameters and GFLOPs\n")
    print(format_grid(grid_costs(DEFAULT_SIZES), DEFAULT_SIZES))
    return 0
