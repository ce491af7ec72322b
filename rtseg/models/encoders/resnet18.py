"""ResNet18 (He et al. 2016) encoder, built by timm.

timm's ResNet has torchvision's parameter names, so both libraries' ImageNet weights load
unchanged, and its ``output_stride=8`` dilates the basic blocks, which torchvision's
``replace_stride_with_dilation`` refuses to do.

Normalisation: ImageNet's mean and std, the transforms of the file ``pretrained=True`` loads
(torchvision's ``ResNet18_Weights.IMAGENET1K_V1``, which timm lists as ``resnet18.tv_in1k``
with the same statistics in its ``pretrained_cfg``).
"""

from __future__ import annotations

import timm
import torch

from rtseg.models.encoders.base import Encoder, check_output_stride
from rtseg.models.encoders.classifier import GlobalPoolClassifier
from rtseg.normalisation import IMAGENET_MEAN, IMAGENET_STD
from rtseg.models.registry import register_encoder


@register_encoder("resnet18")
class ResNet18Encoder(Encoder):
    mean = IMAGENET_MEAN
    std = IMAGENET_STD

    def __init__(self, output_stride: int = 32):
        super().__init__()
        self.output_stride = check_output_stride(output_stride)
        # zero_init_last=False: torchvision's initialisation, so an untrained residual branch
        # is not silenced (gradients reach every layer from the first step).
        self.body = timm.create_model("resnet18", pretrained=False, features_only=True,
                                      output_stride=self.output_stride, zero_init_last=False)
        self.set_feature_info(self.body.feature_info.channels())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(x))

    def convert_state_dict(self, state):
        # A classifier checkpoint carries the fc layer that the encoder does not have.
        return {f"body.{k}": v for k, v in state.items() if not k.startswith("fc.")}

    def download_state_dict(self):
        from torchvision.models import ResNet18_Weights

        return ResNet18_Weights.IMAGENET1K_V1.get_state_dict(progress=True)

    def classifier(self, num_classes: int = 1000):
        return GlobalPoolClassifier(self, num_classes)
