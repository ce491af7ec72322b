"""``Backend``: how a network runs for inference (engine, precision, device, threads, graph options).

One dataclass travels through ``build_runners``, ``Predictor``, ``measure_speed``, export and the
benchmark, instead of the same six keyword arguments in each. ``Backend.check()`` says, in one
line, when a combination cannot run and what to use instead.

    Backend()                                        # eager PyTorch, fp32, CPU
    Backend("onnxruntime", "int8", threads=2)        # ONNX Runtime static int8
    Backend("compile", "bf16", device="cuda")
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch

from rtseg.errors import RtsegError
from rtseg.options import ALLOCATORS, DEVICES, ENGINES, PRECISIONS, check_name

_WHY_NOT = {
    ("eager", "int8"): "PyTorch has no fast eager int8 convolutions; use --engine onnxruntime "
                       "(QDQ static quantization)",
    ("onnxruntime", "bf16"): "ONNX Runtime's CPU and CUDA providers have no bfloat16 convolutions; "
                             "use --engine eager or compile for bf16",
    ("compile", "int8"): "PyTorch's PT2E int8 quantizer moved out of torch into torchao, which rtseg "
                         "does not depend on; use --engine onnxruntime (QDQ static quantization)",
}
_WHY_NOT_ON_CPU = {
    ("onnxruntime", "fp16"): "ONNX Runtime's CPU provider has no float16 convolutions; use --device cuda "
                             "or --precision int8",
}


@dataclass(frozen=True)
class Backend:
    """Where and how a network runs. ``None`` options pick the measured best for the engine."""

    engine: str = "eager"  # eager | compile | onnxruntime
    precision: str = "fp32"  # fp32 | bf16 | fp16 | int8
    device: str = "cpu"  # cpu | cuda
    threads: int | None = None  # intra-op threads (PyTorch's and ONNX Runtime's); None: PyTorch's current
    channels_last: bool | None = None  # PyTorch engines: NHWC memory layout (None: on)
    fold_bn: bool = True  # PyTorch engines: fold batch norm into convolutions (ONNX Runtime folds itself)
    subpixel: bool | None = None  # PyTorch engines: transposed convolutions as sub-pixel convolutions
    # PyTorch engines: the labels taken inside the network's final up-sampling (rtseg.inference.
    # upsampled_labels) instead of an argmax over full-resolution scores (None: timed, the faster kept)
    fused_labels: bool | None = None
    # ONNX Runtime int8: layer kinds kept in float (rtseg.inference.int8_layers.KINDS, or ("all float",));
    # None: chosen by timing the candidates on this machine when the runners are built
    int8_float: tuple[str, ...] | None = None
    # While timed: "reuse" keeps freed memory in the process (as ONNX Runtime's arena, jemalloc or
    # tcmalloc do), "system" leaves the allocator as it is (rtseg.memory says why it matters)
    allocator: str = "reuse"

    def check(self) -> "Backend":
        """This backend, or an ``RtsegError`` naming what cannot run and the alternative."""
        check_name(self.engine, ENGINES, "engine")
        check_name(self.precision, PRECISIONS, "precision")
        check_name(self.device, DEVICES, "device")
        check_name(self.allocator, ALLOCATORS, "allocator")
        if self.threads is not None and self.threads < 1:
            raise RtsegError(f"threads must be positive, got {self.threads}")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise RtsegError("device 'cuda' asked for, but PyTorch sees no CUDA GPU")
        reason = _why_not(self.engine, self.precision, self.device)
        if reason:
            raise RtsegError(f"engine {self.engine!r} cannot run precision {self.precision!r}: {reason}")
        return self

    def with_options(self, **changes) -> "Backend":
        return replace(self, **changes)

    @property
    def label(self) -> str:
        """``"onnxruntime int8"``: how tables name the setting."""
        return f"{self.engine} {self.precision}"

    def as_dict(self) -> dict:
        return asdict(self)


def _why_not(engine: str, precision: str, device: str) -> str | None:
    reason = _WHY_NOT.get((engine, precision))
    if reason is None and device == "cpu":
        reason = _WHY_NOT_ON_CPU.get((engine, precision))
    return reason


def supported_combinations(device: str = "cpu") -> list[tuple[str, str]]:
    """Every (engine, precision) that runs on ``device`` (ignoring whether a GPU is present)."""
    return [(e, p) for e in ENGINES for p in PRECISIONS if _why_not(e, p, device) is None]
