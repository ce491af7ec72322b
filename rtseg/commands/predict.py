"""``rtseg predict --checkpoint CKPT --input FILE_OR_DIR --output DIR [--format ...] [--zip]``.

``--format labelids`` (default) writes what the Cityscapes test server takes: 8-bit PNGs of
official label ids at each input's size, under the input's name.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rtseg.commands.evaluate import input_size_argument

ZIP_NAME = "predictions.zip"
# The formats rtseg.engine.submission.render draws (listed here: the parser imports nothing heavy).
FORMATS = ("labelids", "trainids", "color", "overlay")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("predict", help="segment images: test-server PNGs, colour maps or overlays")
    parser.add_argument("--checkpoint", required=True, help="checkpoint written by 'rtseg train'")
    parser.add_argument("--input", required=True, help="an image, or a folder searched recursively")
    parser.add_argument("--output", required=True, help="output folder (created)")
    parser.add_argument("--format", choices=FORMATS, default="labelids",
                        help="labelids: official ids for the test server (default); trainids: 0..18; "
                             "color: Cityscapes colours; overlay: colours blended over the image")
    parser.add_argument("--zip", action="store_true", help=f"also pack the PNGs into OUTPUT/{ZIP_NAME}")
    parser.add_argument("--size", type=input_size_argument, default=None,
                        help="network input HEIGHTxWIDTH, or 'native' (default: the size the run "
                             "validated at); outputs always have the input image's size")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                        help="autocast precision (default fp32)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from rtseg.engine.distributed import resolve_device
    from rtseg.engine.inference import Predictor
    from rtseg.engine.submission import list_images, output_path, read_rgb, render, write_png, write_zip

    images = list_images(args.input)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    size = "checkpoint" if args.size is None else (None if args.size == "native" else args.size)
    predictor = Predictor.from_checkpoint(args.checkpoint, size, resolve_device(args.device), args.precision)

    written = []
    for path, relative in tqdm(images, desc="predict", unit="image", dynamic_ncols=True):
        image = read_rgb(path)
        target = output_path(output, relative)
        write_png(render(predictor(image), image, args.format), target)
        written.append(target)
    print(f"wrote {len(written)} {args.format} PNGs to {output}")
    if args.zip:
        write_zip(written, output, output / ZIP_NAME)
        print(f"packed them into {output / ZIP_NAME}")
    return 0
