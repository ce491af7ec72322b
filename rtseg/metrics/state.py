"""What every rtseg metric shares: additive state tensors and checked label-map inputs.

A metric's state is a few named tensors that only ever get added to, so per-image updates,
worker processes (``add_state``) and ``torch.distributed`` ranks (``all_reduce``) combine by
summing. The state lives on the device of the first update unless a device is given, so a
CUDA batch is never copied to the CPU to be counted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from rtseg.errors import RtsegError


class AdditiveState:
    """Base of the metrics: ``spec()`` names the state tensors (shape, dtype)."""

    def __init__(self, device: torch.device | str | None = None):
        # device=None: the state follows the tensors of the first update (no copy of a CUDA batch).
        self._device_fixed = device is not None
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.reset()

    def spec(self) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
        raise NotImplementedError

    def reset(self) -> None:
        for name, (shape, dtype) in self.spec().items():
            setattr(self, name, torch.zeros(shape, dtype=dtype, device=self.device))
        self._reduced = False

    def state(self) -> dict[str, torch.Tensor]:
        """The accumulated sums (all additive): what ``all_reduce`` sums and ``add_state`` adds."""
        return {name: getattr(self, name) for name in self.spec()}

    def add_state(self, state: Mapping[str, Any]) -> None:
        """Adds another accumulator's ``state()`` (tensors or numpy arrays), e.g. from a worker process."""
        for name in self.spec():
            getattr(self, name).add_(torch.as_tensor(state[name]).to(self.device))

    def _to(self, device: torch.device) -> None:
        for name in self.spec():
            setattr(self, name, getattr(self, name).to(device))
        self.device = device

    def _follow(self, tensor: torch.Tensor) -> None:
        if not self._device_fixed and tensor.device != self.device:
            self._to(tensor.device)

    def all_reduce(self):
        """Sums the state over all ``torch.distributed`` ranks (no-op when not initialised). Call once."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return self
        if self._reduced:
            raise RuntimeError(f"{type(self).__name__}.all_reduce() called twice without reset(): "
                               "the state already holds the sum over all ranks")
        backend = str(dist.get_backend())
        # NCCL only reduces CUDA tensors: a CPU state travels through the rank's current GPU.
        via_cuda = self.device.type == "cpu" and "nccl" in backend and "gloo" not in backend
        for name in self.spec():
            tensor = getattr(self, name)
            if via_cuda:
                on_gpu = tensor.to(torch.device("cuda", torch.cuda.current_device()))
                dist.all_reduce(on_gpu)
                tensor.copy_(on_gpu.cpu())
            else:
                dist.all_reduce(tensor)
        self._reduced = True
        return self


def ratio(numerator: float, denominator: float) -> float | None:
    """A score, or None where its denominator is 0 (undefined: skipped by the means)."""
    return None if denominator == 0 else float(numerator) / float(denominator)


def mean_defined(values) -> float | None:
    defined = [v for v in values if v is not None and not math.isnan(v)]
    return sum(defined) / len(defined) if defined else None


def as_label_tensor(x, what: str) -> torch.Tensor:
    """``[H, W]`` or ``[N, H, W]`` integer tensor or array -> ``[N, H, W]`` tensor, checked."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{what} must be a tensor or numpy array, got {type(x).__name__}")
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise RtsegError(f"{what} must hold integer label ids, got dtype {x.dtype}")
    if x.dim() not in (2, 3) or x.numel() == 0:
        raise RtsegError(f"{what} must be [H, W] or [N, H, W], got shape {tuple(x.shape)}")
    return x if x.dim() == 3 else x.unsqueeze(0)


def as_batches(pred, gt, instances=None):
    """The prediction, ground truth and (optional) instance maps as ``[N, H, W]`` of one shape."""
    pred = as_label_tensor(pred, "prediction")
    gt = as_label_tensor(gt, "ground truth")
    if pred.shape != gt.shape:
        raise RtsegError(f"prediction shape {tuple(pred.shape)} differs from ground truth shape {tuple(gt.shape)}")
    if instances is not None:
        instances = as_label_tensor(instances, "ground-truth instance ids")
        if instances.shape != gt.shape:
            raise RtsegError(f"instance-id shape {tuple(instances.shape)} differs from ground truth "
                             f"shape {tuple(gt.shape)}")
    return pred, gt, instances
