"""``rtseg models``: the model grid with parameters and GFLOPs."""

from __future__ import annotations

import argparse

from rtseg.commands.arguments import print_json, size_argument
from rtseg.models import create_model, list_models, model_names
from rtseg.profiling.flops import count_flops, count_params

DEFAULT_SIZES = ((512, 1024), (360, 640))


def add_parser(sub: argparse._SubParsersAction, help: str) -> None:
    parser = sub.add_parser("models", help=help, description=help)
    parser.add_argument("--size", type=size_argument, action="append",
                        help="HEIGHTxWIDTH to count GFLOPs at (repeatable; default 512x1024 and 360x640)")
    parser.add_argument("--names", action="store_true", help="print model names only, one a line")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run)


def grid_costs(sizes=DEFAULT_SIZES) -> list[dict]:
    """One row per model: name, parameters and GFLOPs at each size."""
    rows = []
    for name in model_names():
        model = create_model(name)
        row = {"model": name, "params": count_params(model)}
        for height, width in sizes:
            row[f"gflops_{height}x{width}"] = count_flops(model, (height, width)) / 1e9
        rows.append(row)
    return rows


def format_grid(rows: list[dict], sizes) -> str:
    headers = ["model", "params (M)"] + [f"GFLOPs {h}x{w}" for h, w in sizes]
    lines = [headers]
    for row in rows:
        lines.append([row["model"], f"{row['params'] / 1e6:.2f}"]
                     + [f"{row[f'gflops_{h}x{w}']:.1f}" for h, w in sizes])
    widths = [max(len(line[i]) for line in lines) for i in range(len(headers))]
    out = []
    for k, line in enumerate(lines):
        out.append("  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths))))
        if k == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    if args.names:
        print("\n".join(list_models()["models"]))
        return 0
    sizes = tuple(args.size) if args.size else DEFAULT_SIZES
    rows = grid_costs(sizes)
    if args.json:
        print_json({**list_models(), "costs": rows})
    else:
        listing = list_models()
        print(f"encoders: {', '.join(listing['encoders'])}")
        print(f"decoders: {', '.join(listing['decoders'])}")
        print(f"whole models: {', '.join(listing['baselines']) or '-'}\n")
        print(format_grid(rows, sizes))
        print("\nGFLOPs = 2 x multiply-adds (the RTSeg paper's convention), counted by torch.utils.flop_counter.")
    return 0
