"""The model and backend arguments the sub-commands share: the same spellings everywhere.

Model choice (``--model`` or ``--decoder/--encoder``, ``--num-classes``, ``-O key=value``,
``--weights``, or ``--checkpoint``) and the inference backend (``--engine``, ``--precision``,
``--device``, ``--threads``, from ``rtseg.options``) parse here; the commands hand the results
to the library. Plain value types (sizes, counts) are in ``rtseg.commands.arguments``.
"""

from __future__ import annotations

import argparse
from typing import Any

from rtseg.commands.arguments import parse_option_value, positive_int
from rtseg.errors import RtsegError
from rtseg.inference.backend import Backend
from rtseg.models import SegmentationNetwork, create_model, load_model
from rtseg.options import ALLOCATORS, DEVICES, ENGINES, PRECISIONS
from rtseg.runtime import resolve_device


def add_model_arguments(parser: argparse.ArgumentParser, required: bool = True, checkpoint: bool = False) -> None:
    group = parser.add_argument_group("model (--model NAME, or --decoder and --encoder"
                                      + (", or --checkpoint)" if checkpoint else ")"))
    if checkpoint:
        group.add_argument("--checkpoint", help="a checkpoint written by 'rtseg train' (instead of a model name)")
    group.add_argument("--model", help="model name, 'decoder-encoder' (skipnet-mobilenet_v1) or a "
                                       "whole model (enet); see 'rtseg models'")
    group.add_argument("--decoder", help="meta-architecture: skipnet, unet, dilation, ...")
    group.add_argument("--encoder", help="encoder: vgg16, resnet18, mobilenet_v1, shufflenet_v1, ...")
    group.add_argument("--num-classes", type=positive_int, default=19, help="output classes (default 19)")
    group.add_argument("--option", "-O", action="append", default=[], metavar="KEY=VALUE",
                       help="encoder/decoder option, e.g. -O width=0.5 -O fusion=concat")
    group.add_argument("--weights", metavar="PATH",
                       help="whole-network weights to load: rtseg's own state dict or the authors' released file")
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
    if getattr(args, "_model_required", True) and not getattr(args, "checkpoint", None):
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


def model_from_args(args: argparse.Namespace, device: str = "cpu") -> tuple[SegmentationNetwork, dict | None]:
    """``(network in eval mode, its checkpoint dict or None)`` the arguments name: ``--checkpoint``
    (rebuilt with its weights), or a model name built fresh, with ``--weights`` loaded into it."""
    name = model_name_from_args(args)
    checkpoint = getattr(args, "checkpoint", None)
    if checkpoint:
        if name or args.weights:
            raise RtsegError("give either --checkpoint or a model name (with --weights), not both")
        return load_model(checkpoint, device)
    if name is None:
        raise RtsegError("no model given: use --checkpoint CKPT, --model NAME or --decoder D --encoder E")
    model = create_model(name, num_classes=args.num_classes, weights=args.weights, **model_options_from_args(args))
    return model.to(device).eval(), None


def add_backend_arguments(parser: argparse.ArgumentParser, device_default: str = "cpu") -> None:
    group = parser.add_argument_group("inference backend")
    group.add_argument("--engine", default="eager", choices=ENGINES, help="eager (default), compile, onnxruntime")
    group.add_argument("--precision", default="fp32", choices=PRECISIONS,
                       help="fp32 (default), bf16/fp16 autocast, int8 (ONNX Runtime static quantization)")
    group.add_argument("--device", default=device_default, choices=("auto", *DEVICES),
                       help=f"cpu, cuda or auto (default {device_default})")
    group.add_argument("--threads", type=positive_int, help="CPU threads for PyTorch and ONNX Runtime "
                                                            "(default: PyTorch's current setting)")


def add_allocator_argument(parser: argparse.ArgumentParser) -> None:
    """``--allocator``, for the commands that time (rtseg.memory says why it changes PyTorch's figures)."""
    parser.add_argument("--allocator", default="reuse", choices=ALLOCATORS,
                        help="while timing: reuse (default) keeps freed memory in the process, as ONNX Runtime's "
                             "arena, jemalloc or tcmalloc do; system leaves the allocator as it is (PyTorch then "
                             "pays page faults for fresh memory on every run)")


def backend_from_args(args: argparse.Namespace) -> Backend:
    device = resolve_device(args.device).type
    return Backend(args.engine, args.precision, device, args.threads,
                   allocator=getattr(args, "allocator", "reuse")).check()
