"""PIDNet-S/M/L (Xu, Xiong, Bhattacharyya 2023, "PIDNet: A Real-time Semantic Segmentation Network
Inspired by PID Controllers", CVPR 2023, arXiv 2206.02066).

Follows the authors' code, XuJiacong/PIDNet at 4c158cf2 (``models/pidnet.py``,
``models/model_utils.py``; evaluation in ``datasets/base_dataset.py`` and ``configs/default.py``),
and loads its released files as they are:

- the Cityscapes models (``PIDNet_{S,M,L}_Cityscapes_{val,test}.pt``): ``tools/train.py`` saves
  ``FullModel(model, sem_loss, bd_loss).state_dict()``, so every key is prefixed ``model.``, the
  P and D heads (``seghead_p``, ``seghead_d``) are included, and so are the class weights of the
  OHEM cross entropy (``sem_loss.criterion.weight``, dropped);
- the ImageNet backbones (``PIDNet_{S,M,L}_ImageNet.pth.tar``, ``{"state_dict": ...}``): the
  stem and the I branch must be there; the P and D branch modules load when the file holds
  them (the classification code is unpublished; XuJiacong/PIDNet#24 lists ``down5``,
  ``last_layer`` and ``linear`` as the file's only keys the segmentation model lacks: dropped).

Three branches after a shared stem: I (``layer3``..``layer5``, to 1/64, then PAPPM for S/M or
DAPPM for L), P (``layer3_``..``layer5_`` at 1/8, taking I's features through the pixel-attention
fusions ``pag3``/``pag4``) and D (``layer3_d``..``layer5_d`` at 1/8, adding I's features through
``diff3``/``diff4``); the boundary attention (``dfm``: Light-Bag for S/M, Bag for L) weighs P
against I by sigmoid(D), and the head works at 1/8.

The evaluation's resizing: inside the network bilinear with ``align_corners=False``; the logits
are resized to the input with ``align_corners=True`` (``configs/default.py`` sets
``MODEL.ALIGN_CORNERS = True`` and no Cityscapes config overrides it; ``base_dataset.inference``
and ``FullModel`` use it), which eval mode here does too, and training mode for every output.
The evaluation picks output 1 of ``[p_head, main, d_head]`` (``TEST.OUTPUT_INDEX: 1``): eval
mode returns only that one. Training mode returns ``{"out", "aux", "boundary"}`` (the P head
weighted 0.4, the main one 1.0 with OHEM, and the 1-channel boundary logits for the weighted
BCE and the boundary-aware cross entropy).

The official forward applies in-place ReLUs to the two maps it had kept for the P and D heads,
so those heads read the rectified maps; we feed them the same. One departure, for any input
size: the official code sizes the 1/8 maps as ``H // 8`` x ``W // 8``, which fails unless 8
divides the input; we use the P branch's own size, the same wherever the official code runs.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from rtseg.normalisation import IMAGENET_MEAN, IMAGENET_STD
from rtseg.models.registry import register_model
from rtseg.models.segmentation import SegmentationNetwork
from rtseg.models.zoo.backbone_weights import load_backbone_weights
from rtseg.models.zoo.blocks import bn_relu_conv, conv_bn, resize
from rtseg.models.zoo.eval_parameters import fill_training_heads
from rtseg.models.zoo.heads import PreActivationHead
from rtseg.models.zoo.pyramid import DAPPM, PAPPM
from rtseg.models.zoo.release_keys import unwrap_training_checkpoint
from rtseg.models.zoo.residual import BasicBlock, Bottleneck, init_weights, residual_stage, stem

I_BRANCH = ("conv1", "layer1", "layer2", "layer3", "layer4", "layer5")
P_BRANCH = ("layer3_", "layer4_", "layer5_", "compression3", "compression4", "pag3", "pag4")
D_BRANCH = ("layer3_d", "layer4_d", "layer5_d", "diff3", "diff4")
IMAGENET_CLASSIFIER = ("down5", "last_layer", "linear")
RELEASE_RENAMES = {"final_layer.": "head.", "seghead_p.": "aux_head.", "seghead_d.": "boundary_head."}


def _upsample(x: torch.Tensor, size) -> torch.Tensor:
    return resize(x, size, align_corners=False)  # inside the network (``algc = False``)


def _to_input(logits: torch.Tensor, size) -> torch.Tensor:
    return resize(logits, size, align_corners=True)  # the evaluation's MODEL.ALIGN_CORNERS


def _conv_bn(in_channels: int, out_channels: int, kernel: int) -> nn.Sequential:
    return nn.Sequential(*conv_bn(in_channels, out_channels, kernel))


class PagFM(nn.Module):
    """Pixel-attention-guided fusion: per pixel, sigmoid(<f_x(p), f_y(i)>) mixes the upsampled I
    features ``y`` into the P features ``x``."""

    def __init__(self, channels: int, mid_channels: int):
        super().__init__()
        self.f_x = _conv_bn(channels, mid_channels, 1)
        self.f_y = _conv_bn(channels, mid_channels, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        y_q = _upsample(self.f_y(y), size)
        similarity = torch.sigmoid((self.f_x(x) * y_q).sum(dim=1, keepdim=True))
        return (1 - similarity) * x + similarity * _upsample(y, size)


class LightBag(nn.Module):
    """Light boundary-attention-guided fusion (PIDNet-S/M): two 1x1 conv-BN, summed."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv_p = _conv_bn(in_channels, out_channels, 1)
        self.conv_i = _conv_bn(in_channels, out_channels, 1)

    def forward(self, p: torch.Tensor, i: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        attention = torch.sigmoid(d)
        return self.conv_p((1 - attention) * i + p) + self.conv_i(i + attention * p)


class Bag(nn.Module):
    """Boundary-attention-guided fusion (PIDNet-L): BN -> ReLU -> 3x3 conv of the weighted sum."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Sequential(*bn_relu_conv(in_channels, out_channels, 3))

    def forward(self, p: torch.Tensor, i: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        attention = torch.sigmoid(d)
        return self.conv(attention * p + (1 - attention) * i)


class PIDNet(SegmentationNetwork):
    """PIDNet with ``m`` blocks in the early and P/D stages, ``n`` in the I stages 3-4, width ``planes``."""

    def __init__(self, name: str, num_classes: int, m: int, n: int, planes: int, ppm_planes: int,
                 head_planes: int, pretrained: bool | str | Path | None = None):
        # datasets/base_dataset.py: BGR -> RGB, /255, ImageNet statistics.
        super().__init__(name, num_classes, IMAGENET_MEAN, IMAGENET_STD)
        self.conv1 = stem(planes)
        self.layer1 = residual_stage(BasicBlock, planes, planes, m)
        self.layer2 = residual_stage(BasicBlock, planes, planes * 2, m, stride=2)
        self.layer3 = residual_stage(BasicBlock, planes * 2, planes * 4, n, stride=2)
        self.layer4 = residual_stage(BasicBlock, planes * 4, planes * 8, n, stride=2)
        self.layer5 = residual_stage(Bottleneck, planes * 8, planes * 8, 2, stride=2)

        self.compression3 = _conv_bn(planes * 4, planes * 2, 1)
        self.compression4 = _conv_bn(planes * 8, planes * 2, 1)
        self.pag3 = PagFM(planes * 2, planes)
        self.pag4 = PagFM(planes * 2, planes)
        self.layer3_ = residual_stage(BasicBlock, planes * 2, planes * 2, m)
        self.layer4_ = residual_stage(BasicBlock, planes * 2, planes * 2, m)
        self.layer5_ = residual_stage(Bottleneck, planes * 2, planes * 2, 1)

        # The small D branch narrows to ``planes`` and widens back through a bottleneck.
        d3 = planes if m == 2 else planes * 2
        self.layer3_d = BasicBlock(planes * 2, d3, relu=False)
        self.layer4_d = residual_stage(Bottleneck, planes, planes, 1) if m == 2 else BasicBlock(d3, d3, relu=False)
        self.diff3 = _conv_bn(planes * 4, d3, 3)
        self.diff4 = _conv_bn(planes * 8, planes * 2, 3)
        self.layer5_d = residual_stage(Bottleneck, planes * 2, planes * 2, 1)
        self.spp = (PAPPM if m == 2 else DAPPM)(planes * 16, ppm_planes, planes * 4)
        self.dfm = (LightBag if m == 2 else Bag)(planes * 4, planes * 4)

        self.head = PreActivationHead(planes * 4, head_planes, num_classes)
        self.aux_head = PreActivationHead(planes * 2, head_planes, num_classes)
        self.boundary_head = PreActivationHead(planes * 2, planes, 1)
        init_weights(self)
        if pretrained:
            load_backbone_weights(self, pretrained, I_BRANCH, IMAGENET_CLASSIFIER,
                                  f"PIDNet_{name[-1].upper()}_ImageNet.pth.tar from the XuJiacong/PIDNet README",
                                  optional=P_BRANCH + D_BRANCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        size = x.shape[-2:]
        x = self.layer1(self.conv1(x))
        x = torch.relu(self.layer2(torch.relu(x)))
        p = self.layer3_(x)
        d = self.layer3_d(x)
        branch_size = p.shape[-2:]

        x = torch.relu(self.layer3(x))
        p = torch.relu(self.pag3(p, self.compression3(x)))  # the P head's input (see the docstring)
        d = d + _upsample(self.diff3(x), branch_size)
        aux_input = p

        x = torch.relu(self.layer4(x))
        p = self.layer4_(p)
        d = self.layer4_d(torch.relu(d))
        p = self.pag4(p, self.compression4(x))
        d = torch.relu(d + _upsample(self.diff4(x), branch_size))  # the D head's input
        boundary_input = d

        p = self.layer5_(torch.relu(p))
        d = self.layer5_d(d)
        x = _upsample(self.spp(self.layer5(x)), branch_size)
        logits = _to_input(self.head(self.dfm(p, x, d)), size)
        if not self.training:
            return logits
        return {"out": logits, "aux": _to_input(self.aux_head(aux_input), size),
                "boundary": _to_input(self.boundary_head(boundary_input), size)}

    def convert_state_dict(self, state):
        return fill_training_heads(self, unwrap_training_checkpoint(state, RELEASE_RENAMES))


@register_model("pidnet_s")
def pidnet_s(num_classes: int = 19, pretrained: bool | str | Path | None = None) -> PIDNet:
    return PIDNet("pidnet_s", num_classes, m=2, n=3, planes=32, ppm_planes=96, head_planes=128, pretrained=pretrained)


@register_model("pidnet_m")
def pidnet_m(num_classes: int = 19, pretrained: bool | str | Path | None = None) -> PIDNet:
    return PIDNet("pidnet_m", num_classes, m=2, n=3, planes=64, ppm_planes=96, head_planes=128, pretrained=pretrained)


@register_model("pidnet_l")
def pidnet_l(num_classes: int = 19, pretrained: bool | str | Path | None = None) -> PIDNet:
    return PIDNet("pidnet_l", num_classes, m=3, n=4, planes=64, ppm_planes=112, head_planes=256, pretrained=pretrained)
