"""``rtseg export``: an ONNX file, checked by onnx.checker and against PyTorch in ONNX Runtime.

The workflow is ``rtseg.export.export_model``; this command parses its options and prints.
"""

from __future__ import annotations

import argparse

from rtseg.commands.arguments import positive_int, print_json, size_argument
from rtseg.commands.common import add_model_arguments, model_from_args
from rtseg.errors import RtsegError
from rtseg.export import ExportOptions, export_model
from rtseg.inference.int8_layers import KINDS


def add_parser(sub: argparse._SubParsersAction, help: str) -> None:
    parser = sub.add_parser("export", help=help,
                            description="The graph takes 'image' (normalised, N x 3 x H x W) and returns "
                                        "'logits' and 'labels' (the argmax). The command fails when ONNX "
                                        "Runtime's argmax agrees with PyTorch's on less than 99.9%% of pixels.")
    add_model_arguments(parser, required=False, checkpoint=True)
    parser.add_argument("--format", default="onnx", choices=("onnx",), help="file format (onnx)")
    parser.add_argument("--size", type=size_argument, default=(512, 1024), help="HEIGHTxWIDTH (default 512x1024)")
    parser.add_argument("--batch", type=positive_int, default=1, help="batch size of the graph (default 1)")
    parser.add_argument("--dynamic", action="store_true",
                        help="free batch axis, and free height/width where the model allows it")
    parser.add_argument("--opset", type=int, help="ONNX opset (default: the exporter's)")
    parser.add_argument("--output", "-o", required=True, help="the .onnx file to write")
    parser.add_argument("--int8", action="store_true", help="int8 static quantization (QDQ, per-channel)")
    parser.add_argument("--calibration-data", metavar="ROOT",
                        help="dataset root (or image folder) for --int8 calibration; its val "
                             "split with labels also gives the mIoU change")
    parser.add_argument("--calibration-images", type=positive_int, default=32,
                        help="images to calibrate on (default 32)")
    parser.add_argument("--eval-images", type=positive_int, default=50,
                        help="val images for the int8 mIoU check (default 50)")
    parser.add_argument("--int8-float", default="measure", metavar="KINDS",
                        help="--int8: layers kept in float: 'measure' (default: time the candidates here and "
                             "keep in float what is faster in float), 'none' (quantize every layer), or "
                             f"comma-separated kinds from: {', '.join(KINDS)}")
    parser.add_argument("--threads", type=positive_int, help="ONNX Runtime threads for the --int8 timing")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(run=run)


def int8_float_kinds(text: str) -> tuple[str, ...] | None:
    """``--int8-float`` -> ``ExportOptions.int8_float``: None to measure, () for none, or the kinds."""
    if text == "measure":
        return None
    if text == "none":
        return ()
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise RtsegError(f"--int8-float {unknown[0]!r} is not a layer kind; use measure, none, or some of: "
                         f"{', '.join(KINDS)}")
    return kinds


def run(args: argparse.Namespace) -> int:
    if args.int8 and not args.calibration_data:
        raise RtsegError("--int8 needs --calibration-data ROOT (static quantization calibrates on real images)")
    if args.calibration_data and not args.int8:
        raise RtsegError("--calibration-data is for --int8")
    options = ExportOptions(size=args.size, batch=args.batch, dynamic=args.dynamic, opset=args.opset, int8=args.int8,
                            calibration_data=args.calibration_data, calibration_images=args.calibration_images,
                            eval_images=args.eval_images, int8_float=int8_float_kinds(args.int8_float),
                            threads=args.threads).check()
    model, _ = model_from_args(args)
    report = export_model(model, args.output, options, log=None if args.json else print)
    if args.json:
        print_json(report.as_dict())
    return 0
