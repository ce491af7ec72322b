"""What every loss term shares: the output it reads, its weight, how its size meets the labels.

A recipe's loss (the config's ``loss:`` section) is a weighted sum of named terms. Each term
works in two steps so that a run on N processes computes the gradient of a 1-process run over
the same images:

1. ``partial``, on this process's share of the batch: a few differentiable sums (``Partial.sums``)
   and a few counts (``Partial.counts``: pixels, weights, images, ... never differentiated);
2. ``combine(sums, counts)``, once the recipe has added every process's counts (one all-reduce
   for all terms, ``rtseg.training.losses.recipe``): the term's value. It is linear in the sums,
   so the gradient of ``world_size x combine(this process's sums, global counts)``, averaged by
   DistributedDataParallel, is that of the global value.

A term chooses its pixels from its own process's images only (the hardest pixels *of each
image*), so what it keeps does not depend on how the batch is split over processes either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Literal, Mapping, NamedTuple, Optional, Sequence

import torch
from torch.nn import functional as F

from rtseg.data.labels import IGNORE_INDEX
from rtseg.errors import RtsegError

Resize = Literal["none", "bilinear", "bilinear_align_corners", "nearest_labels"]
_EPS = 1e-12  # a normaliser of 0 (a batch of ignored pixels only) gives a loss of 0, not NaN


class Partial(NamedTuple):
    sums: tuple[torch.Tensor, ...]    # differentiable scalars
    counts: tuple[torch.Tensor, ...]  # scalars without gradient, added over processes


@dataclass
class LossTerm:
    """The keys every term has; each kind adds its own (its dataclass's fields)."""

    type: str = ""
    # the network output it reads ("out" is the main logits); null: the output named like the term
    output: Optional[str] = None
    weight: float = 1.0
    # when the output's height x width differ from the labels': none (an error), bilinear or
    # bilinear_align_corners (the logits are up-sampled to the labels), nearest_labels (the labels
    # are down-sampled to the output, as ENet's encoder stage was trained)
    resize: Resize = "none"

    KIND: ClassVar[str] = ""  # the registered type name

    def __post_init__(self) -> None:
        self.type = self.type or self.KIND
        if self.type != self.KIND:
            raise ValueError(f"a {type(self).__name__} has type {self.KIND!r}, not {self.type!r}")

    def wants_class_weights(self) -> bool:
        """Whether the run's class weights (``data.class_weights``) must be computed for this term."""
        return False

    # ---------------------------------------------------------------- per kind
    def partial(self, name: str, outputs: Mapping[str, torch.Tensor], target: torch.Tensor,
                class_weights: torch.Tensor | None) -> Partial:
        raise NotImplementedError

    def combine(self, sums: Sequence[torch.Tensor], counts: Sequence[torch.Tensor]) -> torch.Tensor:
        """A mean by default: the one sum over the one count."""
        return sums[0] / counts[0].clamp_min(_EPS)

    def check(self, where: str) -> None:
        """Ranges of this kind's options (types are checked while reading the config)."""
        if self.weight < 0:
            raise RtsegError(f"{where}.weight must be 0 or more, got {self.weight}")

    # ---------------------------------------------------------------- shared
    def source(self, name: str) -> str:
        return self.output or name

    def reads(self, name: str) -> set[str]:
        """The network outputs this term needs."""
        return {self.source(name)}

    def fit(self, name: str, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``logits`` and ``target`` at one size, as ``resize`` says."""
        if logits.shape[-2:] == target.shape[-2:]:
            return logits, target
        if self.resize == "none":
            h, w = logits.shape[-2:]
            raise RtsegError(f"loss.{name}: output {self.source(name)!r} is {h}x{w} but the labels are "
                             f"{target.shape[-2]}x{target.shape[-1]}; set loss.{name}.resize to bilinear, "
                             "bilinear_align_corners or nearest_labels")
        if self.resize == "nearest_labels":
            small = F.interpolate(target[:, None].float(), size=logits.shape[-2:], mode="nearest")
            return logits, small[:, 0].to(target.dtype)
        corners = self.resize == "bilinear_align_corners"
        return F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=corners), target


LOSS_TERMS: dict[str, type[LossTerm]] = {}


def register_loss(kind: str) -> Callable[[type[LossTerm]], type[LossTerm]]:
    """Class decorator: the term's ``type:`` name in configs."""

    def add(cls: type[LossTerm]) -> type[LossTerm]:
        if kind in LOSS_TERMS:
            raise ValueError(f"loss type {kind!r} is already registered")
        cls.KIND = kind
        LOSS_TERMS[kind] = cls
        return cls

    return add


def term_class(data: Any, where: str, source: str) -> type[LossTerm]:
    """The term class a config mapping names with ``type:``."""
    known = ", ".join(sorted(LOSS_TERMS))
    kind = data.get("type") if isinstance(data, dict) else None
    if kind is None:
        raise RtsegError(f"{source}: {where} needs a type (one of {known})")
    if kind not in LOSS_TERMS:
        raise RtsegError(f"{source}: {where}.type must be one of {known}, got {kind!r}")
    return LOSS_TERMS[kind]


def valid_mask(target: torch.Tensor) -> torch.Tensor:
    return target != IGNORE_INDEX


def safe_target(target: torch.Tensor) -> torch.Tensor:
    """Ignored pixels as class 0, for gathers (their values are masked out afterwards)."""
    return torch.where(valid_mask(target), target, torch.zeros_like(target))
