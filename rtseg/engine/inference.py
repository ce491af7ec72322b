"""One image in, one train-id map out: the per-image inference ``rtseg predict`` runs.

``Predictor`` is deliberately small (preprocess, forward, up-sample, argmax) so that another
engine (ONNX Runtime, TensorRT) can stand in for it with the same ``__call__``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from rtseg.engine.evaluator import predict_train_ids
from rtseg.engine.precision import check_precision
from rtseg.errors import RtsegError


class Predictor:
    """``Predictor(model, size=(512, 1024))(image)`` -> ``HxW`` uint8 train ids at the image's size.

    ``image`` is an ``HxWx3`` uint8 RGB array. The network sees it resized to ``size``
    (None: as it is), normalised with the model's mean and std, exactly as
    ``rtseg.data.transforms.eval_transforms`` prepares evaluation images; the logits are
    up-sampled bilinearly to ``HxW`` before the argmax.
    """

    def __init__(self, model: nn.Module, size: tuple[int, int] | None = None,
                 device: str | torch.device | None = None, precision: str = "fp32",
                 mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
        from rtseg.models.encoders.base import IMAGENET_MEAN, IMAGENET_STD

        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        check_precision(precision, self.device, "--precision")
        self.model = model.to(self.device).eval()
        self.size = tuple(size) if size else None
        self.precision = precision
        self.mean = tuple(mean or getattr(model, "mean", IMAGENET_MEAN))
        self.std = tuple(std or getattr(model, "std", IMAGENET_STD))

    @classmethod
    def from_checkpoint(cls, path: str | Path, size: tuple[int, int] | None | str = "checkpoint",
                        device: str | torch.device = "cpu", precision: str = "fp32") -> "Predictor":
        """``size="checkpoint"``: the input size the run validated at (its ``data.val_size``)."""
        from rtseg.engine.checkpoint import load_model

        model, state = load_model(path, device)
        if size == "checkpoint":
            size = tuple(state["eval_size"]) if state.get("eval_size") else None
        return cls(model, size, device, precision, state.get("mean"), state.get("std"))

    def preprocess(self, image: np.ndarray) -> torch.Tensor:
        """``HxWx3`` uint8 -> ``1x3xhxw`` float, resized and normalised, on the device."""
        from torchvision.transforms.v2 import functional as TF

        if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            got = f"{image.dtype} {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
            raise RtsegError(f"Predictor takes an HxWx3 uint8 RGB image, got {got}")
        # torch cannot wrap a read-only array (np.asarray of a PIL image) without a copy.
        image = np.ascontiguousarray(image) if image.flags.writeable else image.copy()
        x = torch.from_numpy(image).permute(2, 0, 1).to(self.device)
        if self.size is not None and tuple(x.shape[-2:]) != self.size:
            x = TF.resize(x, list(self.size), antialias=True)
        x = TF.to_dtype(x, torch.float32, scale=True)
        x = TF.normalize(x, list(self.mean), list(self.std))
        return x.unsqueeze(0)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        train_ids = predict_train_ids(self.model, self.preprocess(image), image.shape[:2], self.precision)
        return train_ids[0].to(torch.uint8).cpu().numpy()
