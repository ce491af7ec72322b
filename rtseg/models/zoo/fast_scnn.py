"""Fast-SCNN (Poudel, Liwicki, Cipolla 2019, "Fast-SCNN: Fast Semantic Segmentation Network",
arXiv 1902.04502).

The authors released no code. We follow the widely used PyTorch implementation,
Tramac/Fast-SCNN-pytorch at 0638517d (``models/fast_scnn.py``, evaluation in ``eval.py``), and
load its released Cityscapes weights (``weights/fast_scnn_citys.pth``: a plain state dict of
``FastSCNN(19, aux=False)``, saved by ``train.py``). Its Conv-BN-ReLU units are stored as
``X.conv.0`` / ``X.conv.1`` (and depthwise-separable pairs as ``X.conv.0``..``X.conv.4``); ours
are ``ConvBNReLU`` modules (``X.conv`` / ``X.bn``), so ``convert_state_dict`` renames them.

The network: learning to downsample (a 3x3 stride-2 convolution, then two depthwise-separable
stride-2 ones: 1/8), the global feature extractor (MobileNet v2 bottlenecks, expansion 6:
three at 1/16, three at 1/32, three more at 1/32, then the pyramid pooling module), the feature
fusion (the global features upsampled to the 1/8 map, a depthwise 3x3 conv and a 1x1 conv,
added to a 1x1 conv of the 1/8 features), and the classifier (two depthwise-separable convs, a
1x1 conv to classes), its logits resized to the input (bilinear, ``align_corners=True``, as the
model itself does in that code; ``eval.py`` takes them as they are).

Where Tramac's code differs from the paper, we follow the code (its weights need it):
the first convolution has no padding; the fusion's depthwise conv is not dilated; one
auxiliary head (on the 1/8 features, weight 0.4 with ``--aux``) where the paper puts auxiliary
losses after both the downsampling and the global feature modules. Its released weights were
trained without that head (``aux=False``), so a file without it loads with the head left at
its initialisation (it only matters to further training).

One departure, for any input size: the code upsamples the global features by 4, which fails
unless 4 divides the 1/8 map; we resize them to the 1/8 map's size, the same where the code
runs (``align_corners=True`` makes both use the same sampling grid).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from rtseg.errors import RtsegError
from rtseg.normalisation import IMAGENET_MEAN, IMAGENET_STD
from rtseg.models.registry import register_model
from rtseg.models.segmentation import SegmentationNetwork
from rtseg.models.zoo.blocks import ConvBNReLU, resize
from rtseg.models.zoo.eval_parameters import fill_training_heads
from rtseg.models.zoo.pyramid import PyramidPooling
from rtseg.models.zoo.release_keys import compile_rules, rename_by_rules

# Tramac's key -> ours, first match wins.
_RENAMES = compile_rules((
    (r"^((?:learning_to_downsample|classifier)\.dsconv\d)\.conv\.0\.", r"\1.0.conv."),
    (r"^((?:learning_to_downsample|classifier)\.dsconv\d)\.conv\.1\.", r"\1.0.bn."),
    (r"^((?:learning_to_downsample|classifier)\.dsconv\d)\.conv\.3\.", r"\1.1.conv."),
    (r"^((?:learning_to_downsample|classifier)\.dsconv\d)\.conv\.4\.", r"\1.1.bn."),
    (r"^(.*\.block)\.2\.", r"\1.2.conv."),
    (r"^(.*\.block)\.3\.", r"\1.2.bn."),
    (r"^(feature_fusion\.conv_(?:lower|higher)_res)\.0\.", r"\1.conv."),
    (r"^(feature_fusion\.conv_(?:lower|higher)_res)\.1\.", r"\1.bn."),
    (r"^auxlayer\.0\.", "aux_head.0.conv."),
    (r"^auxlayer\.1\.", "aux_head.0.bn."),
    (r"^auxlayer\.4\.", "aux_head.2."),
    (r"^(?!classifier\.conv\.)(.*)\.conv\.0\.", r"\1.conv."),  # the remaining Conv-BN-ReLU units
    (r"^(?!classifier\.conv\.)(.*)\.conv\.1\.", r"\1.bn."),
))


def _tramac_to_ours(key: str) -> str:
    return rename_by_rules(key, _RENAMES)


def separable(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """Depthwise 3x3 (may stride) then pointwise 1x1, each with BN and ReLU."""
    return nn.Sequential(ConvBNReLU(in_channels, in_channels, 3, stride, groups=in_channels),
                         ConvBNReLU(in_channels, out_channels, 1))


class LinearBottleneck(nn.Module):
    """MobileNet v2's inverted residual: 1x1 expand, depthwise 3x3 (may stride), linear 1x1."""

    def __init__(self, in_channels: int, out_channels: int, expansion: int = 6, stride: int = 1):
        super().__init__()
        wide = in_channels * expansion
        self.use_shortcut = stride == 1 and in_channels == out_channels
        self.block = nn.Sequential(ConvBNReLU(in_channels, wide, 1), ConvBNReLU(wide, wide, 3, stride, groups=wide),
                                   ConvBNReLU(wide, out_channels, 1, relu=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_shortcut else out


def _bottlenecks(in_channels: int, out_channels: int, count: int, stride: int) -> nn.Sequential:
    return nn.Sequential(*(LinearBottleneck(in_channels if i == 0 else out_channels, out_channels,
                                            stride=stride if i == 0 else 1) for i in range(count)))


def learning_to_downsample() -> nn.Sequential:
    return nn.Sequential(OrderedDict(conv=ConvBNReLU(3, 32, 3, 2, padding=0),  # unpadded, as released
                                     dsconv1=separable(32, 48, 2), dsconv2=separable(48, 64, 2)))


def global_feature_extractor() -> nn.Sequential:
    return nn.Sequential(OrderedDict(bottleneck1=_bottlenecks(64, 64, 3, 2), bottleneck2=_bottlenecks(64, 96, 3, 2),
                                     bottleneck3=_bottlenecks(96, 128, 3, 1), ppm=PyramidPooling(128, 128)))


class FeatureFusion(nn.Module):
    def __init__(self, high_channels: int = 64, low_channels: int = 128, out_channels: int = 128):
        super().__init__()
        self.dwconv = ConvBNReLU(low_channels, out_channels, 3, groups=low_channels)
        self.conv_lower_res = ConvBNReLU(out_channels, out_channels, 1, bias=True, relu=False)
        self.conv_higher_res = ConvBNReLU(high_channels, out_channels, 1, bias=True, relu=False)

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        low = resize(low, high.shape[-2:], align_corners=True)
        return torch.relu(self.conv_higher_res(high) + self.conv_lower_res(self.dwconv(low)))


class Classifier(nn.Module):
    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.dsconv1 = separable(channels, channels)
        self.dsconv2 = separable(channels, channels)
        self.conv = nn.Sequential(nn.Dropout(0.1), nn.Conv2d(channels, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.dsconv2(self.dsconv1(x)))


@register_model("fast_scnn")
class FastSCNN(SegmentationNetwork):
    """Fast-SCNN for ``num_classes`` classes (trained from scratch in the paper and in Tramac's code)."""

    def __init__(self, num_classes: int = 19, pretrained: bool | str | Path | None = None):
        # eval.py: torchvision ToTensor (RGB, 0..1) and ImageNet statistics.
        super().__init__("fast_scnn", num_classes, IMAGENET_MEAN, IMAGENET_STD)
        if pretrained:
            raise RtsegError("fast_scnn has no ImageNet weights (it is trained from scratch); load the "
                             "Cityscapes release with weights='fast_scnn_citys.pth'")
        self.learning_to_downsample = learning_to_downsample()
        self.global_feature_extractor = global_feature_extractor()
        self.feature_fusion = FeatureFusion()
        self.classifier = Classifier(128, num_classes)
        self.aux_head = nn.Sequential(ConvBNReLU(64, 32, 3), nn.Dropout(0.1), nn.Conv2d(32, num_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        size = x.shape[-2:]
        high = self.learning_to_downsample(x)
        logits = self.classifier(self.feature_fusion(high, self.global_feature_extractor(high)))
        logits = resize(logits, size, align_corners=True)  # in the model, as Tramac's code does
        if not self.training:
            return logits
        return {"out": logits, "aux": resize(self.aux_head(high), size, align_corners=True)}

    def convert_state_dict(self, state):
        return fill_training_heads(self, {_tramac_to_ours(key): value for key, value in state.items()})
