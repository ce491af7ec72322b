"""Fast inference: one model, several engines and precisions, the same answers.

* ``Backend(engine, precision, device, threads, ...)``: how a network runs, checked in one place;
* ``build_runners(model, size, backend)`` -> ``(model_only, end_to_end)`` callables on normalised
  image tensors (what ``rtseg speed`` times);
* ``Predictor(model, backend)`` -> uint8 image in, train ids out (what ``rtseg predict`` runs);
* ``segment_video`` -> a video in, the overlay video out;
* ``export_onnx``: the ONNX graph every ONNX Runtime figure runs (``rtseg.export`` checks it);
* the graph rewrites they share: ``fold_batch_norm``, ``rewrite_conv_transpose``.

Engines: ``eager`` and ``compile`` (PyTorch), ``onnxruntime``; precisions fp32, bf16, fp16,
int8 (``Backend.check`` says which engine runs which).
"""

from rtseg.inference.backend import Backend, supported_combinations
from rtseg.inference.engines import build_runners
from rtseg.inference.folding import fold_batch_norm
from rtseg.inference.onnx_export import export_onnx
from rtseg.inference.predictor import Predictor
from rtseg.inference.runner import Runner
from rtseg.inference.subpixel import SubPixelConvTranspose2d, rewrite_conv_transpose
from rtseg.inference.video import segment_video

__all__ = ["Backend", "Predictor", "Runner", "SubPixelConvTranspose2d", "build_runners", "export_onnx",
           "fold_batch_norm", "rewrite_conv_transpose", "segment_video", "supported_combinations"]
