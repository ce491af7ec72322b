"""BiSeNet V2 (Yu, Gao, Wang, Yu, Shen, Sang 2021, "BiSeNet V2: Bilateral Network with Guided
Aggregation for Real-time Semantic Segmentation", IJCV, arXiv 2004.02147).

We follow CoinCheung/BiSeNet at 6b4b67a8 (``lib/models/bisenetv2.py``, evaluation in
``tools/evaluate.py``), the implementation the issue names, and load its released Cityscapes
weights (``model_final_v2_city.pth``: ``BiSeNetV2(19).state_dict()`` with the four booster
heads, as ``tools/train_amp.py`` saves it and ``tools/evaluate.py`` loads it strictly). Module
and key names are that code's, except the last booster, ``aux5_4`` there, ``aux5`` here
(``convert_state_dict`` renames it). The paper trains from scratch; CoinCheung's release starts
from ImageNet-pretrained detail and semantic branches (``backbone_v2.pth``, one state dict per
branch, loaded strictly by ``load_pretrain``), which ``pretrained=PATH`` loads the same way.

The network: a detail branch (three stages of 3x3 Conv-BN-ReLU, 64/64/128 channels, to 1/8),
a semantic branch (stem to 1/4, gather-and-expand layers to 1/8, 1/16, 1/32, then the context
embedding block: a global mean added back), the bilateral guided aggregation (each branch's
features gate the other's by a sigmoid, nearest x4 upsampling between 1/32 and 1/8), and the
segment head (3x3 Conv-BN-ReLU to 1024 channels, 1x1 conv to classes, bilinear x8 with
``align_corners=False``). Training mode adds the boosters on the semantic branch's 1/4, 1/8,
1/16 and 1/32 maps (``"aux2"``..``"aux5"``; nearest x2, Conv-BN-ReLU, 1x1 conv, bilinear to the
input), each trained with OHEM cross entropy like the main output. What CoinCheung chose
where the paper is silent (the head's 1024 channels, ReLUs after depthwise convs, the
boosters' upsampling, which replaces interpolation by convolutions for TensorRT) is kept, since
the weights need it; the cost differs from the paper's (docs/zoo.md).

Sizes: the code works where 32 divides the input; ``tools/evaluate.py`` resizes an input up to
the next multiple of 32 (bilinear, ``align_corners=True``), and resizes the logits to the
label's size (bilinear, ``align_corners=True``). Both modes do the same here, so any input size
works and a multiple of 32 is computed exactly as the code does (the two resizes are then
identities, skipped; an exported graph keeps them so that it runs at any size).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from rtseg.models.registry import register_model
from rtseg.models.segmentation import SegmentationNetwork
from rtseg.models.zoo.backbone_weights import load_backbone_weights
from rtseg.models.zoo.bisenet_v1 import COINCHEUNG_CITYSCAPES_MEAN, COINCHEUNG_CITYSCAPES_STD
from rtseg.models.zoo.blocks import ConvBNReLU, conv_bn, resize
from rtseg.models.zoo.eval_parameters import fill_training_heads
from rtseg.models.zoo.pooling import global_average
from rtseg.models.zoo.release_keys import rename_prefixes

DIVISOR = 32  # tools/evaluate.py's get_round_size
RELEASE_RENAMES = {"aux5_4.": "aux5."}


def detail_branch() -> nn.Sequential:
    """Three stages of 3x3 Conv-BN-ReLU (64, 64, 128 channels), each starting with stride 2."""
    return nn.Sequential(OrderedDict(
        S1=nn.Sequential(ConvBNReLU(3, 64, 3, 2), ConvBNReLU(64, 64)),
        S2=nn.Sequential(ConvBNReLU(64, 64, 3, 2), ConvBNReLU(64, 64), ConvBNReLU(64, 64)),
        S3=nn.Sequential(ConvBNReLU(64, 128, 3, 2), ConvBNReLU(128, 128), ConvBNReLU(128, 128))))


class StemBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = ConvBNReLU(3, 16, 3, 2)
        self.left = nn.Sequential(ConvBNReLU(16, 8, 1), ConvBNReLU(8, 16, 3, 2))
        self.right = nn.MaxPool2d(3, 2, 1)
        self.fuse = ConvBNReLU(32, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        return self.fuse(torch.cat([self.left(x), self.right(x)], 1))


class ContextEmbedding(nn.Module):
    """The CE block: BN of the global mean, 1x1 Conv-BN-ReLU, added to the map, 3x3 Conv-BN-ReLU."""

    def __init__(self, channels: int = 128):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.conv_gap = ConvBNReLU(channels, channels, 1)
        self.conv_last = ConvBNReLU(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        context = self.conv_gap(self.bn(global_average(x)))
        return self.conv_last(context + x)


class GatherExpand(nn.Module):
    """Gather-and-expand layer: 3x3 Conv-BN-ReLU, depthwise expansion by 6 (two depthwise convs
    when striding), 1x1 projection, plus the shortcut (depthwise-separable when striding), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, expansion: int = 6):
        super().__init__()
        mid = in_channels * expansion
        self.conv1 = ConvBNReLU(in_channels, in_channels)
        if stride == 1:
            self.dwconv = nn.Sequential(*conv_bn(in_channels, mid, groups=in_channels, relu=True))
        else:
            self.dwconv1 = nn.Sequential(*conv_bn(in_channels, mid, stride=2, groups=in_channels))
            self.dwconv2 = nn.Sequential(*conv_bn(mid, mid, groups=mid, relu=True))
            self.shortcut = nn.Sequential(*conv_bn(in_channels, in_channels, stride=2, groups=in_channels),
                                          *conv_bn(in_channels, out_channels, 1))
        self.conv2 = nn.Sequential(*conv_bn(mid, out_channels, 1))
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv1(x)
        if self.stride == 1:
            feat, shortcut = self.dwconv(feat), x
        else:
            feat, shortcut = self.dwconv2(self.dwconv1(feat)), self.shortcut(x)
        return torch.relu(self.conv2(feat) + shortcut)


class SegmentBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.S1S2 = StemBlock()
        self.S3 = nn.Sequential(GatherExpand(16, 32, 2), GatherExpand(32, 32))
        self.S4 = nn.Sequential(GatherExpand(32, 64, 2), GatherExpand(64, 64))
        self.S5_4 = nn.Sequential(GatherExpand(64, 128, 2), *(GatherExpand(128, 128) for _ in range(3)))
        self.S5_5 = ContextEmbedding(128)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feat2 = self.S1S2(x)
        feat3 = self.S3(feat2)
        feat4 = self.S4(feat3)
        feat5 = self.S5_4(feat4)
        return feat2, feat3, feat4, feat5, self.S5_5(feat5)


class GuidedAggregation(nn.Module):
    """The BGA layer: detail (1/8) and semantic (1/32) features gate each other by a sigmoid."""

    def __init__(self, channels: int = 128):
        super().__init__()
        c = channels
        self.left1 = nn.Sequential(*conv_bn(c, c, groups=c), nn.Conv2d(c, c, 1, bias=False))
        self.left2 = nn.Sequential(*conv_bn(c, c, stride=2), nn.AvgPool2d(3, 2, 1))
        self.right1 = nn.Sequential(*conv_bn(c, c))
        self.right2 = nn.Sequential(*conv_bn(c, c, groups=c), nn.Conv2d(c, c, 1, bias=False))
        self.conv = nn.Sequential(*conv_bn(c, c, relu=True))

    def forward(self, detail: torch.Tensor, semantic: torch.Tensor) -> torch.Tensor:
        left = self.left1(detail) * torch.sigmoid(F.interpolate(self.right1(semantic), scale_factor=4.0))
        right = self.left2(detail) * torch.sigmoid(self.right2(semantic))
        return self.conv(left + F.interpolate(right, scale_factor=4.0))


class SegmentHead(nn.Module):
    """3x3 Conv-BN-ReLU, dropout, (boosters: nearest x2 and Conv-BN-ReLU to ``up**2`` channels),
    1x1 conv to classes, bilinear (``align_corners=False``) to ``up`` times the input."""

    def __init__(self, in_channels: int, mid_channels: int, num_classes: int, up: int, booster: bool):
        super().__init__()
        self.conv = ConvBNReLU(in_channels, mid_channels)
        self.drop = nn.Dropout(0.1)
        classifier_in = up * up if booster else mid_channels
        pre = (nn.Sequential(nn.Upsample(scale_factor=2.0), ConvBNReLU(mid_channels, classifier_in))
               if booster else nn.Identity())
        self.conv_out = nn.Sequential(pre, nn.Conv2d(classifier_in, num_classes, 1))
        self.up = up // 2 if booster else up

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.conv_out(self.drop(self.conv(x)))
        return F.interpolate(logits, scale_factor=float(self.up), mode="bilinear", align_corners=False)


def _round_up(size: int) -> int:
    return (size + DIVISOR - 1) // DIVISOR * DIVISOR


@register_model("bisenet_v2")
class BiSeNetV2(SegmentationNetwork):
    """BiSeNet V2 for ``num_classes`` classes, CoinCheung's layout (see the module docstring)."""

    def __init__(self, num_classes: int = 19, pretrained: bool | str | Path | None = None):
        # lib/data/cityscapes_cv2.py: RGB in 0..1, Cityscapes' own statistics (as for BiSeNet v1).
        super().__init__("bisenet_v2", num_classes, COINCHEUNG_CITYSCAPES_MEAN, COINCHEUNG_CITYSCAPES_STD)
        self.detail = detail_branch()
        self.segment = SegmentBranch()
        self.bga = GuidedAggregation()
        self.head = SegmentHead(128, 1024, num_classes, up=8, booster=False)
        self.aux2 = SegmentHead(16, 128, num_classes, up=4, booster=True)
        self.aux3 = SegmentHead(32, 128, num_classes, up=8, booster=True)
        self.aux4 = SegmentHead(64, 128, num_classes, up=16, booster=True)
        self.aux5 = SegmentHead(128, 128, num_classes, up=32, booster=True)
        self._init_weights()
        if pretrained:
            load_backbone_weights(self, pretrained, ("detail", "segment"), (),
                                  "backbone_v2.pth from the CoinCheung/BiSeNet releases")

    def _init_weights(self) -> None:
        """The code's: Kaiming-normal convs (fan out), zero biases; BN at 1/0, except the last BN of
        each gather-and-expand layer at weight 0, so every layer starts as its shortcut."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for module in self.modules():
            if isinstance(module, GatherExpand):
                nn.init.zeros_(module.conv2[1].weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        size = x.shape[-2:]
        padded = (_round_up(size[0]), _round_up(size[1]))
        rounds = torch.compiler.is_exporting() or tuple(padded) != tuple(size)
        if rounds:
            x = resize(x, padded, align_corners=True)
        feat2, feat3, feat4, feat5, semantic = self.segment(x)
        outputs = {"out": self.head(self.bga(self.detail(x), semantic))}
        if self.training:
            outputs.update(aux2=self.aux2(feat2), aux3=self.aux3(feat3), aux4=self.aux4(feat4), aux5=self.aux5(feat5))
        if rounds:
            outputs = {k: resize(v, size, align_corners=True) for k, v in outputs.items()}
        return outputs if self.training else outputs["out"]

    def convert_state_dict(self, state):
        return fill_training_heads(self, {rename_prefixes(key, RELEASE_RENAMES): value for key, value in state.items()})
