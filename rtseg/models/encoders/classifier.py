"""ImageNet classifier forms of the encoders, to check each trunk against its published cost."""

from __future__ import annotations

import torch
from torch import nn


class GlobalPoolClassifier(nn.Module):
    """Trunk -> global average pool -> fully connected: ResNet, MobileNet and ShuffleNet heads."""

    def __init__(self, encoder: nn.Module, num_classes: int = 1000):
        super().__init__()
        self.encoder = encoder
        self.fc = nn.Linear(encoder.feature_info[-1].channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        deepest = self.encoder(x)[-1]
        return self.fc(deepest.mean(dim=(2, 3)))
