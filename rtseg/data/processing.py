"""The two steps around every network call: an image into the network's input, logits into labels.

``image_to_input`` reads (a path), resizes (bilinear, antialiased, to the network's input
size) and normalises with the network's own mean and std; ``logits_to_labels`` up-samples
logits bilinearly to the size asked for (before the argmax, in float32 so fp16 logits do not
tie), takes the argmax and optionally maps the class indices through a lookup table (train
ids -> Cityscapes label ids). The evaluator, the Predictor, ONNX evaluation, int8
calibration, video and the speed protocol all call these two, so they cannot drift apart;
the datasets' evaluation transforms are tested against ``image_to_input``.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from rtseg.data.io import read_image
from rtseg.errors import RtsegError


def _uint8_chw(image: str | os.PathLike | np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(image, (str, os.PathLike)):
        image = read_image(image)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise RtsegError(f"expected an HxWx3 uint8 RGB image, got {image.dtype} {image.shape}")
        # torch cannot wrap a read-only array (np.asarray of a PIL image) without a copy.
        image = np.ascontiguousarray(image) if image.flags.writeable else image.copy()
        return torch.from_numpy(image).permute(2, 0, 1)
    if isinstance(image, torch.Tensor) and image.dtype == torch.uint8 and image.ndim == 3 and image.shape[0] == 3:
        return image
    got = f"{image.dtype} {tuple(image.shape)}" if hasattr(image, "shape") else type(image).__name__
    raise RtsegError(f"expected an image path, an HxWx3 uint8 array or a 3xHxW uint8 tensor, got {got}")


def resize_image(image: torch.Tensor, size: Sequence[int] | None) -> torch.Tensor:
    """``[..., 3, H, W]`` uint8 -> the same at ``size`` (bilinear, antialiased); None keeps it."""
    from torchvision.transforms.v2 import functional as TF

    if size is None or tuple(image.shape[-2:]) == tuple(size):
        return image
    return TF.resize(image, [int(size[0]), int(size[1])], antialias=True)


def normalise(images_uint8: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``[..., 3, H, W]`` uint8 -> float32 scaled to 0..1 and normalised (torchvision's v2 kernels)."""
    from torchvision.transforms.v2 import functional as TF

    x = TF.to_dtype(images_uint8, torch.float32, scale=True)
    return TF.normalize(x, list(mean), list(std))


def image_to_input(image: str | os.PathLike | np.ndarray | torch.Tensor, mean: Sequence[float],
                   std: Sequence[float], size: Sequence[int] | None = None,
                   device: str | torch.device = "cpu") -> torch.Tensor:
    """An image (a path, an ``HxWx3`` uint8 array or a ``3xHxW`` uint8 tensor) -> ``[1, 3, h, w]``
    float32 on ``device``, resized to ``size`` (None: as it is) and normalised with ``mean``/``std``.

    Resizing happens on uint8 on ``device`` (4x less memory traffic than on floats).
    """
    x = _uint8_chw(image).to(device)
    return normalise(resize_image(x, size), mean, std).unsqueeze(0)


def class_indices(logits: torch.Tensor) -> torch.Tensor:
    """``[N, C, ...]`` scores -> ``[N, ...]`` index of the highest score: ``logits.argmax(1)``, exactly.

    Written as ``max(1).indices`` because on the CPU that kernel is about 3x faster than
    ``argmax`` over the channel axis of a contiguous (NCHW) tensor (torch 2.14, 19 x 512 x 1024
    fp32 scores; benchmarks/bench_labels.py); both return the first maximum on ties and treat
    NaN as the maximum (tests/test_plumbing.py checks them equal). The speed protocol's
    end-to-end runners keep ``argmax(1)``, what a deployed program writes, so that ``plain``
    stays ``model.eval()`` as a user runs it; this serves evaluation and the Predictor."""
    return logits.max(1).indices


def logits_to_labels(logits: torch.Tensor, size: Sequence[int] | None = None,
                     id_table: np.ndarray | torch.Tensor | None = None) -> torch.Tensor:
    """``[N, C, h, w]`` logits -> ``[N, H, W]`` int64 labels at ``size`` (None: the logits' size).

    ``id_table`` maps class index -> stored id (``rtseg.data.labels.TRAIN_TO_LABEL`` for
    Cityscapes label ids); None returns the class indices.
    """
    logits = logits.float()
    if size is not None and tuple(logits.shape[-2:]) != tuple(int(s) for s in size):
        logits = F.interpolate(logits, size=(int(size[0]), int(size[1])), mode="bilinear", align_corners=False)
    labels = class_indices(logits)
    if id_table is not None:
        table = torch.as_tensor(id_table, device=labels.device).to(torch.int64)
        labels = table[labels]
    return labels
