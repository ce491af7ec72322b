"""Encoders, one file each; importing this package registers them."""

from rtseg.models.encoders import mobilenet_v1, resnet18, vgg16  # noqa: F401
from rtseg.models.encoders import shufflenet_v1  # noqa: F401
from rtseg.models.encoders import timm_encoder  # noqa: F401  (the timm.<name> family)
from rtseg.models.encoders.base import Encoder, FeatureInfo  # noqa: F401
