"""ONNX Runtime engine: runners that take and return torch tensors.

One graph is exported with two outputs, ``logits`` and ``labels`` (the argmax), and
quantized once when int8 is asked for (``rtseg.inference.int8_layers``: what stays in float
is chosen by timing); the model-only and end-to-end runners are its two sub-graphs
(``onnx.utils.Extractor``), so both figures time the very same weights. ONNX Runtime folds
batch norm into the convolutions itself (``ORT_ENABLE_ALL``); sessions are made by
``rtseg.inference.ort_session``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rtseg.inference.backend import Backend
from rtseg.inference.calibration import random_calibration, random_inputs
from rtseg.inference.int8_layers import build_int8_graph
from rtseg.inference.onnx_export import INPUT_NAME, export_onnx, has_argmax_first, rewrite_labels, sub_graph
from rtseg.inference.ort_session import create_session
from rtseg.inference.runner import Runner


class OrtRunner(Runner):
    """Feeds a torch tensor to a session and hands back a torch tensor.

    On CPU the input is shared with ONNX Runtime without a copy (``Tensor.numpy``) and so
    is the output (``torch.from_numpy``). On CUDA both are bound in place with IO binding,
    so no host round trip is timed.
    """

    def __init__(self, session, output_name: str, backend: Backend, output: str, details: dict,
                 graph: bytes | None = None):
        super().__init__(fn=self._run, backend=backend, output=output, details=details)
        self.session = session
        self.output_name = output_name
        self.graph = graph  # the serialised ONNX graph the session runs

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cuda":
            return self._run_cuda(x)
        array = x.detach().contiguous().numpy()
        return torch.from_numpy(self.session.run([self.output_name], {INPUT_NAME: array})[0])

    def _run_cuda(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().contiguous()
        binding = self.session.io_binding()
        binding.bind_input(INPUT_NAME, "cuda", x.device.index or 0, np.float32, tuple(x.shape), x.data_ptr())
        binding.bind_output(self.output_name, "cuda", x.device.index or 0)
        self.session.run_with_iobinding(binding)
        value = binding.get_outputs()[0]
        return torch.from_dlpack(value.to_dlpack()) if hasattr(value, "to_dlpack") else torch.from_numpy(value.numpy())


def build_onnxruntime_runners(model: torch.nn.Module, size: tuple[int, int], backend: Backend, *,
                              batch: int = 1, calibration=None,
                              work_dir: str | Path | None = None) -> tuple[Runner, Runner]:
    """(model-only, end-to-end) runners on one exported (and, for int8, quantized) graph."""
    precision, device, threads = backend.precision, backend.device, backend.threads
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=work_dir, prefix="rtseg-ort-") as work:
        path = export_onnx(model, Path(work) / "model.onnx", size, batch=batch, argmax_first=precision == "fp32")
        details = {"graph": "fp32 ONNX, conv-transpose as sub-pixel conv, argmax before the last pixel shuffle"}
        if precision == "int8":
            batches = calibration if calibration is not None else random_calibration(model, size, batch)
            x = random_inputs(model, size, batch, seed=7).numpy()
            path, plan = build_int8_graph(path, Path(work) / "model-int8.onnx", batches, x, threads=threads,
                                          float_kinds=backend.int8_float, measure=device == "cpu")
            details["int8_plan"] = plan.as_dict()
            details["graph"] = ("int8 QDQ (u8 activations, per-channel s8 weights; " + plan.label + "), "
                                "conv-transpose as sub-pixel conv, argmax before the last pixel shuffle")
        elif precision == "fp16":
            path = _to_float16(path, Path(work) / "model-fp16.onnx")
            rewrite_labels(path)
            details["graph"] = "fp16 ONNX (float32 input and output)"
        model_graph, labels_graph = sub_graph(path, "logits"), sub_graph(path, "labels")
        details["argmax_first"] = has_argmax_first(path)
    sessions = [create_session(g, device, threads) for g in (model_graph, labels_graph)]
    details["providers"] = sessions[0].get_providers()
    details["build_s"] = round(time.perf_counter() - started, 3)
    return (OrtRunner(sessions[0], "logits", backend, output="logits", details=details, graph=model_graph),
            OrtRunner(sessions[1], "labels", backend, output="labels", details=details, graph=labels_graph))


def _to_float16(source: Path, target: Path) -> Path:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(target))
    return target
