"""A runner: normalised image batch in, logits or a label map out, whatever the engine.

Every engine builds two runners on the same prepared weights: ``model`` (``[N,3,H,W]``
float32 -> ``[N,C,H,W]`` logits) and ``end_to_end`` (the same input -> ``[N,H,W]`` int64
train ids, the argmax included). ``measure_speed`` times both; ``Predictor`` calls one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch


@dataclass(eq=False)
class Runner:
    fn: Callable[[torch.Tensor], torch.Tensor]
    engine: str
    precision: str
    device: str
    output: str  # "logits" or "labels"
    details: dict = field(default_factory=dict)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    def synchronize(self) -> None:
        """Wait for queued GPU work, so a timer read afterwards sees it finished."""
        if self.device == "cuda":
            torch.cuda.synchronize()


def build_runners(model: torch.nn.Module, size: tuple[int, int], *, batch: int = 1, engine: str = "eager",
                  precision: str = "fp32", device: str = "cpu", threads: int | None = None,
                  calibration=None, channels_last: bool | None = None, fold_bn: bool = True,
                  subpixel: bool | None = None) -> tuple[Runner, Runner]:
    """``(model_only, end_to_end)`` runners for ``engine`` and ``precision`` at a fixed input size.

    ``model`` is not changed (engines work on a copy). ``calibration`` (int8 only) yields
    normalised image batches; random images are used when it is None, which is fine for
    timing but not for accuracy. ``channels_last``, ``fold_bn`` and ``subpixel`` (rewrite
    transposed convolutions, see ``rtseg.inference.subpixel``) tune the PyTorch engines;
    None picks the measured best for the engine.
    """
    from rtseg.inference.precision import check_choice

    check_choice(engine, precision, device)
    if engine == "onnxruntime":
        from rtseg.inference.onnx_runtime import build_onnxruntime_runners

        return build_onnxruntime_runners(model, size, batch, precision, device, threads, calibration)
    from rtseg.inference.torch_engines import build_torch_runners

    return build_torch_runners(model, size, batch=batch, engine=engine, precision=precision, device=device,
                               calibration=calibration, channels_last=channels_last, fold_bn=fold_bn,
                               subpixel=subpixel)
