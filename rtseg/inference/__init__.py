"""Fast inference: one model, several engines and precisions, the same answers.

* ``build_runners(model, size, engine=..., precision=...)`` -> ``(model_only, end_to_end)``
  callables on normalised image tensors (what ``rtseg speed`` times);
* ``Predictor`` -> uint8 image in, train ids out, for any engine (what ``rtseg predict`` runs);
* ``segment_video`` -> a video in, the overlay video out;
* the graph rewrites they share: ``fold_batch_norm``, ``rewrite_conv_transpose``.

Engines: ``eager`` and ``compile`` (PyTorch), ``onnxruntime``; precisions fp32, bf16, fp16,
int8 (``rtseg.inference.precision`` says which engine runs which).
"""

from rtseg.inference.folding import fold_batch_norm
from rtseg.inference.precision import ENGINES, PRECISIONS, check_choice, supported_combinations
from rtseg.inference.predictor import Predictor
from rtseg.inference.runner import Runner, build_runners
from rtseg.inference.subpixel import SubPixelConvTranspose2d, rewrite_conv_transpose
from rtseg.inference.video import segment_video

__all__ = ["ENGINES", "PRECISIONS", "Predictor", "Runner", "SubPixelConvTranspose2d", "build_runners",
           "check_choice", "fold_batch_norm", "rewrite_conv_transpose", "segment_video", "supported_combinations"]
