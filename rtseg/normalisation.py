"""The one place a network's input normalisation comes from.

Every network ``create_model`` returns carries ``mean`` and ``std`` (RGB, for inputs scaled to
0..1) as its own attributes: an encoder takes them from the configuration of the weights it
loads (timm's ``pretrained_cfg``, torchvision's transforms, Megvii's BGR 0..255 convention
folded into the first layer), a whole model from its authors' training code. Checkpoints store
them, and a network rebuilt from a checkpoint gets them back, so training, evaluation, export
and prediction all normalise the same way. ImageNet's statistics are the default only where a
network's authors used them.
"""

from __future__ import annotations

from typing import Sequence

from torch import nn

from rtseg.errors import RtsegError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Inputs scaled to -1..1 (Inception-style; timm's MobileNet v1 weights, TF-ported networks).
INCEPTION_MEAN = (0.5, 0.5, 0.5)
INCEPTION_STD = (0.5, 0.5, 0.5)


def check_normalisation(mean: Sequence[float], std: Sequence[float], source: str = "normalisation"
                        ) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """``(mean, std)`` as 3-tuples of floats, or an error naming ``source``."""
    try:
        mean_t, std_t = tuple(float(m) for m in mean), tuple(float(s) for s in std)
    except (TypeError, ValueError):
        raise RtsegError(f"{source}: mean {mean!r} and std {std!r} must be 3 numbers each") from None
    if len(mean_t) != 3 or len(std_t) != 3 or any(s <= 0 for s in std_t):
        raise RtsegError(f"{source}: mean {mean_t} and std {std_t} must have 3 values each, std > 0")
    return mean_t, std_t  # type: ignore[return-value]


def model_normalisation(model: nn.Module) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """The ``(mean, std)`` a network's input is normalised with: the network's own attributes.

    A module without them (a bare ``nn.Module`` a user passes in) is a mistake to name, not a
    reason to guess ImageNet's statistics silently.
    """
    mean, std = getattr(model, "mean", None), getattr(model, "std", None)
    if mean is None or std is None:
        raise RtsegError(f"{type(model).__name__} has no mean/std attributes: build it with "
                         "rtseg.create_model, or set model.mean and model.std (RGB, inputs in 0..1)")
    return check_normalisation(mean, std, type(model).__name__)
