"""``Predictor``: one uint8 RGB image in, its train-id map out, with any engine and precision.

What ``rtseg predict`` and video segmentation run, with evaluation's semantics: the image is
resized to the network's ``size`` if one is given, normalised with the model's mean and std,
and the logits are up-sampled bilinearly to the image's size before the argmax. When the
image already has the network's size, the end-to-end runner (argmax inside the engine) is
used; otherwise the model-only runner and a bilinear up-sampling in PyTorch. Engines with a fixed input shape (ONNX graphs, compiled graphs) are
built once per input size and kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from rtseg.errors import RtsegError
from rtseg.inference.precision import check_choice
from rtseg.inference.runner import Runner, build_runners


class Predictor:
    """``Predictor(model, engine="onnxruntime", precision="int8", calibration=ROOT)(image)`` -> ``HxW`` uint8.

    ``calibration`` (int8 only): a Cityscapes-layout root or a folder of images, or a list of
    HxWx3 uint8 images; static quantization needs real images to set its ranges.
    ``threads`` sets PyTorch's intra-op threads for the process, and ONNX Runtime's.
    """

    def __init__(self, model: nn.Module, engine: str = "eager", precision: str = "fp32", device: str = "cpu",
                 threads: int | None = None, size: tuple[int, int] | None = None,
                 calibration: str | Path | Sequence[np.ndarray] | None = None,
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None, calibration_images: int = 16):
        from rtseg.inference.calibration import model_normalisation

        check_choice(engine, precision, device)
        if precision == "int8" and calibration is None:
            raise RtsegError("precision int8 needs calibration images (a Cityscapes-layout root or an image folder)")
        self.model = model.eval()
        self.engine, self.precision, self.device = engine, precision, device
        self.size = tuple(size) if size else None
        default_mean, default_std = model_normalisation(model)
        self.mean, self.std = tuple(mean or default_mean), tuple(std or default_std)
        self.threads = threads
        if threads:
            torch.set_num_threads(int(threads))
        self._calibration_source = calibration
        self._calibration_images = calibration_images
        self._runners: dict[tuple[int, int], tuple[Runner, Runner]] = {}

    @classmethod
    def from_checkpoint(cls, path: str | Path, engine: str = "eager", precision: str = "fp32", device: str = "cpu",
                        size: tuple[int, int] | None | str = "checkpoint", **options) -> "Predictor":
        """``size="checkpoint"``: the size the training run validated at (its ``eval_size``)."""
        from rtseg.engine.checkpoint import load_model

        model, state = load_model(path, "cpu")
        if size == "checkpoint":
            size = tuple(state["eval_size"]) if state.get("eval_size") else None
        return cls(model, engine, precision, device, size=size, mean=state.get("mean"), std=state.get("std"),
                   **options)

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """``HxWx3`` uint8 -> ``1x3xhxw`` float32 on the device, resized to ``size`` and normalised."""
        from rtseg.inference.calibration import image_tensor, normalise

        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise RtsegError(f"Predictor takes an HxWx3 uint8 RGB image, got {got}")
        return normalise(image_tensor(image, self.size, self.device), self.mean, self.std).unsqueeze(0)

    def runners(self, size: tuple[int, int]) -> tuple[Runner, Runner]:
        """The ``(model_only, end_to_end)`` runners for network input ``size``, built on first use."""
        size = (int(size[0]), int(size[1]))
        if size not in self._runners:
            self._runners[size] = build_runners(self.model, size, engine=self.engine, precision=self.precision,
                                                device=self.device, threads=self.threads,
                                                calibration=self._calibration(size))
        return self._runners[size]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        x = self.preprocess(image)
        out_size = tuple(image.shape[:2])
        model_only, end_to_end = self.runners(tuple(x.shape[-2:]))
        if tuple(x.shape[-2:]) == out_size:
            labels = end_to_end(x)
        else:
            logits = model_only(x).float()
            labels = F.interpolate(logits, size=out_size, mode="bilinear", align_corners=False).argmax(1)
        return labels[0].to(torch.uint8).cpu().numpy()

    def _calibration(self, size: tuple[int, int]) -> list[torch.Tensor] | None:
        from rtseg.inference.calibration import image_tensor, images_from_root, normalise

        source = self._calibration_source
        if self.precision != "int8" or source is None:
            return None
        if isinstance(source, (str, Path)):
            return images_from_root(source, size, self._calibration_images, self.mean, self.std)
        batches = []
        for image in source:
            batches.append(normalise(image_tensor(image, size), self.mean, self.std).unsqueeze(0))
        if not batches:
            raise RtsegError("the calibration image list is empty")
        return batches
