"""``rtseg models``: the model grid with parameters and GFLOPs."""

from __future__ import annotations

import argparse

from rtseg.commands.arguments import print_json, size_argument
from rtseg.models import create_model, list_models, model_names
from rtseg.models.encoders.timm_encoder import list_timm_backbones
from rtseg.profiling.flops import count_flops, count_params

DEFAULT_SIZES = ((512, 1024), (360, 640))


def add_parser(sub: argparse._SubParsersAction, help: str) -> None:
    parser = sub.add_parser("models", help=help, description=help)
    parser.add_argument("--size", type=size_argument, action="append",
                        help="HEIGHTxWIDTH to count GFLOPs at (repeatable; default 512x1024 and 360x640)")
    parser.add_argument("--names", action="store_true", help="print model names only, one a line")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--timm", nargs="?", const="", metavar="PATTERN",
                        help="list timm's backbones usable as encoders 'timm.<name>' (name contains PATTERN, "
                             "or matches it as a wildcard), with their channels at strides 2..32")
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


def format_timm(backbones, unusable: dict[str, str]) -> str:
    lines = [["timm encoder", "/2", "/4", "/8", "/16", "/32", "pretrained tags"]]
    for b in backbones:
        lines.append([b.name] + ["-" if c is None else str(c) for c in b.levels] + [", ".join(b.tags) or "-"])
    widths = [max(len(line[i]) for line in lines) for i in range(6)]
    out = ["  ".join([line[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(line[1:6], widths[1:])] + [line[6]])
           for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    out.append(f"\n{len(backbones)} timm backbones (channels per stride; '-': the backbone has no map there).")
    if unusable:
        names = sorted(unusable)
        shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
        out.append(f"Left out (no maps at strides 8, 16 and 32, or a fixed input size; --json says why): {shown}")
    return "\n".join(out)


def run_timm(args: argparse.Namespace) -> int:
    backbones, unusable = list_timm_backbones(args.timm)
    if args.names:
        print("\n".join(b.name for b in backbones))
    elif args.json:
        print_json({"timm": [{"encoder": b.name, "channels": list(b.levels), "tags": list(b.tags)}
                             for b in backbones], "unusable": unusable})
    else:
        print(format_timm(backbones, unusable))
    return 0


def run(args: argparse.Namespace) -> int:
    if args.timm is not None:
        return run_timm(args)
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
