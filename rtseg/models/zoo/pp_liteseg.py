"""PP-LiteSeg-T and PP-LiteSeg-B (Peng, Liu, Tang et al. 2022, "PP-LiteSeg: A Superior
Real-Time Semantic Segmentation Model", arXiv 2204.02681).

Follows PaddleSeg (github.com/PaddlePaddle/PaddleSeg, commit d7975e7): ``paddleseg/models/
pp_liteseg.py``, ``layers/tensor_fusion.py`` (``UAFM_SpAtten``), ``layers/layer_libs.py`` and
``backbones/stdcnet.py``, with the Cityscapes configs ``configs/pp_liteseg/
pp_liteseg_stdc{1,2}_cityscapes_1024x512_scale*_160k.yml``:

* trunk: STDC1 (T) or STDC2 (B), with PaddlePaddle's average pooling, which leaves the zero
  padding out of the average (``nn.AvgPool2D(exclusive=True)``; see ``rtseg.models.zoo.stdc``);
* SPPM on the /32 map (``rtseg.models.zoo.pyramid.SimplePyramidPooling``): adaptive average
  pools to 1x1, 2x2 and 4x4, each a 1x1 ConvBNReLU (128, with a bias: PaddleSeg's
  ``ConvBNReLU`` keeps the convolution's bias unless told otherwise), bilinearly up-sampled
  back (``align_corners=False``) and summed, then a 3x3 ConvBNReLU (128, biased too);
* FLD: three UAFMs with spatial attention, from /32 to /8: the low-level map through a 3x3
  ConvBNReLU to the high-level map's channels, the high-level map bilinearly up-sampled to it,
  an attention map ``a = sigmoid(ConvBN(ConvBNReLU([mean_c(x), max_c(x), mean_c(y),
  max_c(y)])))`` and ``x*a + y*(scale - a)`` through a 3x3 ConvBNReLU. Output channels
  (32, 64, 128) for T, (64, 96, 128) for B; ``scale`` is PaddleSeg's ``_scale``, a 1 that is
  never trained (``stop_gradient``): a buffer here;
* heads (3x3 ConvBNReLU + 1x1, no biases) on each UAFM output, (32, 64, 64) channels for T,
  64 for B; eval runs the /8 one only and resizes it to the input (bilinear,
  ``align_corners=False``), as does PaddleSeg's evaluation (``core/infer.py``) when it resizes
  the logits back from the scaled image.

Training mode returns ``{"out", "aux" (the /16 head), "aux2" (the /32 head)}``, all at the input
size, each trained with OHEM cross entropy (coefficients 1, 1, 1).

Weights: PaddleSeg's ``model.pdparams`` (a ``paddle.save``'d dict of numpy arrays, read by
``rtseg.models.pdparams`` without PaddlePaddle), and the ImageNet trunks ``PP_STDCNet1/2``
(``pretrained=``, the ``model.pdparams`` inside the ``.tar.gz``). A file without the /16 and /32
heads loads with them at their initialisation, as for every zoo network.
Input normalisation: PaddleSeg's default ``Normalize``, mean 0.5 and std 0.5 on RGB in 0..1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from rtseg.normalisation import INCEPTION_MEAN, INCEPTION_STD
from rtseg.models.registry import register_model
from rtseg.models.segmentation import SegmentationNetwork
from rtseg.models.zoo.blocks import ConvBNReLU, resize
from rtseg.models.zoo.eval_parameters import fill_training_heads
from rtseg.models.zoo.heads import SegHead
from rtseg.models.zoo.pyramid import SimplePyramidPooling
from rtseg.models.zoo.release_keys import compile_rules, fill_batch_counts, paddle_bn_name, rename_by_rules
from rtseg.models.zoo.stdc import STDCNet, convert_stdc_key

# (trunk, UAFM output channels /8 /16 /32, head channels /8 /16 /32)
VARIANTS = {
    "pp_liteseg_t": ("stdc1", (32, 64, 128), (32, 64, 64)),
    "pp_liteseg_b": ("stdc2", (64, 96, 128), (64, 64, 64)),
}
SPPM_CHANNELS = 128

class UnifiedAttentionFusion(nn.Module):
    """UAFM with spatial attention (PaddleSeg's ``UAFM_SpAtten``): fuses a low-level map ``x``
    with the up-sampled high-level map ``y`` by ``x*a + y*(scale - a)``."""

    def __init__(self, low_channels: int, high_channels: int, out_channels: int):
        super().__init__()
        self.project = ConvBNReLU(low_channels, high_channels, 3)
        self.attention = nn.Sequential(ConvBNReLU(4, 2, 3), ConvBNReLU(2, 1, 3, relu=False))
        self.fuse = ConvBNReLU(high_channels, out_channels, 3)
        self.register_buffer("scale", torch.ones(1))

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        x = self.project(low)
        y = resize(high, x.shape[-2:], align_corners=False)
        statistics = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True),
                                y.mean(1, keepdim=True), y.amax(1, keepdim=True)], dim=1)
        a = torch.sigmoid(self.attention(statistics))
        return self.fuse(x * a + y * (self.scale - a))


class PPLiteSeg(SegmentationNetwork):
    def __init__(self, name: str, num_classes: int = 19, pretrained: bool | str | Path | None = None):
        super().__init__(name, num_classes, INCEPTION_MEAN, INCEPTION_STD)
        variant, fused, heads = VARIANTS[name]
        self.backbone = STDCNet(variant, pool_includes_padding=False)
        c8, c16, c32 = self.backbone.channels[2:]
        self.sppm = SimplePyramidPooling(c32, SPPM_CHANNELS)
        # /8, /16, /32; each fuses its trunk map with the output of the one after it.
        highs = (fused[1], fused[2], SPPM_CHANNELS)
        self.fusions = nn.ModuleList(UnifiedAttentionFusion(low, high, out)
                                     for low, high, out in zip((c8, c16, c32), highs, fused))
        self.heads = nn.ModuleList(SegHead(c, mid, num_classes) for c, mid in zip(fused, heads))
        self.backbone.load_pretrained(pretrained, "the model.pdparams inside PaddleSeg's PP_STDCNet1/2.tar.gz")

    def forward(self, x: torch.Tensor):
        size = x.shape[-2:]
        feats = self.backbone(x)[2:]
        high = self.sppm(feats[-1])
        fused = [None, None, None]
        for i in reversed(range(3)):
            high = fused[i] = self.fusions[i](feats[i], high)
        out = _to_input(self.heads[0](fused[0]), size)
        if not self.training:
            return out
        return {"out": out, "aux": _to_input(self.heads[1](fused[1]), size),
                "aux2": _to_input(self.heads[2](fused[2]), size)}

    def convert_state_dict(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        converted = {}
        for key, value in state.items():
            if key.startswith("backbone."):
                ours = convert_stdc_key(key[len("backbone."):], self.backbone.layers)
                converted[f"backbone.{ours}" if ours else key] = value
            else:
                converted[_rename_paddle_key(key)] = value
        return fill_batch_counts(self, fill_training_heads(self, converted))


_RENAMES = compile_rules((
    (r"ppseg_head\.cm\.stages\.(\d+)\.1\.", r"sppm.stages.\1."),  # stage = (pool, ConvBNReLU)
    (r"ppseg_head\.cm\.conv_out\.", "sppm.project."),
    (r"ppseg_head\.arm_list\.(\d+)\.conv_x\.", r"fusions.\1.project."),
    (r"ppseg_head\.arm_list\.(\d+)\.conv_xy_atten\.", r"fusions.\1.attention."),
    (r"ppseg_head\.arm_list\.(\d+)\.conv_out\.", r"fusions.\1.fuse."),
    (r"ppseg_head\.arm_list\.(\d+)\._scale$", r"fusions.\1.scale"),
    (r"seg_heads\.(\d+)\.conv_out\.", r"heads.\1.classifier."),
    (r"seg_heads\.(\d+)\.conv\.", r"heads.\1.conv."),
))


def _rename_paddle_key(key: str) -> str:
    key = rename_by_rules(key, _RENAMES)
    # PaddleSeg's ConvBNReLU/ConvBN name their layers _conv and _batch_norm.
    return paddle_bn_name(key.replace("._conv.", ".conv.").replace("._batch_norm.", ".bn."))


def _to_input(logits: torch.Tensor, size) -> torch.Tensor:
    return resize(logits, size, align_corners=False)  # core/infer.py's resizing back to the image


@register_model("pp_liteseg_t")
def pp_liteseg_t(num_classes: int = 19, pretrained: bool | str | Path | None = None) -> PPLiteSeg:
    """PP-LiteSeg-T (STDC1 trunk)."""
    return PPLiteSeg("pp_liteseg_t", num_classes, pretrained)


@register_model("pp_liteseg_b")
def pp_liteseg_b(num_classes: int = 19, pretrained: bool | str | Path | None = None) -> PPLiteSeg:
    """PP-LiteSeg-B (STDC2 trunk)."""
    return PPLiteSeg("pp_liteseg_b", num_classes, pretrained)
