"""``rtseg report DIR``: render a benchmark's report again from its results.json."""

from __future__ import annotations

import argparse

from rtseg.benchmark import render_report


def add_parser(sub: argparse._SubParsersAction, help: str) -> None:
    parser = sub.add_parser("report", help=help, description=help)
    parser.add_argument("dir", metavar="DIR", help="a folder written by 'rtseg benchmark'")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    for path in render_report(args.dir):
        print(f"report: {path}")
    return 0
