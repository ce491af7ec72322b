"""``rtseg report DIR``: render a benchmark's report again from its results.json."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("report", help="re-render a benchmark's report.md and report.html from its results.json")
    parser.add_argument("dir", metavar="DIR", help="a folder written by 'rtseg benchmark'")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rtseg.benchmark import render_report

    for path in render_report(args.dir):
        print(f"report: {path}")
    return 0
