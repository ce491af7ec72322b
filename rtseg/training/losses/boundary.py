"""PIDNet's boundary losses (Xu, Xiong, Bhattacharyya 2023, arXiv 2206.02066; the official code is
XuJiacong/PIDNet at 4c158cf: ``utils/criterion.py``, ``utils/utils.py`` ``FullModel``,
``datasets/base_dataset.py`` ``gen_sample``).

* ``boundary_bce`` (the paper's l_1): binary cross entropy of the boundary head against the
  label boundaries, each class balanced by the other's frequency (``weighted_bce``: boundary
  pixels weigh the fraction of non-boundary pixels and the reverse), averaged over all pixels;
  PIDNet multiplies it by 20 (``BondaryLoss(coeff_bce=20.0)``: the term's ``weight``). The
  frequencies are counted over the whole global batch, the same on every process.
* ``boundary_aware_cross_entropy`` (BAS, the paper's l_3): the semantic loss of the main output
  on the pixels where the boundary head's probability exceeds ``boundary_threshold`` (0.8),
  the others ignored: PIDNet's ``torch.where(sigmoid(boundary) > 0.8, labels, ignore)``
  through the same OHEM cross entropy as the main output (its options are OHEM's).

The boundary target: PIDNet computes ``cv2.Canny(label, 0.1, 0.2)`` on the full-size train-id
map, dilates it with a 4x4 kernel, then scales and crops it with the image. ``label_boundaries``
computes the same Canny and dilation in torch, on the device (on a label map Canny is its
non-maximum suppression alone, see ``canny_edges``; ``tests/test_losses.py`` checks it equal to
OpenCV's), but on the training crop. So the boundary is ``edge_width`` pixels wide in the crop
whatever the random scale; the border of the crop's padding (ignored pixels) is a boundary,
where PIDNet pads its edge map with zeros; and PIDNet's clearing of the 6 pixels along the
full image's border has no counterpart. Canny on class numbers has one quirk that is kept:
where two changes of label lie within two pixels, the one with the smaller difference of
train ids can be suppressed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch.nn import functional as F

from rtseg.data.labels import IGNORE_INDEX
from rtseg.errors import RtsegError
from rtseg.training.losses.base import LossTerm, Partial, register_loss
from rtseg.training.losses.cross_entropy import OhemCrossEntropy


# OpenCV's Canny (imgproc/src/canny.cpp) sorts a gradient into horizontal, vertical or diagonal
# with tan(22.5 deg) in 15-bit fixed point; the same integers give the same choices here.
_CANNY_SHIFT = 15
_TG22 = int(0.4142135623730950488016887242097 * (1 << _CANNY_SHIFT) + 0.5)
_SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


def canny_edges(labels: torch.Tensor) -> torch.Tensor:
    """``[N, H, W]`` integer labels -> ``[N, H, W]`` bool: ``cv2.Canny(labels, 0.1, 0.2) > 0``.

    On integer maps every non-zero Sobel magnitude is above both thresholds, so Canny is its
    non-maximum suppression alone: 3x3 Sobel with replicated borders, the L1 magnitude, a pixel
    kept where it exceeds its two neighbours along the gradient (``>`` before, ``>=`` after, both
    ``>`` on diagonals, zeros outside the image), exactly as canny.cpp compares them.
    """
    image = F.pad(labels[:, None].float(), (1, 1, 1, 1), mode="replicate")
    kernel = torch.tensor(_SOBEL_X, device=labels.device)
    dx = F.conv2d(image, kernel.view(1, 1, 3, 3))[:, 0].round().long()
    dy = F.conv2d(image, kernel.t().reshape(1, 1, 3, 3))[:, 0].round().long()
    magnitude = dx.abs() + dy.abs()
    m = F.pad(magnitude, (1, 1, 1, 1))
    centre, left, right = m[:, 1:-1, 1:-1], m[:, 1:-1, :-2], m[:, 1:-1, 2:]
    up, down = m[:, :-2, 1:-1], m[:, 2:, 1:-1]
    up_left, up_right, down_left, down_right = m[:, :-2, :-2], m[:, :-2, 2:], m[:, 2:, :-2], m[:, 2:, 2:]
    ax, ay = dx.abs(), dy.abs() << _CANNY_SHIFT
    tg22x = ax * _TG22
    tg67x = tg22x + (ax << (_CANNY_SHIFT + 1))
    horizontal = (centre > left) & (centre >= right)
    vertical = (centre > up) & (centre >= down)
    same_sign = (dx < 0) == (dy < 0)  # canny.cpp: s = (xs ^ ys) < 0 ? -1 : 1
    diagonal = torch.where(same_sign, (centre > up_left) & (centre > down_right),
                           (centre > up_right) & (centre > down_left))
    kept = torch.where(ay < tg22x, horizontal, torch.where(ay > tg67x, vertical, diagonal))
    return kept & (magnitude > 0)


def label_boundaries(target: torch.Tensor, width: int = 4) -> torch.Tensor:
    """``[N, H, W]`` labels -> ``[N, 1, H, W]`` float 0/1: PIDNet's boundary target.

    ``canny_edges`` dilated by a ``width`` x ``width`` square with ``cv2.dilate``'s anchor (its
    centre, ``width // 2``): an edge pixel spreads ``(width - 1) // 2`` pixels up and left and
    ``width // 2`` down and right.
    """
    edge = canny_edges(target)[:, None].float()
    if width > 1:
        before, after = width // 2, width - 1 - width // 2
        edge = F.max_pool2d(F.pad(edge, (before, after, before, after)), width, stride=1)
    return edge


def _one_channel(name: str, source: str, logits: torch.Tensor) -> torch.Tensor:
    if logits.dim() != 4 or logits.shape[1] != 1:
        raise RtsegError(f"loss.{name}: output {source!r} must be [N, 1, H, W] boundary logits, "
                         f"got {list(logits.shape)}")
    return logits[:, 0].float()


@register_loss("boundary_bce")
@dataclass
class BoundaryBCE(LossTerm):
    edge_width: int = 4  # PIDNet's edge_size: the 4x4 dilation of the label boundaries

    def check(self, where: str) -> None:
        super().check(where)
        if self.edge_width < 1:
            raise RtsegError(f"{where}.edge_width must be at least 1, got {self.edge_width}")

    def partial(self, name: str, outputs: Mapping[str, torch.Tensor], target: torch.Tensor,
                class_weights: torch.Tensor | None) -> Partial:
        logits, target = self.fit(name, outputs[self.source(name)], target)
        logits = _one_channel(name, self.source(name), logits)
        edges = label_boundaries(target, self.edge_width)[:, 0]
        losses = F.binary_cross_entropy_with_logits(logits, edges, reduction="none")
        boundary = edges > 0.5
        return Partial(((losses * boundary).sum(), (losses * ~boundary).sum()),
                       (boundary.sum().to(torch.float32), (~boundary).sum().to(torch.float32)))

    def combine(self, sums: Sequence[torch.Tensor], counts: Sequence[torch.Tensor]) -> torch.Tensor:
        on_sum, off_sum = sums
        on, off = counts
        total = (on + off).clamp_min(1.0)
        # weighted_bce: boundary pixels weigh off/total, the others on/total; mean over all pixels
        return (off * on_sum + on * off_sum) / (total * total)


@register_loss("boundary_aware_cross_entropy")
@dataclass
class BoundaryAwareCrossEntropy(OhemCrossEntropy):
    boundary: str = "boundary"  # the output holding the boundary logits
    boundary_threshold: float = 0.8

    def check(self, where: str) -> None:
        super().check(where)
        if not 0 <= self.boundary_threshold < 1:
            raise RtsegError(f"{where}.boundary_threshold must be in [0, 1), got {self.boundary_threshold}")
        if self.resize == "nearest_labels":
            raise RtsegError(f"{where}.resize: nearest_labels is not available here (the boundary gate "
                             "is compared with the labels at their own size)")

    def reads(self, name: str) -> set[str]:
        return {self.source(name), self.boundary}

    def partial(self, name: str, outputs: Mapping[str, torch.Tensor], target: torch.Tensor,
                class_weights: torch.Tensor | None) -> Partial:
        logits, target = self.fit(name, outputs[self.source(name)], target)
        gate, _ = self.fit(name, outputs[self.boundary], target)
        with torch.no_grad():
            near = torch.sigmoid(_one_channel(name, self.boundary, gate)) > self.boundary_threshold
            target = torch.where(near, target, torch.full_like(target, IGNORE_INDEX))
        return self.partial_on(name, logits, target, class_weights)
