"""``rtseg flops``: parameters, GMACs and GFLOPs (2 x GMACs, the paper's convention).

A network with training-only heads (auxiliary, boundary, detail) gets two parameter counts:
those its eval output depends on, which is what papers report, and all of them.
"""

from __future__ import annotations

import argparse

from rtseg.commands.arguments import print_json, size_argument
from rtseg.commands.common import add_model_arguments, model_from_args
from rtseg.profiling.flops import measure_cost


def add_parser(sub: argparse._SubParsersAction, help: str) -> None:
    parser = sub.add_parser("flops", help=help, description=help)
    add_model_arguments(parser)
    parser.add_argument("--size", type=size_argument, default=(512, 1024), help="HEIGHTxWIDTH (default 512x1024)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    model, _ = model_from_args(args)
    cost = measure_cost(model, args.size)
    if args.json:
        print_json({"model": model.name, **cost.as_dict()})
    else:
        params = f"{cost.params / 1e6:.2f}M parameters"
        if cost.eval_params != cost.params:
            params = (f"{cost.eval_params / 1e6:.2f}M parameters at eval ({cost.params / 1e6:.2f}M with the "
                      "training-only heads)")
        print(f"{model.name} at {cost.height}x{cost.width}: {params}, "
              f"{cost.gmacs:.2f} GMACs = {cost.gflops:.2f} GFLOPs (1 multiply-add = 2 FLOPs)")
    return 0
