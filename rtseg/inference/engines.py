"""``build_runners``: the ``(model_only, end_to_end)`` runners of a network for a ``Backend``.

Eager and compiled PyTorch (``rtseg.inference.torch_engines``) or ONNX Runtime
(``rtseg.inference.onnx_runtime``), on a prepared copy of the weights; the network itself is
not changed.
"""

from __future__ import annotations

from typing import Sequence

import torch

from rtseg.inference.backend import Backend
from rtseg.inference.onnx_runtime import build_onnxruntime_runners
from rtseg.inference.runner import Runner
from rtseg.inference.torch_engines import build_torch_runners


def build_runners(model: torch.nn.Module, size: tuple[int, int], backend: Backend | None = None, *,
                  batch: int = 1, calibration: Sequence[torch.Tensor] | None = None) -> tuple[Runner, Runner]:
    """``(model_only, end_to_end)`` runners for ``backend`` at a fixed input size.

    ``calibration`` (int8 only): normalised image batches shaped like the input; random images
    are used when it is None, which is fine for timing but not for accuracy.
    """
    backend = (backend or Backend()).check()
    if backend.engine == "onnxruntime":
        return build_onnxruntime_runners(model, size, backend, batch=batch, calibration=calibration)
    return build_torch_runners(model, size, backend, batch=batch)
