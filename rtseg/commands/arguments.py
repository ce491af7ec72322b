"""Value types of the command line (sizes, counts, option values) and JSON output, without torch."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

import yaml

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


def input_size_argument(text: str):
    """``HxW``, or ``native`` for the image's stored size (argparse type)."""
    if text.lower() in ("native", "full"):
        return "native"
    try:
        return parse_size(text)
    except RtsegError as exc:
        raise argparse.ArgumentTypeError(f"{exc}, or 'native'") from None


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least {minimum}")
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1 (argparse type)."""
    return _whole_number(text, 1)


def count(text: str) -> int:
    """A whole number >= 0 (argparse type)."""
    return _whole_number(text, 0)


def parse_option_value(text: str) -> Any:
    """``"3"`` -> 3, ``"0.5"`` -> 0.5, ``"true"`` -> True, anything else stays a string."""
    return yaml.safe_load(text)


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")
