"""``rtseg predict --checkpoint CKPT --input FILE_OR_DIR_OR_VIDEO --output DIR_OR_VIDEO [...]``.

``--format labelids`` (the default for Cityscapes) writes what the Cityscapes test server takes:
8-bit PNGs of official label ids at each input's size, under the input's name; on any other
dataset ``classids`` (its default) writes class ids 0..C-1, what ``rtseg score`` reads. The
classes, colours and stored ids are the checkpoint's dataset (or ``--data ROOT``'s). A video input
(``drive.mp4``) gives the overlay video (``--output out.mp4``). ``--engine``, ``--precision``
and ``--threads`` pick how the network runs (``rtseg.inference.Predictor`` on a ``Backend``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from rtseg.commands.arguments import input_size_argument
from rtseg.commands.common import add_backend_arguments, add_model_arguments, backend_from_args, model_from_args
from rtseg.data.io import list_images, read_image, write_png
from rtseg.data.layouts import LAYOUTS, checkpoint_dataset, dataset_info, open_dataset
from rtseg.errors import RtsegError
from rtseg.inference.outputs import FORMATS, default_format, output_path, render, write_zip
from rtseg.inference.predictor import Predictor
from rtseg.inference.video import segment_video

ZIP_NAME = "predictions.zip"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")


def add_parser(sub: argparse._SubParsersAction, help: str) -> None:
    parser = sub.add_parser("predict", help=help, description=help)
    add_model_arguments(parser, checkpoint=True)
    parser.add_argument("--input", required=True,
                        help=f"an image, a folder searched recursively, or a video ({', '.join(VIDEO_SUFFIXES)})")
    parser.add_argument("--output", required=True,
                        help="output folder (created), or for a video input the overlay video file")
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="labelids: the ids the dataset's label files store (Cityscapes: official ids for "
                             "the test server; its default); classids (= trainids): 0..C-1 (the default "
                             "elsewhere); color: the dataset's colours; overlay: colours blended over the image")
    parser.add_argument("--data", metavar="ROOT", help="take the classes and colours from this dataset "
                                                       "(default: the checkpoint's)")
    parser.add_argument("--dataset", metavar="NAME", help=f"its layout ({', '.join(LAYOUTS)}), or without --data "
                                                          "a dataset known by name (cityscapes, camvid)")
    parser.add_argument("--zip", action="store_true", help=f"also pack the PNGs into OUTPUT/{ZIP_NAME}")
    parser.add_argument("--size", type=input_size_argument, default=None,
                        help="network input HEIGHTxWIDTH, or 'native' (default: the size the run "
                             "validated at); outputs always have the input image's size")
    add_backend_arguments(parser, device_default="auto")
    parser.add_argument("--calibration", default=None,
                        help="int8: a dataset root or image folder to calibrate on (default: the image input itself)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    source = Path(args.input)
    is_video = source.suffix.lower() in VIDEO_SUFFIXES
    if is_video and Path(args.output).suffix.lower() not in VIDEO_SUFFIXES:
        raise RtsegError(f"--input {source} is a video: give --output a video file name "
                         f"({', '.join(VIDEO_SUFFIXES)}), e.g. overlay.mp4")
    calibration = args.calibration
    if args.precision == "int8" and calibration is None:
        if is_video:
            raise RtsegError("--precision int8 on a video needs --calibration ROOT_OR_IMAGE_FOLDER")
        calibration = source if source.is_dir() else source.parent
    backend = backend_from_args(args)
    model, checkpoint = model_from_args(args)
    if args.size is None:
        eval_size = (checkpoint or {}).get("eval_size")
        size = tuple(eval_size) if eval_size else None
    else:
        size = None if args.size == "native" else args.size
    if args.data:
        dataset = open_dataset(args.data, args.dataset).info
    elif args.dataset:
        dataset = dataset_info(args.dataset)
    else:
        dataset = checkpoint_dataset(checkpoint, model.num_classes)
    predictor = Predictor(model, backend, size=size, calibration=calibration, dataset=dataset)
    if is_video:
        stats = segment_video(source, args.output, predictor)
        print(f"wrote {stats['frames']} frames to {args.output}: {stats['fps']:.1f} FPS overall, "
              f"{stats['predict_fps']:.1f} FPS for the network ({backend.label})")
        return 0
    return _predict_images(args, predictor)


def _predict_images(args: argparse.Namespace, predictor: Predictor) -> int:
    images = list_images(args.input)
    fmt = args.format or default_format(predictor.dataset)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for path, relative in tqdm(images, desc="predict", unit="image", dynamic_ncols=True):
        image = read_image(path)
        picture = render(predictor(image), image, fmt, predictor.dataset)
        written.append(write_png(output_path(output, relative), picture))
    print(f"wrote {len(written)} {fmt} PNGs ({predictor.dataset.name}) to {output}")
    if args.zip:
        write_zip(written, output, output / ZIP_NAME)
        print(f"packed them into {output / ZIP_NAME}")
    return 0
