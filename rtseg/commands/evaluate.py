"""``rtseg evaluate --checkpoint CKPT --data ROOT [--split val] [--size HxW] [--json]``."""

from __future__ import annotations

import argparse

from rtseg.commands.arguments import input_size_argument, positive_int, print_json
from rtseg.commands.common import add_model_arguments, model_from_args
from rtseg.metrics import format_table
from rtseg.options import TRAIN_PRECISIONS
from rtseg.runtime import resolve_device
from rtseg.training.evaluator import build_eval_dataset, evaluate

METRIC_KEYS = ("miou", "miiou", "category_miou", "category_miiou",
               "class_iou", "class_iiou", "category_iou", "category_iiou")


def add_parser(sub: argparse._SubParsersAction, help: str) -> None:
    parser = sub.add_parser("evaluate", help=help, description=help)
    add_model_arguments(parser, checkpoint=True)
    parser.add_argument("--data", required=True, help="Cityscapes root (leftImg8bit/, gtFine/)")
    parser.add_argument("--split", default="val", help="split to score (default val)")
    parser.add_argument("--size", type=input_size_argument, default=None,
                        help="network input HEIGHTxWIDTH, or 'native' (default: the size the run "
                             "validated at, else native); scores are always counted at the full label size")
    parser.add_argument("--batch-size", type=positive_int, default=1, help="images per forward pass (default 1)")
    parser.add_argument("--workers", type=int, default=4, help="data-loading processes (default 4)")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1")
    parser.add_argument("--precision", choices=TRAIN_PRECISIONS, default="fp32",
                        help="autocast precision (default fp32)")
    parser.add_argument("--limit", type=positive_int, help="score the first N images only")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    model, checkpoint = model_from_args(args, device)
    size = args.size
    if size is None:
        eval_size = (checkpoint or {}).get("eval_size")
        size = tuple(eval_size) if eval_size else "native"
    dataset = build_eval_dataset(args.data, args.split, None if size == "native" else size, model.mean, model.std)
    results = evaluate(model, dataset, device, precision=args.precision, batch_size=args.batch_size,
                       workers=max(0, args.workers), limit=args.limit, progress=not args.json)
    size_text = "native" if size == "native" else f"{size[0]}x{size[1]}"
    source = args.checkpoint or args.weights or "fresh weights"
    if args.json:
        print_json({"model": model.name, "checkpoint": args.checkpoint, "weights": args.weights, "split": args.split,
                    "input_size": size_text, "images": results["images"], **{k: results[k] for k in METRIC_KEYS}})
    else:
        print(f"{model.name} ({source}) on {args.split}: {results['images']} images, "
              f"input {size_text}, scored at label size\n")
        print(format_table(results))
    return 0
