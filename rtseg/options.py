"""The names of rtseg's choices, without importing torch: what every command's parser offers.

One list of each, so that ``rtseg speed``, ``predict``, ``export``, ``benchmark`` and
``evaluate`` accept the same spellings, and the library checks them against the same
lists. Which engine runs which precision on which device is ``rtseg.inference.backend``'s
business (it needs torch); here are only the names.
"""

from __future__ import annotations

from rtseg.errors import RtsegError

ENGINES = ("eager", "compile", "onnxruntime")
PRECISIONS = ("fp32", "bf16", "fp16", "int8")
# What training and evaluation run in (autocast); int8 is an inference-only precision.
TRAIN_PRECISIONS = ("fp32", "bf16", "fp16")
DEVICES = ("cpu", "cuda")
# How the allocator treats freed memory while a figure is timed (rtseg.memory).
ALLOCATORS = ("reuse", "system")
# Device names commands take: "auto" is CUDA when there is a GPU, else the CPU.
DEVICE_CHOICES = ("auto", *DEVICES)


def check_name(value: str, choices: tuple[str, ...], option: str) -> str:
    """``value`` if it is one of ``choices``, else one line naming the option and the choices."""
    if value not in choices:
        raise RtsegError(f"{option} {value!r} is not one of {', '.join(choices)}")
    return value
