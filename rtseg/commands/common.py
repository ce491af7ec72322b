"""Arguments and helpers shared by the sub-commands."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rtseg.errors import RtsegError


def parse_size(text: str) -> tuple[int, int]:
    """``"512x1024"`` -> ``(512, 1024)`` (height x width)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise RtsegError(f"size {text!r} is not HEIGHTxWIDTH, e.g. 512x1024") from None
    if height < 1 or width < 1:
        raise RtsegError(f"size {text!r} must be positive")
    return height, width


def size_argument(text: str) -> tuple[int, int]:
    try:
        return parse_size(text)
    except RtsegError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_option_value(text: str) -> Any:
    """``"3"`` -> 3, ``"0.5"`` -> 0.5, ``"true"`` -> True, anything else stays a string."""
    import yaml

    return yaml.safe_load(text)


def add_model_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    group = parser.add_argument_group("model (--model NAME, or --decoder and --encoder)")
    group.add_argument("--model", help="model name, 'decoder-encoder' (skipnet-mobilenet_v1) or a "
                                       "whole model (enet); see 'rtseg models'")
    group.add_argument("--decoder", help="meta-architecture: skipnet, unet, dilation")
    group.add_argument("--encoder", help="encoder: vgg16, resnet18, mobilenet_v1, shufflenet_v1")
    group.add_argument("--num-classes", type=int, default=19, help="output classes (default 19)")
    group.add_argument("--option", "-O", action="append", default=[], metavar="KEY=VALUE",
                       help="encoder/decoder option, e.g. -O width=0.5 -O fusion=concat")
    parser.set_defaults(_model_required=required)


def model_name_from_args(args: argparse.Namespace) -> str | None:
    """``--model X`` or ``--decoder D --encoder E`` -> ``"D-E"`` (or ``X``)."""
    if args.model and (args.decoder or args.encoder):
        raise RtsegError("give either --model or --decoder/--encoder, not both")
    if args.model:
        return args.model
    if args.decoder and args.encoder:
        return f"{args.decoder}-{args.encoder}"
    if args.decoder or args.encoder:
        raise RtsegError("--decoder and --encoder go together (or use --model decoder-encoder)")
    if getattr(args, "_model_required", True):
        raise RtsegError("no model given: use --model NAME or --decoder D --encoder E")
    return None


def model_options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    options = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise RtsegError(f"--option {item!r} is not KEY=VALUE")
        options[key.replace("-", "_")] = parse_option_value(value)
    return options


def build_model_from_args(args: argparse.Namespace, **overrides: Any):
    from rtseg.models import create_model

    name = model_name_from_args(args)
    options = {**model_options_from_args(args), **overrides}
    return create_model(name, num_classes=args.num_classes, **options)


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")
