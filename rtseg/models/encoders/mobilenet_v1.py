"""MobileNet v1 (Howard et al. 2017) encoder, built by timm (``mobilenetv1_100``).

Depthwise-separable blocks with BN and ReLU6; ``width`` is the paper's width multiplier.
timm's EfficientNet builder turns the last stride-2 steps into dilation for
``output_stride=8``. Feature maps: 64, 128, 256, 512, 1024 channels at width 1.0, each the
output of the last layer at its stride.

Normalisation: timm's ImageNet weights (``TIMM_WEIGHTS``, the file ``pretrained=True`` loads)
were trained on inputs scaled to -1..1, mean = std = 0.5 per channel (its ``pretrained_cfg``),
not ImageNet's statistics; the encoder states that, and the whole model with it.

``first_layer_taps``: the strides whose map is the output of the *first* layer at that stride
(the stride-2 block; at /2 the stem convolution) instead of the last. The RTSeg authors'
TensorFlow SkipNet taps /8 and /16 that way (MSiam/TFSegmentation ``models/encoders/
mobilenet.py``: ``feed1 = conv4_2``, ``feed2 = conv3_2``), their UNet /32 (``unet_mobilenet.py``
starts from ``conv5_6``). Channels are unchanged except at /2 (the stem's 32 at width 1.0).
"""

from __future__ import annotations

import timm
import torch

from rtseg.errors import RtsegError
from rtseg.models.encoders.base import NOMINAL_STRIDES, Encoder, check_output_stride
from rtseg.models.encoders.classifier import GlobalPoolClassifier
from rtseg.normalisation import INCEPTION_MEAN, INCEPTION_STD
from rtseg.models.registry import register_encoder

TIMM_NAME = "mobilenetv1_100"
TIMM_WEIGHTS = f"{TIMM_NAME}.ra4_e3600_r224_in1k"  # pinned: what pretrained=True loads


def _build(width: float, output_stride: int, pretrained: bool = False):
    kwargs = dict(features_only=True, output_stride=output_stride, pretrained=pretrained)
    if width == 1.0:
        return timm.create_model(TIMM_NAME, **kwargs)
    # timm registers only the 1.0 and 1.25 widths by name; its generator takes any multiplier.
    from timm.models.efficientnet import _gen_mobilenet_v1

    return _gen_mobilenet_v1(TIMM_NAME, channel_multiplier=width, **kwargs)


def check_first_layer_taps(taps) -> tuple[int, ...]:
    if not isinstance(taps, (list, tuple)) or not all(
            isinstance(t, int) and not isinstance(t, bool) and t in NOMINAL_STRIDES for t in taps):
        raise RtsegError(f"mobilenet_v1 first_layer_taps must be a list of strides from "
                         f"{list(NOMINAL_STRIDES)}, got {taps!r}")
    return tuple(sorted(set(taps)))


@register_encoder("mobilenet_v1")
class MobileNetV1Encoder(Encoder):
    mean = INCEPTION_MEAN
    std = INCEPTION_STD

    def __init__(self, width: float = 1.0, output_stride: int = 32, first_layer_taps=()):
        super().__init__()
        if not 0 < width <= 4:
            raise RtsegError(f"mobilenet_v1 width must be in (0, 4], got {width!r}")
        self.width = float(width)
        self.output_stride = check_output_stride(output_stride)
        self.first_layer_taps = check_first_layer_taps(first_layer_taps)
        self.body = _build(self.width, self.output_stride)
        channels = self.body.feature_info.channels()
        if 2 in self.first_layer_taps:
            channels[0] = self.body.conv_stem.out_channels
        self.set_feature_info(channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if not self.first_layer_taps:
            return list(self.body(x))
        # timm's EfficientNetFeatures.forward, tapping the first block of a stage where asked.
        x = self.body.bn1(self.body.conv_stem(x))
        maps = []
        for stride, stage in zip(NOMINAL_STRIDES, self.body.blocks):
            first = x if stride == 2 else None  # at /2 the first layer is the stem
            for index, block in enumerate(stage):
                if stride == NOMINAL_STRIDES[-1] and first is not None and stride in self.first_layer_taps:
                    break  # nothing reads the rest of the deepest stage (TF never runs it)
                x = block(x)
                if index == 0 and first is None:
                    first = x
            maps.append(first if stride in self.first_layer_taps else x)
        return maps

    def convert_state_dict(self, state):
        # Drop timm's classifier (and the optional head conv of the "h" variants).
        head = ("classifier.", "conv_head.", "bn2.")
        return {f"body.{k}": v for k, v in state.items() if not k.startswith(head)}

    def download_state_dict(self):
        if self.width != 1.0:
            raise RtsegError(f"timm has ImageNet weights for mobilenet_v1 width 1.0 only, not {self.width}")
        model = timm.create_model(TIMM_WEIGHTS, pretrained=True)
        return model.state_dict()

    def classifier(self, num_classes: int = 1000):
        return GlobalPoolClassifier(self, num_classes)
