"""encoder -> decoder -> logits, and nothing else (the shape of segmentation_models.pytorch)."""

from __future__ import annotations

import torch
from torch import nn

from rtseg.models.decoders.base import Decoder
from rtseg.models.encoders.base import Encoder


def model_normalisation(model: nn.Module) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The mean and std a model's input is normalised with: its own, or ImageNet's for a bare module."""
    from rtseg.models.encoders.base import IMAGENET_MEAN, IMAGENET_STD

    return tuple(getattr(model, "mean", IMAGENET_MEAN)), tuple(getattr(model, "std", IMAGENET_STD))


class SegmentationModel(nn.Module):
    def __init__(self, encoder: Encoder, decoder: Decoder, name: str, num_classes: int):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.name = name
        self.num_classes = num_classes

    # The normalisation the encoder's ImageNet weights expect; data pipelines read it here.
    @property
    def mean(self) -> tuple[float, float, float]:
        return self.encoder.mean

    @property
    def std(self) -> tuple[float, float, float]:
        return self.encoder.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x), x.shape[-2:])
