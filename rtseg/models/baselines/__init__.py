"""Whole reference networks (ENet, SegNet); importing this package registers them."""
from rtseg.models.baselines import enet, segnet  # noqa: F401
