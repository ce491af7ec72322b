"""MobileNet v1 (Howard et al. 2017) encoder, built by timm (``mobilenetv1_100``).

Depthwise-separable blocks with BN and ReLU6; ``width`` is the paper's width multiplier.
timm's EfficientNet builder turns the last stride-2 steps into dilation for
``output_stride=8``. Feature maps: 64, 128, 256, 512, 1024 channels at width 1.0.
"""

from __future__ import annotations

import timm
import torch

from rtseg.errors import RtsegError
from rtseg.models.encoders.base import Encoder, check_output_stride
from rtseg.models.encoders.classifier import GlobalPoolClassifier
from rtseg.models.registry import register_encoder

TIMM_NAME = "mobilenetv1_100"


def _build(width: float, output_stride: int, pretrained: bool = False):
    kwargs = dict(features_only=True, output_stride=output_stride, pretrained=pretrained)
    if width == 1.0:
        return timm.create_model(TIMM_NAME, **kwargs)
    # timm registers only the 1.0 and 1.25 widths by name; its generator takes any multiplier.
    from timm.models.efficientnet import _gen_mobilenet_v1

    return _gen_mobilenet_v1(TIMM_NAME, channel_multiplier=width, **kwargs)


@register_encoder("mobilenet_v1")
class MobileNetV1Encoder(Encoder):
    def __init__(self, width: float = 1.0, output_stride: int = 32):
        super().__init__()
        if not 0 < width <= 4:
            raise RtsegError(f"mobilenet_v1 width must be in (0, 4], got {width!r}")
        self.width = float(width)
        self.output_stride = check_output_stride(output_stride)
        self.body = _build(self.width, self.output_stride)
        self.set_feature_info(self.body.feature_info.channels())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return list(self.body(x))

    def convert_state_dict(self, state):
        # Drop timm's classifier (and the optional head conv of the "h" variants).
        head = ("classifier.", "conv_head.", "bn2.")
        return {f"body.{k}": v for k, v in state.items() if not k.startswith(head)}

    def download_state_dict(self):
        if self.width != 1.0:
            raise RtsegError(f"timm has ImageNet weights for mobilenet_v1 width 1.0 only, not {self.width}")
        model = timm.create_model(TIMM_NAME, pretrained=True)
        return model.state_dict()

    def classifier(self, num_classes: int = 1000):
        return GlobalPoolClassifier(self, num_classes)
