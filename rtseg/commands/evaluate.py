"""``rtseg evaluate --checkpoint CKPT --data ROOT [--split val] [--size HxW] [--json]``."""

from __future__ import annotations

import argparse

from rtseg.commands.common import parse_size
from rtseg.errors import RtsegError

METRIC_KEYS = ("miou", "miiou", "category_miou", "category_miiou",
               "class_iou", "class_iiou", "category_iou", "category_iiou")


def input_size_argument(text: str):
    """``HxW``, or ``native`` for the image's stored size (argparse type)."""
    if text.lower() in ("native", "full"):
        return "native"
    try:
        return parse_size(text)
    except RtsegError as exc:
        raise argparse.ArgumentTypeError(f"{exc}, or 'native'") from None


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("evaluate", help="score a checkpoint on Cityscapes (class/category IoU and iIoU)")
    parser.add_argument("--checkpoint", required=True, help="checkpoint written by 'rtseg train'")
    parser.add_argument("--data", required=True, help="Cityscapes root (leftImg8bit/, gtFine/)")
    parser.add_argument("--split", default="val", help="split to score (default val)")
    parser.add_argument("--size", type=input_size_argument, default=None,
                        help="network input HEIGHTxWIDTH, or 'native' (default: the size the run "
                             "validated at); scores are always counted at the full label size")
    parser.add_argument("--batch-size", type=int, default=1, help="images per forward pass (default 1)")
    parser.add_argument("--workers", type=int, default=4, help="data-loading processes (default 4)")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                        help="autocast precision (default fp32)")
    parser.add_argument("--limit", type=int, help="score the first N images only")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rtseg.commands.common import print_json
    from rtseg.engine.checkpoint import load_model
    from rtseg.engine.distributed import resolve_device
    from rtseg.engine.evaluator import build_eval_dataset, evaluate
    from rtseg.metrics import format_table

    if args.batch_size < 1 or args.workers < 0 or (args.limit is not None and args.limit < 1):
        raise RtsegError("--batch-size and --limit must be at least 1, --workers at least 0")
    device = resolve_device(args.device)
    model, state = load_model(args.checkpoint, device)
    size = args.size
    if size is None:
        size = tuple(state["eval_size"]) if state.get("eval_size") else "native"
    dataset = build_eval_dataset(args.data, args.split, None if size == "native" else size,
                                 state.get("mean"), state.get("std"))
    results = evaluate(model, dataset, device, precision=args.precision, batch_size=args.batch_size,
                       workers=args.workers, limit=args.limit, progress=not args.json)
    size_text = "native" if size == "native" else f"{size[0]}x{size[1]}"
    if args.json:
        print_json({"model": state["model_name"], "checkpoint": str(args.checkpoint), "split": args.split,
                    "input_size": size_text, "images": results["images"],
                    **{k: results[k] for k in METRIC_KEYS}})
    else:
        print(f"{state['model_name']} ({args.checkpoint}) on {args.split}: {results['images']} images, "
              f"input {size_text}, scored at label size\n")
        print(format_table(results))
    return 0
