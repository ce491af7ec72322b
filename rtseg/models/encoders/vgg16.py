"""VGG16 (Simonyan & Zisserman 2014) as a fully convolutional encoder, the FCN8s trunk.

Layers and keys are torchvision's ``vgg16().features``; fc6/fc7 become 7x7 and 1x1
convolutions with 4096 channels (as in FCN), so the torchvision or timm ImageNet weights
load by a reshape. Max pooling uses ``ceil_mode`` so that any input size keeps every
pixel (weights are unaffected). Taps: pool1..pool4 (/2../16) and fc7 (/32).

Normalisation: ImageNet's mean and std, the transforms of torchvision's
``VGG16_Weights.IMAGENET1K_V1`` (what ``pretrained=True`` loads).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.models import vgg16 as tv_vgg16

from rtseg.models.encoders.base import Encoder, check_output_stride
from rtseg.models.layers import AtrousConv2d
from rtseg.normalisation import IMAGENET_MEAN, IMAGENET_STD
from rtseg.models.registry import register_encoder

# Indices in ``features`` (torchvision numbering) of the pooling layers pool1..pool5.
POOL_INDICES = (4, 9, 16, 23, 30)
CONV5_INDICES = (24, 26, 28)


@register_encoder("vgg16")
class VGG16Encoder(Encoder):
    mean = IMAGENET_MEAN
    std = IMAGENET_STD

    def __init__(self, output_stride: int = 32, dropout: float = 0.5):
        super().__init__()
        self.output_stride = check_output_stride(output_stride)
        features = tv_vgg16(weights=None).features
        for index in POOL_INDICES:
            features[index] = nn.MaxPool2d(2, 2, ceil_mode=True)
        fc6_dilation = 1
        if self.output_stride == 8:
            # Dilation frontend (Yu & Koltun): drop pool4 and pool5, dilate conv5 by 2 and fc6 by 4.
            features[POOL_INDICES[3]] = nn.Identity()
            features[POOL_INDICES[4]] = nn.Identity()
            for index in CONV5_INDICES:
                features[index] = AtrousConv2d(512, 512, 3, padding=2, dilation=2)
            fc6_dilation = 4
        self.features = features
        self.fc6 = AtrousConv2d(512, 4096, 7, padding=3 * fc6_dilation, dilation=fc6_dilation)
        self.fc7 = nn.Conv2d(4096, 4096, 1)
        self.dropout = nn.Dropout(dropout)
        self.set_feature_info([64, 128, 256, 512, 4096])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        start = 0
        for stop in POOL_INDICES[:4]:
            x = self.features[start:stop + 1](x)
            taps.append(x)
            start = stop + 1
        x = self.features[start:](x)  # conv5 block and pool5
        x = self.dropout(F.relu(self.fc6(x), inplace=True))
        x = self.dropout(F.relu(self.fc7(x), inplace=True))
        taps.append(x)
        return taps

    def convert_state_dict(self, state):
        """torchvision (``classifier.0/3``, linear) or timm (``pre_logits.fc1/fc2``, conv) -> ours."""
        out = {k: v for k, v in state.items() if k.startswith("features.")}
        if "classifier.0.weight" in state:
            fc6, fc7 = "classifier.0", "classifier.3"
        elif "pre_logits.fc1.weight" in state:
            fc6, fc7 = "pre_logits.fc1", "pre_logits.fc2"
        else:
            return dict(state)  # already ours, or unknown: the key check reports it
        out["fc6.weight"] = state[f"{fc6}.weight"].reshape(4096, 512, 7, 7)
        out["fc6.bias"] = state[f"{fc6}.bias"]
        out["fc7.weight"] = state[f"{fc7}.weight"].reshape(4096, 4096, 1, 1)
        out["fc7.bias"] = state[f"{fc7}.bias"]
        return out

    def download_state_dict(self):
        from torchvision.models import VGG16_Weights

        return VGG16_Weights.IMAGENET1K_V1.get_state_dict(progress=True)

    def classifier(self, num_classes: int = 1000) -> nn.Module:
        return VGG16Classifier(self, num_classes)


class VGG16Classifier(nn.Module):
    """The ImageNet VGG16: fc6 applied once on the 7x7 pool5 map (no padding), as published."""

    def __init__(self, encoder: VGG16Encoder, num_classes: int = 1000):
        super().__init__()
        self.encoder = encoder
        self.fc8 = nn.Conv2d(4096, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e = self.encoder
        x = e.features(x)
        x = F.relu(F.conv2d(x, e.fc6.weight, e.fc6.bias))
        x = F.relu(e.fc7(e.dropout(x)))
        return self.fc8(e.dropout(x)).flatten(1)
