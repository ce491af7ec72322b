"""int8 static quantization of an ONNX graph with ONNX Runtime's own tool.

``onnxruntime.quantization.quantize_static`` in QDQ format, weights int8 per output channel,
activations uint8 per tensor: the u8 x s8 pairing is the one ONNX Runtime's x86 kernels run
on VNNI/AMX instructions (s8 x s8 falls back to slower code). Calibration ranges are the
min/max over the given images, as ONNX Runtime's default does.

``Quantizer`` prepares a graph once (shape inference and clean-up, as ONNX Runtime's guide
advises), calibrates once (the ranges go to ONNX Runtime's calibration cache), and can then
write several int8 versions that keep different nodes in float (``nodes_to_exclude``)
cheaply; ``rtseg.inference.int8_layers`` times them to choose. ``quantize_int8`` is the
one-shot form.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch

from rtseg.atomic import atomic_path
from rtseg.errors import RtsegError
from rtseg.inference.onnx_export import INPUT_NAME, name_unnamed_nodes, rewrite_labels


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


class Quantizer:
    """One float graph, prepared and calibrated once, quantized as often as asked (in ``work``)."""

    def __init__(self, source: str | Path, calibration: Iterable, work: str | Path, *,
                 input_name: str = INPUT_NAME, per_channel: bool = True):
        from onnxruntime.quantization.shape_inference import quant_pre_process

        self.calibration = list(calibration)
        if not self.calibration:
            raise RtsegError("int8 quantization needs at least one calibration image")
        self.work = Path(work)
        self.input_name, self.per_channel = input_name, per_channel
        self.prepared = self.work / "prepared.onnx"
        self.cache = self.work / "calibration-ranges.json"
        try:
            quant_pre_process(str(source), str(self.prepared))
        except Exception:  # noqa: BLE001 - ONNX Runtime's symbolic shape inference, an optional step, gave up
            # Its symbolic pass fails on some graphs (PP-LiteSeg's concatenated pooled branches at
            # 512x1024: "'NoneType' object is not iterable" in _infer_Concat); ONNX's own shape
            # inference and the graph optimisation still run, and calibration needs nothing more.
            quant_pre_process(str(source), str(self.prepared), skip_symbolic_shape=True)
        _name_nodes(self.prepared)

    def quantize(self, target: str | Path, exclude: Sequence[str] = (), argmax_first: bool = True) -> Path:
        """Write the int8 QDQ graph to ``target`` (atomically), the nodes named in ``exclude`` left in
        float; ``argmax_first`` then rewrites the ``labels`` output (``rtseg.inference.onnx_rewrite``)."""
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        target = Path(target)
        with atomic_path(target) as quantized:
            # The first call calibrates and fills the cache; later ones only read the ranges from it.
            reader = None if self.cache.is_file() else _Reader(self.input_name, self.calibration)
            quantize_static(str(self.prepared), str(quantized), reader,
                            quant_format=QuantFormat.QDQ, per_channel=self.per_channel,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=list(exclude), calibrate_method=CalibrationMethod.MinMax,
                            calibration_cache_path=str(self.cache))
            if argmax_first:
                rewrite_labels(quantized)
        return target


def _name_nodes(path: Path) -> None:
    """Every node named: ``nodes_to_exclude`` refers to nodes by name."""
    import onnx

    model = onnx.load(str(path))
    if name_unnamed_nodes(model):
        onnx.save(model, str(path))


def quantize_int8(source: str | Path, target: str | Path, calibration: Iterable, *,
                  input_name: str = INPUT_NAME, per_channel: bool = True, argmax_first: bool = True,
                  exclude: Sequence[str] = ()) -> Path:
    """Write the int8 QDQ version of the float ONNX graph ``source`` to ``target`` (atomically).

    ``calibration`` yields normalised image batches (tensors or arrays) shaped like the
    graph's input; a handful of real images is enough for min/max ranges. ``exclude`` names
    nodes to keep in float. ``argmax_first`` then rewrites the ``labels`` output.
    """
    with tempfile.TemporaryDirectory(prefix="rtseg-quantize-") as work:
        quantizer = Quantizer(source, calibration, work, input_name=input_name, per_channel=per_channel)
        return quantizer.quantize(target, exclude, argmax_first)
