"""Whole reference networks (ENet, SegNet, LR-ASPP MobileNetV3); importing this package registers them."""
from rtseg.models.baselines import enet, lraspp_mobilenet_v3, segnet  # noqa: F401
