"""The residual blocks, stages, stem and initialisation shared by DDRNet and PIDNet.

Both networks build on the same HRNet-derived code (ydhongHIT/DDRNet
``segmentation/DDRNet_23_slim.py``, XuJiacong/PIDNet ``models/model_utils.py``), whose blocks
differ from torchvision's ResNet blocks in ways that matter for their released weights:

- the bottleneck expands by 2, not 4;
- a block may end without its ReLU (``relu=False``): the last block of every stage does, so the
  branches are fused before the activation, and a bottleneck does by default, so a stage of
  bottlenecks never applies one at a block output (``residual_stage`` reproduces the rule).

torchvision's ``BasicBlock``/``Bottleneck`` cannot express either, hence our own. The state-dict
keys (``conv1``, ``bn1``, ..., ``downsample.0``/``.1``) are the official ones, so the authors'
checkpoints load without renaming inside blocks. Both networks' head is
``rtseg.models.zoo.heads.PreActivationHead``; their release files unwrap with
``rtseg.models.zoo.release_keys.unwrap_training_checkpoint``.
"""

from __future__ import annotations

import torch
from torch import nn

from rtseg.models.zoo.blocks import conv_bn


def stem(planes: int) -> nn.Sequential:
    """Two 3x3 stride-2 convolutions (with bias, as released) with BN and ReLU: the input at 1/4."""
    return nn.Sequential(nn.Conv2d(3, planes, 3, 2, 1), nn.BatchNorm2d(planes), nn.ReLU(inplace=True),
                         nn.Conv2d(planes, planes, 3, 2, 1), nn.BatchNorm2d(planes), nn.ReLU(inplace=True))


def init_weights(module: nn.Module) -> None:
    """The official initialisation: Kaiming-normal (fan out) convolutions, BN at weight 1, bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _downsample(in_channels: int, out_channels: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and in_channels == out_channels:
        return None
    return nn.Sequential(*conv_bn(in_channels, out_channels, 1, stride))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions (the first may stride) plus the shortcut; ReLU at the end unless ``relu=False``."""

    expansion = 1
    relu_by_default = True

    def __init__(self, in_channels: int, planes: int, stride: int = 1, relu: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _downsample(in_channels, planes, stride)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        out = out + (x if self.downsample is None else self.downsample(x))
        return torch.relu(out) if self.relu else out


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (may stride) -> 1x1 to ``2 * planes`` channels, plus the shortcut; no final ReLU by default."""

    expansion = 2
    relu_by_default = False

    def __init__(self, in_channels: int, planes: int, stride: int = 1, relu: bool = False):
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.downsample = _downsample(in_channels, out_channels, stride)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = torch.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = out + (x if self.downsample is None else self.downsample(x))
        return torch.relu(out) if self.relu else out


def residual_stage(block: type[BasicBlock] | type[Bottleneck], in_channels: int, planes: int, blocks: int,
                   stride: int = 1) -> nn.Sequential:
    """``blocks`` blocks, the first striding; the official ``_make_layer`` activation rule:
    the first block keeps its type's default, the middle ones end with ReLU, the last without."""
    layers = []
    for index in range(blocks):
        if index == 0:
            relu = block.relu_by_default
        else:
            relu = index < blocks - 1
        layers.append(block(in_channels, planes, stride if index == 0 else 1, relu=relu))
        in_channels = planes * block.expansion
    return nn.Sequential(*layers)
