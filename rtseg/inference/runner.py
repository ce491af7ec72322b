"""A runner: normalised image batch in, logits or a label map out, whatever the engine.

Every engine builds two runners on the same prepared weights: ``model`` (``[N,3,H,W]``
float32 -> ``[N,C,H,W]`` logits) and ``end_to_end`` (the same input -> ``[N,H,W]`` int64
train ids, the argmax included). ``measure_speed`` times both; ``Predictor`` calls one.
``rtseg.inference.engines.build_runners`` builds them for a ``Backend``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from rtseg.inference.backend import Backend


@dataclass(eq=False)
class Runner:
    fn: Callable[[torch.Tensor], torch.Tensor]
    backend: Backend
    output: str  # "logits" or "labels"
    details: dict = field(default_factory=dict)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)

    @property
    def engine(self) -> str:
        return self.backend.engine

    @property
    def precision(self) -> str:
        return self.backend.precision

    @property
    def device(self) -> str:
        return self.backend.device

    def synchronize(self) -> None:
        """Wait for queued GPU work, so a timer read afterwards sees it finished."""
        if self.backend.device == "cuda":
            torch.cuda.synchronize()
