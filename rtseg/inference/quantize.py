"""int8 static quantization of an ONNX graph with ONNX Runtime's own tool.

``onnxruntime.quantization.quantize_static`` in QDQ format, weights int8 per output channel,
activations uint8 per tensor: the u8 x s8 pairing is the one ONNX Runtime's x86 kernels run
on VNNI/AMX instructions (s8 x s8 falls back to slower code). Calibration ranges are the
min/max over the given images, as ONNX Runtime's default does.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from rtseg.atomic import atomic_path
from rtseg.errors import RtsegError
from rtseg.inference.onnx_export import INPUT_NAME, rewrite_labels


def _as_array(batch) -> np.ndarray:
    if isinstance(batch, torch.Tensor):
        batch = batch.detach().to("cpu", torch.float32).numpy()
    return np.ascontiguousarray(batch, dtype=np.float32)


class _Reader:
    """``CalibrationDataReader``: one ``{input_name: batch}`` feed per calibration batch."""

    def __init__(self, input_name: str, batches: Iterable):
        self._feeds = iter({input_name: _as_array(b)} for b in batches)

    def get_next(self):
        return next(self._feeds, None)

    def rewind(self):  # pragma: no cover - only the entropy/percentile methods call it
        raise NotImplementedError


def quantize_int8(source: str | Path, target: str | Path, calibration: Iterable, *,
                  input_name: str = INPUT_NAME, per_channel: bool = True, argmax_first: bool = True) -> Path:
    """Write the int8 QDQ version of the float ONNX graph ``source`` to ``target`` (atomically).

    ``calibration`` yields normalised image batches (tensors or arrays) shaped like the
    graph's input; a handful of real images is enough for min/max ranges. ``argmax_first``
    then rewrites the ``labels`` output (``rtseg.inference.onnx_rewrite``).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    calibration = list(calibration)
    if not calibration:
        raise RtsegError("int8 quantization needs at least one calibration image")
    target = Path(target)
    with tempfile.TemporaryDirectory(prefix="rtseg-quantize-") as work, atomic_path(target) as quantized:
        prepared = Path(work) / "prepared.onnx"
        # Shape inference and graph clean-up first, as ONNX Runtime's quantization guide advises.
        quant_pre_process(str(source), str(prepared))
        quantize_static(str(prepared), str(quantized), _Reader(input_name, calibration),
                        quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        if argmax_first:
            rewrite_labels(quantized)
    return target
