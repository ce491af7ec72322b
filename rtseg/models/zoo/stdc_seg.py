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
  every parameter it has is trained).

Input normalisation: ImageNet mean/std on RGB in 0..1 (``cityscapes.py``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import torch
from torch.nn import functional as F

from rtseg.normalisation import IMAGENET_MEAN, IMAGENET_STD
from rtseg.models.registry import register_model
from rtseg.models.segmentation import SegmentationNetwork
from rtseg.models.zoo.blocks import FeatureFusion, SegHead
from rtseg.models.zoo.context_path import ContextPath, rename_bisenet_key
from rtseg.models.zoo.published import PublishedRecord
from rtseg.models.zoo.stdc import STDCNet, convert_stdc_key, fill_batch_counts, is_stdc_classifier_key

INPLACE_ABN_EPS = 1e-5  # modules/bn.py ABN default

_UNTRAINED_HEADS = re.compile(r"conv_out_sp(2|4|16)\.")

# val mIoU: the README's evaluation.py results; test mIoU: the paper's Cityscapes comparison
# table; FPS: the README's latency runs (latency/run_latency_stages.py, FasterSeg's TensorRT
# tool, which builds a default fp32 engine), batch 1.
_SOURCE = "Fan et al. 2021 (CVPR), Cityscapes comparison table; MichaelFan01/STDC-Seg README"
_RUNTIME = "TensorRT 5.1.5 fp32"
PUBLISHED = (
    PublishedRecord("stdc1_seg", _SOURCE,
                    val_miou=72.2, test_miou=71.9, fps=250.4, gpu="GTX 1080Ti", resolution="512x1024",
                    runtime=_RUNTIME, note="STDC1-Seg50: the 1024x2048 images at scale 0.5"),
    PublishedRecord("stdc1_seg", _SOURCE,
                    val_miou=74.5, test_miou=75.3, fps=126.7, gpu="GTX 1080Ti", resolution="768x1536",
                    runtime=_RUNTIME, note="STDC1-Seg75: scale 0.75"),
    PublishedRecord("stdc2_seg", _SOURCE,
                    val_miou=74.2, test_miou=73.4, fps=188.6, gpu="GTX 1080Ti", resolution="512x1024",
                    runtime=_RUNTIME, note="STDC2-Seg50: scale 0.5"),
    PublishedRecord("stdc2_seg", _SOURCE,
                    val_miou=77.0, test_miou=76.8, fps=97.0, gpu="GTX 1080Ti", resolution="768x1536",
                    runtime=_RUNTIME, note="STDC2-Seg75: scale 0.75"),
)


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
        return fill_batch_counts(self, converted)


def _to_input(logits: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(logits, size, mode="bilinear", align_corners=True)


@register_model("stdc1_seg")
def stdc1_seg(num_classes: int = 19, pretrained: bool | str | Path | None = None) -> STDCSeg:
    """STDC1-Seg (``STDCNet813`` trunk)."""
    return STDCSeg("stdc1_seg", "stdc1", num_classes, pretrained)


@register_model("stdc2_seg")
def stdc2_seg(num_classes: int = 19, pretrained: bool | str | Path | None = None) -> STDCSeg:
    """STDC2-Seg (``STDCNet1446`` trunk)."""
    return STDCSeg("stdc2_seg", "stdc2", num_classes, pretrained)
