"""DDRNet-23-slim (Hong, Pan, Sun, Jia 2021, "Deep Dual-resolution Networks for Real-time and
Accurate Semantic Segmentation of Road Scenes", arXiv 2101.06085).

Follows the authors' code, ydhongHIT/DDRNet at de0db317 (``segmentation/DDRNet_23_slim.py``,
last changed in 6023467c), and loads its released files as they are:

- the Cityscapes model (``best_val_smaller.pth``, 77.8 val mIoU): HRNet-Semantic-Segmentation's
  training dict, every key prefixed ``model.``, with the auxiliary head (``seghead_extra``) and
  the loss's class weights (``loss.criterion.weight``, dropped);
- the ImageNet backbone (``DDRNet23s_imagenet.pth``, ``classification/DDRNet_23_slim.py``): its
  stem, both branches and the bilateral fusions load with ``pretrained=PATH``; its classifier
  (``down5``, ``last_layer``, ``linear``) is dropped, and the DAPPM and heads start from scratch.

Two branches after a shared stem: a high-resolution one kept at 1/8 (``layer3_``..``layer5_``)
and a low-resolution one going to 1/64 (``layer3``..``layer5``), exchanging features twice
(``down3``/``down4`` high -> low, ``compression3``/``compression4`` low -> high, bilinear), then
DAPPM on the 1/64 map, added to the high branch, and the head at 1/8. Upsampling is bilinear
with ``align_corners=False`` everywhere, the evaluation's logits included (the README: "Keep
align_corners=False in all places if you want to use our pretrained models").

One departure, for any input size: the official code sizes the fused maps as ``H // 8`` x
``W // 8``, which is the 1/8 map's size only when 8 divides the input (elsewhere its stride-2
convolutions round up and the sums fail). We upsample to the high branch's own size, which is
the same wherever the official code runs.

Training mode returns ``{"out", "aux"}``: the auxiliary head reads the high branch after the
first fusion, as the official ``augment`` output does (the recipe weights it 0.4).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from rtseg.normalisation import IMAGENET_MEAN, IMAGENET_STD
from rtseg.models.registry import register_model
from rtseg.models.segmentation import SegmentationNetwork
from rtseg.models.zoo.backbone_weights import load_backbone_weights
from rtseg.models.zoo.blocks import conv_bn, resize
from rtseg.models.zoo.eval_parameters import fill_training_heads
from rtseg.models.zoo.heads import PreActivationHead
from rtseg.models.zoo.pyramid import DAPPM
from rtseg.models.zoo.release_keys import unwrap_training_checkpoint
from rtseg.models.zoo.residual import BasicBlock, Bottleneck, init_weights, residual_stage, stem

# The official attribute names the ImageNet classifier shares with this network.
BACKBONE = ("conv1", "layer1", "layer2", "layer3", "layer4", "layer5", "layer3_", "layer4_", "layer5_",
            "compression3", "compression4", "down3", "down4")
IMAGENET_CLASSIFIER = ("down5", "last_layer", "linear")
# Official module names -> ours (only the heads are renamed).
RELEASE_RENAMES = {"final_layer.": "head.", "seghead_extra.": "aux_head."}


def _upsample(x: torch.Tensor, size) -> torch.Tensor:
    return resize(x, size, align_corners=False)  # everywhere, the logits included (see above)


class DDRNet(SegmentationNetwork):
    """A dual-resolution network of BasicBlock stages [2, 2, 2, 2] (DDRNet-23) at width ``planes``."""

    def __init__(self, name: str, num_classes: int, planes: int, spp_planes: int, head_planes: int,
                 pretrained: bool | str | Path | None = None):
        # HRNet-Semantic-Segmentation's input transform: RGB in 0..1, ImageNet statistics.
        super().__init__(name, num_classes, IMAGENET_MEAN, IMAGENET_STD)
        high = planes * 2
        self.conv1 = stem(planes)
        self.layer1 = residual_stage(BasicBlock, planes, planes, 2)
        self.layer2 = residual_stage(BasicBlock, planes, planes * 2, 2, stride=2)
        self.layer3 = residual_stage(BasicBlock, planes * 2, planes * 4, 2, stride=2)
        self.layer4 = residual_stage(BasicBlock, planes * 4, planes * 8, 2, stride=2)
        self.layer5 = residual_stage(Bottleneck, planes * 8, planes * 8, 1, stride=2)
        self.layer3_ = residual_stage(BasicBlock, planes * 2, high, 2)
        self.layer4_ = residual_stage(BasicBlock, high, high, 2)
        self.layer5_ = residual_stage(Bottleneck, high, high, 1)
        self.compression3 = nn.Sequential(*conv_bn(planes * 4, high, 1))
        self.compression4 = nn.Sequential(*conv_bn(planes * 8, high, 1))
        self.down3 = nn.Sequential(*conv_bn(high, planes * 4, 3, 2))
        self.down4 = nn.Sequential(*conv_bn(high, planes * 4, 3, 2, relu=True), *conv_bn(planes * 4, planes * 8, 3, 2))
        self.spp = DAPPM(planes * 16, spp_planes, planes * 4)
        self.head = PreActivationHead(planes * 4, head_planes, num_classes)
        self.aux_head = PreActivationHead(high, head_planes, num_classes)
        init_weights(self)
        if pretrained:
            load_backbone_weights(self, pretrained, BACKBONE, IMAGENET_CLASSIFIER,
                                  "DDRNet23s_imagenet.pth from the ydhongHIT/DDRNet README")

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        size = x.shape[-2:]
        x = self.layer1(self.conv1(x))
        x = self.layer2(torch.relu(x))
        low3 = self.layer3(torch.relu(x))
        high = self.layer3_(torch.relu(x))
        high_size = high.shape[-2:]
        low = low3 + self.down3(torch.relu(high))
        high = high + _upsample(self.compression3(torch.relu(low3)), high_size)
        aux_input = high
        low4 = self.layer4(torch.relu(low))
        high = self.layer4_(torch.relu(high))
        low = low4 + self.down4(torch.relu(high))
        high = high + _upsample(self.compression4(torch.relu(low4)), high_size)
        high = self.layer5_(torch.relu(high))
        low = _upsample(self.spp(self.layer5(torch.relu(low))), high_size)
        logits = _upsample(self.head(low + high), size)
        if not self.training:
            return logits
        return {"out": logits, "aux": _upsample(self.aux_head(aux_input), size)}

    def convert_state_dict(self, state):
        return fill_training_heads(self, unwrap_training_checkpoint(state, RELEASE_RENAMES))


@register_model("ddrnet_23_slim")
def ddrnet_23_slim(num_classes: int = 19, pretrained: bool | str | Path | None = None) -> DDRNet:
    """DDRNet-23-slim: width 32, DAPPM of 128 channels per scale, heads of 64 channels."""
    return DDRNet("ddrnet_23_slim", num_classes, planes=32, spp_planes=128, head_planes=64, pretrained=pretrained)
