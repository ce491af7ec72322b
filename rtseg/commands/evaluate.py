"""``rtseg evaluate --checkpoint CKPT --data ROOT [--dataset NAME] [--split val] [--size HxW] [--json]``."""

from __future__ import annotations

import argparse

from rtseg.commands.arguments import input_size_argument, positive_int, print_json
from rtseg.commands.common import add_model_arguments, model_from_args
from rtseg.commands.score import CONFUSION_KEYS
from rtseg.data.layouts import LAYOUTS, checkpoint_dataset
from rtseg.errors import RtsegError
from rtseg.metrics import format_table
from rtseg.options import TRAIN_PRECISIONS
from rtseg.runtime import resolve_device
from rtseg.training.evaluator import build_eval_dataset, evaluate

METRIC_KEYS = ("miou", "miiou", "category_miou", "category_miiou",
               "class_iou", "class_iiou", "category_iou", "category_iiou")


def add_parser(sub: argparse._SubParsersAction, help: str) -> None:
    parser = sub.add_parser("evaluate", help=help, description=help)
    add_model_arguments(parser, checkpoint=True)
    parser.add_argument("--data", required=True, help="dataset root: Cityscapes (leftImg8bit/, gtFine/), CamVid "
                                                      "(train/, trainannot/, ...) or a folder dataset (dataset.yaml)")
    parser.add_argument("--dataset", choices=tuple(LAYOUTS), help="the layout of --data (default: found)")
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
    dataset = build_eval_dataset(args.data, args.split, None if size == "native" else size, model.mean, model.std,
                                 dataset=args.dataset)
    trained_on = checkpoint_dataset(checkpoint, model.num_classes)
    if model.num_classes != dataset.info.num_classes:
        raise RtsegError(f"{args.checkpoint or model.name} predicts {model.num_classes} classes "
                         f"({trained_on.name}) but {args.data} is {dataset.info.name} with "
                         f"{dataset.info.num_classes} classes")
    results = evaluate(model, dataset, device, precision=args.precision, batch_size=args.batch_size,
                       workers=max(0, args.workers), limit=args.limit, progress=not args.json)
    size_text = "native" if size == "native" else f"{size[0]}x{size[1]}"
    source = args.checkpoint or args.weights or "fresh weights"
    keys = METRIC_KEYS if dataset.info.scoring == "cityscapes" else CONFUSION_KEYS
    if args.json:
        print_json({"model": model.name, "checkpoint": args.checkpoint, "weights": args.weights,
                    "dataset": dataset.info.name, "split": args.split, "input_size": size_text,
                    "images": results["images"], **{k: results[k] for k in keys}})
    else:
        print(f"{model.name} ({source}) on {dataset.info.name} {args.split}: {results['images']} images, "
              f"input {size_text}, scored at label size\n")
        print(format_table(results))
    return 0
