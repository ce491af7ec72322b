"""``rtseg predict --checkpoint CKPT --input FILE_OR_DIR_OR_VIDEO --output DIR_OR_VIDEO [...]``.

``--format labelids`` (default) writes what the Cityscapes test server takes: 8-bit PNGs of
official label ids at each input's size, under the input's name. A video input
(``drive.mp4``) gives the overlay video (``--output out.mp4``). ``--engine`` and
``--precision`` pick how the network runs (``rtseg.inference.Predictor``): eager PyTorch,
``torch.compile`` or ONNX Runtime, in fp32, bf16, fp16 or int8.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rtseg.commands.evaluate import input_size_argument
from rtseg.errors import RtsegError

ZIP_NAME = "predictions.zip"
# The formats rtseg.engine.submission.render draws (listed here: the parser imports nothing heavy).
FORMATS = ("labelids", "trainids", "color", "overlay")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov")
ENGINES = ("eager", "compile", "onnxruntime")
PRECISIONS = ("fp32", "bf16", "fp16", "int8")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("predict", help="segment images or a video: test-server PNGs, colour maps, overlays")
    parser.add_argument("--checkpoint", required=True, help="checkpoint written by 'rtseg train'")
    parser.add_argument("--input", required=True,
                        help=f"an image, a folder searched recursively, or a video ({', '.join(VIDEO_SUFFIXES)})")
    parser.add_argument("--output", required=True,
                        help="output folder (created), or for a video input the overlay video file")
    parser.add_argument("--format", choices=FORMATS, default="labelids",
                        help="labelids: official ids for the test server (default); trainids: 0..18; "
                             "color: Cityscapes colours; overlay: colours blended over the image")
    parser.add_argument("--zip", action="store_true", help=f"also pack the PNGs into OUTPUT/{ZIP_NAME}")
    parser.add_argument("--size", type=input_size_argument, default=None,
                        help="network input HEIGHTxWIDTH, or 'native' (default: the size the run "
                             "validated at); outputs always have the input image's size")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda")
    parser.add_argument("--engine", choices=ENGINES, default="eager",
                        help="eager PyTorch (default), torch.compile, or ONNX Runtime")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32",
                        help="fp32 (default), bf16/fp16 autocast, or int8 (static quantization)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for the network")
    parser.add_argument("--calibration", default=None,
                        help="int8: a Cityscapes-layout root or image folder to calibrate on "
                             "(default: the image input itself)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from rtseg.engine.distributed import resolve_device
    from rtseg.inference import Predictor

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
    size = "checkpoint" if args.size is None else (None if args.size == "native" else args.size)
    device = resolve_device(args.device).type
    predictor = Predictor.from_checkpoint(args.checkpoint, engine=args.engine, precision=args.precision,
                                          device=device, size=size, threads=args.threads,
                                          calibration=calibration)
    if is_video:
        from rtseg.inference.video import segment_video

        stats = segment_video(source, args.output, predictor)
        print(f"wrote {stats['frames']} frames to {args.output}: {stats['fps']:.1f} FPS overall, "
              f"{stats['predict_fps']:.1f} FPS for the network ({args.engine}, {args.precision})")
        return 0
    return _predict_images(args, predictor)


def _predict_images(args: argparse.Namespace, predictor) -> int:
    from tqdm import tqdm

    from rtseg.engine.submission import list_images, output_path, read_rgb, render, write_png, write_zip

    images = list_images(args.input)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
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
