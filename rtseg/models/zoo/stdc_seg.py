"""STDC1-Seg and STDC2-Seg (Fan et al. 2021, "Rethinking BiSeNet For Real-time Semantic
Segmentation", CVPR, arXiv 2104.13188). "Seg50"/"Seg75" in the paper are the evaluation
scales 0.5 and 0.75 of the 1024x2048 images, not other networks.

Follows ``models/model_stages.py`` of github.com/MichaelFan01/STDC-Seg (commit 59ff37f), the
configuration its README evaluates (``use_boundary_8=True``, ``use_conv_last=False``):

* STDC trunk (``rtseg.models.zoo.stdc``); BiSeNet's context path on its /16 and /32 maps:
  global average of /32 -> 1x1 ConvBNReLU (128), added to ARM(/32); nearest up-sampling to
  /16, 3x3 ConvBNReLU; added to ARM(/16); nearest to /8, 3x3 ConvBNReLU;
* FFM (two-layer attention) of the trunk's /8 map (256) and that context (128) -> 256;
* heads: 3x3 ConvBNReLU 256 + 1x1 to classes (main), 64-channel heads on the /8 and /16
  context (auxiliary, trained with OHEM like the main one) and the 1-channel detail head on
  the trunk's /8 map (trained with the detail aggregation loss; inference never runs it);
* every logit map is resized to the input by bilinear interpolation with
  ``align_corners=True``, as the official model does before its evaluation resizes it again
  (also ``align_corners=True``) to the label size.

Training mode returns ``{"out", "aux" (the /8 context head, ``conv_out16``), "aux2" (the /16
context head, ``conv_out32``), "detail"}``; "detail" is resized to the input like the official
loss resizes it (bilinear, ``align_corners=True``), so the loss needs no resizing of its own.

Released weights (README: ``model_maxmIOU50.pth``/``75.pth``, a plain state dict saved from
``net.module.state_dict()``) convert with ``convert_state_dict``:

* every batch norm of the head is InPlace-ABN (``modules/bn.py``, ``activation='none'``),
  whose kernels scale by ``|weight| + eps`` (``modules/src/inplace_abn_cpu.cpp``,
  ``forward_cpu``); the conversion stores that effective scale, so a plain ``BatchNorm2d``
  computes the same function. The trunk uses ``nn.BatchNorm2d`` and is copied unchanged;
* the file also holds the trunk's ImageNet head (``conv_last``, ``fc``, ``bn``, ``linear``),
  the ``x2``..``x32`` aliases of ``features``, and the detail heads ``conv_out_sp2/4/16``
  that the released recipe never trains: all are left out (our model has none of them, so
  every parameter it has is trained);
* a file without the training-only heads (``aux``, ``aux2``, ``detail``) loads with them at
  their initialisation, as for every zoo network.

Input normalisation: ImageNet mean/std on RGB in 0..1 (``cityscapes.py``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import torch

from rtseg.normalisation import IMAGENET_MEAN, IMAGENET_STD
from rtseg.models.registry import register_model
from rtseg.models.segmentation import SegmentationNetwork
from rtseg.models.zoo.blocks import FeatureFusion, resize
from rtseg.models.zoo.context_path import ContextPath, rename_bisenet_key
from rtseg.models.zoo.eval_parameters import fill_training_heads
from rtseg.models.zoo.heads import SegHead
from rtseg.models.zoo.release_keys import fill_batch_counts
from rtseg.models.zoo.stdc import STDCNet, convert_stdc_key, is_stdc_classifier_key

INPLACE_ABN_EPS = 1e-5  # modules/bn.py ABN default

_UNTRAINED_HEADS = re.compile(r"conv_out_sp(2|4|16)\.")


class STDCSeg(SegmentationNetwork):
    """STDC-Seg on an STDC1 or STDC2 trunk; ``pretrained`` is the authors' ImageNet trunk file."""

    def __init__(self, name: str, variant: str, num_classes: int = 19,
                 pretrained: bool | str | Path | None = None):
        super().__init__(name, num_classes, IMAGENET_MEAN, IMAGENET_STD)
        self.backbone = STDCNet(variant, pool_includes_padding=True)
        c8, c16, c32 = self.backbone.channels[2:]
        self.context = ContextPath(c16, c32, 128)
        self.ffm = FeatureFusion(c8 + 128, 256, attention="mlp")
        self.head = SegHead(256, 256, num_classes)
        self.aux = SegHead(128, 64, num_classes)
        self.aux2 = SegHead(128, 64, num_classes)
        self.detail = SegHead(c8, 64, 1)
        self.backbone.load_pretrained(pretrained, "the authors' STDCNet813M_73.91.tar / STDCNet1446_76.47.tar")

    def forward(self, x: torch.Tensor):
        size = x.shape[-2:]
        _, _, feat8, feat16, feat32 = self.backbone(x)
        context8, context16 = self.context(feat8.shape[-2:], feat16, feat32)
        out = _to_input(self.head(self.ffm(feat8, context8)), size)
        if not self.training:
            return out
        return {"out": out, "aux": _to_input(self.aux(context8), size), "aux2": _to_input(self.aux2(context16), size),
                "detail": _to_input(self.detail(feat8), size)}

    def convert_state_dict(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        converted: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            if key.startswith("cp.backbone."):
                trunk_key = key[len("cp.backbone."):]
                ours = convert_stdc_key(trunk_key, self.backbone.layers)
                if ours is not None:
                    converted[f"backbone.{ours}"] = value
                elif not is_stdc_classifier_key(trunk_key):
                    converted[f"backbone.{trunk_key}"] = value  # not an official key: fit_state_dict names it
                continue
            if _UNTRAINED_HEADS.match(key):
                continue
            ours = rename_bisenet_key(key)
            if ours.endswith(".bn.weight"):
                value = value.abs() + INPLACE_ABN_EPS  # InPlace-ABN's effective scale
            converted[ours] = value
        return fill_batch_counts(self, fill_training_heads(self, converted))


def _to_input(logits: torch.Tensor, size) -> torch.Tensor:
    return resize(logits, size, align_corners=True)  # model_stages.py's own up-sampling


@register_model("stdc1_seg")
def stdc1_seg(num_classes: int = 19, pretrained: bool | str | Path | None = None) -> STDCSeg:
    """STDC1-Seg (``STDCNet813`` trunk)."""
    return STDCSeg("stdc1_seg", "stdc1", num_classes, pretrained)


@register_model("stdc2_seg")
def stdc2_seg(num_classes: int = 19, pretrained: bool | str | Path | None = None) -> STDCSeg:
    """STDC2-Seg (``STDCNet1446`` trunk)."""
    return STDCSeg("stdc2_seg", "stdc2", num_classes, pretrained)
