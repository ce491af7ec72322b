"""Cross entropy three ways: over every labelled pixel, over the hardest fraction of each image's
pixels (bootstrapped), and over the pixels the network is least sure of (OHEM).

Written here rather than taken from a toolbox because each recipe normalises differently and
rtseg needs every one of them DDP-exact (``rtseg.training.losses.base``):

* ``cross_entropy``: the sum of ``w_y x CE`` over the labelled pixels, divided by
  ``by_weight_sum`` (the sum of those pixels' class weights: ``F.cross_entropy(weight=w)``'s
  mean, ENet's Torch criterion) or ``by_pixels`` (the number of pixels whose weight is not 0:
  the default of TF's ``tf.losses.sparse_softmax_cross_entropy``, which the RTSeg authors used,
  MSiam/TFSegmentation ``models/basic/basic_model.py``, ``weighted_loss``). With ENet's weights
  the two differ by the mean weight per pixel, which changes how strong the weight decay is
  against the data term.
* ``bootstrapped_cross_entropy``: per image the ``hardest`` fraction of its labelled pixels
  (the largest losses), their mean: TF's coarse pre-training (``bootstrapped_ce_loss(ce, 0.25)``
  in the same file, no class weights). TF takes ``k`` of all pixels because void is a class
  there; here void is ignored, so ``k`` is the fraction of each image's labelled pixels. TF
  sums the per-image means over the batch; rtseg averages them, and a config that wants TF's
  balance against the weight decay gives the term ``weight: <batch size>``.
* ``ohem_cross_entropy``: per image the pixels whose probability of their true class is below
  ``threshold``, but at least the ``min_kept`` least probable ones, then the mean of their
  (class-weighted) losses: the rule of HRNet's ``OhemCrossEntropy``, which PIDNet and DDRNet
  use (XuJiacong/PIDNet ``utils/criterion.py``), equal to CoinCheung/BiSeNet's and STDC-Seg's
  ``OhemCELoss`` (loss above ``-log(threshold)`` or the ``n_min`` largest) without class weights.
  Those implementations choose over the batch of one GPU (``min_kept`` per GPU batch, or a
  sixteenth of its pixels); rtseg chooses per image, so ``min_kept`` counts pixels *per image*
  (PIDNet's 131072 over 6 images per GPU is about 21845) and the choice does not depend on
  how the batch is split. An image with fewer labelled pixels than ``min_kept`` keeps them all
  (HRNet's indexing would drop its most probable pixel).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Mapping, Union

import torch
from torch.nn import functional as F

from rtseg.data.labels import IGNORE_INDEX
from rtseg.errors import RtsegError
from rtseg.training.losses.base import LossTerm, Partial, register_loss, safe_target, valid_mask

Normalise = Literal["by_weight_sum", "by_pixels"]


@dataclass
class ClassWeighted(LossTerm):
    # true: the run's class weights (data.class_weights); false: none; a list: these, one per class
    class_weights: Union[bool, list[float]] = True

    def wants_class_weights(self) -> bool:
        return self.class_weights is True

    def weights_for(self, name: str, logits: torch.Tensor, run_weights: torch.Tensor | None) -> torch.Tensor | None:
        if self.class_weights is False:
            return None
        if self.class_weights is True:
            if run_weights is None:
                raise RtsegError(f"loss.{name} needs the run's class weights, and none were given")
            weights = run_weights
        else:
            weights = torch.tensor(self.class_weights, dtype=torch.float32)
        if weights.numel() != logits.shape[1]:
            raise RtsegError(f"loss.{name}.class_weights has {weights.numel()} values for "
                             f"{logits.shape[1]} classes")
        return weights.to(device=logits.device, dtype=torch.float32)

    def check(self, where: str) -> None:
        super().check(where)
        if isinstance(self.class_weights, list) and any(w < 0 for w in self.class_weights):
            raise RtsegError(f"{where}.class_weights must be 0 or more")


def pixel_losses(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """``[N, H, W]``: ``w_y x CE`` of every pixel in float32, 0 where the label is ignored."""
    return F.cross_entropy(logits.float(), target, weight=weights, ignore_index=IGNORE_INDEX, reduction="none")


def _normaliser(mode: str, keep: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """What the kept pixels' summed losses are divided by (``keep``: a mask of labelled pixels)."""
    if weights is None:
        return keep.sum().to(torch.float32)
    pixel_weights = weights[target[keep]]
    if mode == "by_weight_sum":
        return pixel_weights.sum()
    return (pixel_weights != 0).sum().to(torch.float32)


@register_loss("cross_entropy")
@dataclass
class CrossEntropy(ClassWeighted):
    normalise: Normalise = "by_weight_sum"

    def partial(self, name: str, outputs: Mapping[str, torch.Tensor], target: torch.Tensor,
                class_weights: torch.Tensor | None) -> Partial:
        logits, target = self.fit(name, outputs[self.source(name)], target)
        weights = self.weights_for(name, logits, class_weights)
        total = F.cross_entropy(logits.float(), target, weight=weights, ignore_index=IGNORE_INDEX, reduction="sum")
        return Partial((total,), (_normaliser(self.normalise, valid_mask(target), target, weights),))


@register_loss("bootstrapped_cross_entropy")
@dataclass
class BootstrappedCrossEntropy(LossTerm):
    hardest: float = 0.25  # the fraction of each image's labelled pixels kept (the largest losses)

    def check(self, where: str) -> None:
        super().check(where)
        if not 0 < self.hardest <= 1:
            raise RtsegError(f"{where}.hardest must be in (0, 1], got {self.hardest}")

    def partial(self, name: str, outputs: Mapping[str, torch.Tensor], target: torch.Tensor,
                class_weights: torch.Tensor | None) -> Partial:
        logits, target = self.fit(name, outputs[self.source(name)], target)
        valid = valid_mask(target).flatten(1)
        losses = pixel_losses(logits, target, None).flatten(1)
        labelled = valid.sum(1)
        kept = torch.where(labelled > 0, (labelled * self.hardest).floor().long().clamp_min(1), labelled)
        most = int(kept.max()) if kept.numel() else 0
        if most == 0:
            return Partial((losses.sum() * 0,), (kept.sum().to(torch.float32),))
        # ignored pixels rank below every real loss (CE >= 0), and no image keeps more than it has
        ranked = torch.where(valid, losses, torch.full_like(losses, -1.0)).topk(most, dim=1).values
        keep = torch.arange(most, device=losses.device)[None] < kept[:, None]
        return Partial(((ranked * keep).sum(),), (kept.sum().to(torch.float32),))


@register_loss("ohem_cross_entropy")
@dataclass
class OhemCrossEntropy(ClassWeighted):
    class_weights: Union[bool, list[float]] = False
    threshold: float = 0.7  # keep pixels whose probability of their true class is below this ...
    min_kept: int = 100000  # ... and at least this many per image, the least probable ones
    normalise: Normalise = "by_pixels"  # by_pixels: the mean over the kept pixels, as the official code

    def check(self, where: str) -> None:
        super().check(where)
        if not 0 < self.threshold <= 1:
            raise RtsegError(f"{where}.threshold must be in (0, 1], got {self.threshold}")
        if self.min_kept < 0:
            raise RtsegError(f"{where}.min_kept must be 0 or more, got {self.min_kept}")

    def kept(self, probability: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """``[N, P]`` true-class probabilities and labelled mask -> the mask of pixels kept."""
        per_image = probability.shape[1]
        padded = torch.where(valid, probability, torch.full_like(probability, 2.0))  # ignored: never kept
        if self.min_kept == 0:
            limit = torch.full_like(padded[:, 0], self.threshold)
        elif self.min_kept >= per_image:
            limit = torch.full_like(padded[:, 0], 3.0)
        else:
            # the (min_kept + 1)-th smallest probability: the pixels below it are the min_kept least
            # probable (2.0, i.e. all labelled pixels, when the image has no more than min_kept)
            kth = padded.kthvalue(self.min_kept + 1, dim=1).values
            limit = kth.clamp_min(self.threshold)
        return valid & (padded < limit[:, None])

    def partial(self, name: str, outputs: Mapping[str, torch.Tensor], target: torch.Tensor,
                class_weights: torch.Tensor | None) -> Partial:
        logits, target = self.fit(name, outputs[self.source(name)], target)
        return self.partial_on(name, logits, target, class_weights)

    def partial_on(self, name: str, logits: torch.Tensor, target: torch.Tensor,
                   class_weights: torch.Tensor | None) -> Partial:
        weights = self.weights_for(name, logits, class_weights)
        with torch.no_grad():
            probability = F.softmax(logits.float(), dim=1).gather(1, safe_target(target)[:, None])[:, 0]
        keep = self.kept(probability.flatten(1), valid_mask(target).flatten(1)).view_as(target)
        total = (pixel_losses(logits, target, weights) * keep).sum()
        return Partial((total,), (_normaliser(self.normalise, keep, target, weights),))
