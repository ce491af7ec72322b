"""``rtseg score PRED_DIR --gt ROOT_OR_DIR [--split val] [--dataset NAME] [--workers N] [--json]``: score any
method's prediction PNGs (Cityscapes labelIds, or class ids on any other dataset)."""

from __future__ import annotations

import argparse
import sys

from rtseg.commands.arguments import print_json
from rtseg.data.layouts import LAYOUTS
from rtseg.metrics import format_table
from rtseg.metrics.folders import score_folders

SCORE_KEYS = ("miou", "miiou", "category_miou", "category_miiou",
              "class_iou", "class_iiou", "category_iou", "category_iiou")
# Any dataset but Cityscapes: one confusion matrix over the split.
CONFUSION_KEYS = ("miou", "class_iou", "pixel_accuracy", "mean_accuracy")


def add_parser(sub: argparse._SubParsersAction, help: str) -> None:
    parser = sub.add_parser(
        "score", help=help,
        description="Scores prediction PNGs against a dataset's ground truth. Cityscapes: labelId PNGs (label ids "
                    "0..33, as the test server takes them) named <city>_<seq>_<frame>*.png anywhere under PRED_DIR, "
                    "with the official evaluator's class/category IoU and iIoU. Any other dataset (CamVid, a folder "
                    "dataset): PRED_DIR/<name>.png holding class ids 0..C-1, named by the label's stem, scored "
                    "as mIoU, per-class IoU, pixel accuracy and mean accuracy over the split.")
    parser.add_argument("pred_dir", metavar="PRED_DIR", help="folder of prediction PNGs")
    parser.add_argument("--gt", required=True, metavar="ROOT_OR_DIR",
                        help="dataset root (Cityscapes: gtFine/<split>/ is read; also its gtFine folder or a folder "
                             "of *_gtFine_labelIds.png and *_gtFine_instanceIds.png files)")
    parser.add_argument("--split", default=None, help="split to score (default val)")
    parser.add_argument("--dataset", choices=tuple(LAYOUTS), help="the layout of --gt (default: found)")
    parser.add_argument("--workers", type=int, default=None,
                        help="decoding processes (default: CPU count, at most 8; 0 = this process)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    results = score_folders(args.pred_dir, args.gt, split=args.split, workers=args.workers,
                            progress=not args.json, dataset=args.dataset)
    cityscapes = "dataset" not in results
    if cityscapes and not results["instances"]:
        print(f"rtseg score: note: no *_gtFine_instanceIds.png beside the ground truth in {args.gt}; "
              f"iIoU scores are undefined (null)", file=sys.stderr)
    if args.json:
        keys = SCORE_KEYS if cityscapes else ("dataset", *CONFUSION_KEYS)
        print_json({"images": results["images"], **{key: results[key] for key in keys}})
    else:
        print(f"{results['images']} images: {args.pred_dir} against {args.gt}\n")
        print(format_table(results))
    return 0
