"""``Predictor``: one uint8 RGB image in, its train-id map out, with any backend.

What ``rtseg predict`` and video segmentation run, with evaluation's semantics
(``rtseg.data.processing``): the image is resized to the network's ``size`` if one is given and
normalised with the network's own mean and std; the logits are up-sampled bilinearly to the
image's size before the argmax. When the image already has the network's size, the
end-to-end runner (argmax inside the engine) is used. Engines with a fixed input shape
(ONNX graphs, compiled graphs) are built once per input size and kept. The backend's thread
count applies while the Predictor runs and the caller's is restored afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from rtseg.data.dataset import DatasetInfo
from rtseg.data.layouts import checkpoint_dataset
from rtseg.data.processing import image_to_input, logits_to_labels
from rtseg.errors import RtsegError
from rtseg.inference.backend import Backend
from rtseg.inference.calibration import calibration_batches
from rtseg.inference.engines import build_runners
from rtseg.inference.runner import Runner
from rtseg.models import load_model
from rtseg.normalisation import model_normalisation
from rtseg.runtime import torch_threads


class Predictor:
    """``Predictor(model, Backend("onnxruntime", "int8"), calibration=ROOT)(image)`` -> ``HxW`` uint8.

    ``calibration`` (int8 only): a dataset root or a folder of images, or a list of HxWx3 uint8
    images; static quantization needs real images to set its ranges. ``dataset``: the description
    of the classes the network predicts (names, colours, stored ids), the checkpoint's by default.
    """

    def __init__(self, model: nn.Module, backend: Backend | None = None, size: tuple[int, int] | None = None,
                 calibration: str | Path | Sequence[np.ndarray] | None = None, calibration_images: int = 16,
                 dataset: DatasetInfo | None = None):
        self.backend = (backend or Backend()).check()
        if self.backend.precision == "int8" and calibration is None:
            raise RtsegError("precision int8 needs calibration images (a dataset root or an image folder)")
        self.model = model.eval()
        self.size = tuple(size) if size else None
        self.mean, self.std = model_normalisation(model)
        classes = getattr(model, "num_classes", None)
        self.dataset = dataset or checkpoint_dataset(None, classes or 19)
        if classes is not None and classes != self.dataset.num_classes:
            raise RtsegError(f"the network predicts {classes} classes but the dataset {self.dataset.name} has "
                             f"{self.dataset.num_classes}")
        self._calibration_source = calibration
        self._calibration_images = calibration_images
        self._runners: dict[tuple[int, int], tuple[Runner, Runner]] = {}

    @classmethod
    def from_checkpoint(cls, path: str | Path, backend: Backend | None = None,
                        size: tuple[int, int] | None | str = "checkpoint", **options) -> "Predictor":
        """``size="checkpoint"``: the size the training run validated at (its ``eval_size``)."""
        model, state = load_model(path, "cpu")
        if size == "checkpoint":
            size = tuple(state["eval_size"]) if state.get("eval_size") else None
        options.setdefault("dataset", checkpoint_dataset(state, int(state.get("num_classes", 19))))
        return cls(model, backend, size=size, **options)

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """``HxWx3`` uint8 -> ``1x3xhxw`` float32 on the device, resized to ``size`` and normalised."""
        if not isinstance(image, np.ndarray):
            raise RtsegError(f"Predictor takes an HxWx3 uint8 RGB image, got {type(image).__name__}")
        return image_to_input(image, self.mean, self.std, self.size, self.backend.device)

    def runners(self, size: tuple[int, int]) -> tuple[Runner, Runner]:
        """The ``(model_only, end_to_end)`` runners for network input ``size``, built on first use."""
        size = (int(size[0]), int(size[1]))
        if size not in self._runners:
            calibration = None
            if self.backend.precision == "int8":
                calibration = calibration_batches(self._calibration_source, size, self.mean, self.std,
                                                  self._calibration_images)
            self._runners[size] = build_runners(self.model, size, self.backend, calibration=calibration)
        return self._runners[size]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        with torch_threads(self.backend.threads):
            x = self.preprocess(image)
            out_size = tuple(image.shape[:2])
            model_only, end_to_end = self.runners(tuple(x.shape[-2:]))
            if tuple(x.shape[-2:]) == out_size:
                labels = end_to_end(x)
            else:
                labels = logits_to_labels(model_only(x), out_size)
            return labels[0].to(torch.uint8).cpu().numpy()
