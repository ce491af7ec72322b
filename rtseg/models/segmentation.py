"""encoder -> decoder -> logits, and nothing else (the shape of segmentation_models.pytorch)."""

from __future__ import annotations

import torch
from torch import nn

from rtseg.models.decoders.base import Decoder
from rtseg.models.encoders.base import Encoder


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
