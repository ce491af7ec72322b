"""SkipNet (FCN8s, Long et al. 2015): up-sampling in label space.

1x1 convolutions turn the /32, /16 and /8 features into class scores; the /32 scores are
up-sampled x2 and added to the /16 scores, again x2 and added to the /8 scores, then x8 to
full resolution. Transposed convolutions start as bilinear up-samplers and are trained.
Working on 19-channel score maps instead of features is what makes SkipNet cheap.

Two options give the RTSeg authors' TensorFlow SkipNet (MSiam/TFSegmentation
``models/fcn8s_mobilenet.py`` and ``fcn8s_shufflenet.py``, with ``batchnorm_enabled: True`` in
their configs); both default to off, FCN8s as published:

- ``batch_norm=True``: BN after the /16 and /8 score convolutions and after the two x2
  up-samplings (their ``score_feed1/2`` and ``upscore2/4``); not after the /32 scores or the
  x8 up-sampling;
- ``up_bias=True``: biases (starting at zero) in the three transposed convolutions.

The /8 and /16 taps of TF's MobileNet SkipNet are the first layer at those strides: the
encoder option ``first_layer_taps=[8, 16]`` (``encoders/mobilenet_v1.py``).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from rtseg.models.decoders.base import Decoder, fit_to, stride_ratio, upsampler
from rtseg.models.encoders.base import FeatureInfo
from rtseg.models.registry import register_decoder

SKIP_LEVELS = (2, 3, 4)  # indices of the /8, /16, /32 maps in feature_info


@register_decoder("skipnet")
class SkipNet(Decoder):
    def __init__(self, feature_info: Sequence[FeatureInfo], num_classes: int, batch_norm: bool = False,
                 up_bias: bool = False):
        super().__init__()
        infos = [feature_info[i] for i in SKIP_LEVELS]
        self.score = nn.ModuleList(nn.Conv2d(info.channels, num_classes, 1) for info in infos)
        # up[i] brings level i+1's fused scores to level i's resolution.
        self.up = nn.ModuleList(
            upsampler(num_classes, num_classes, stride_ratio(infos[i + 1], infos[i]), bilinear_init=True,
                      bias=up_bias)
            for i in range(len(infos) - 1))
        self.final_up = upsampler(num_classes, num_classes, infos[0].stride, bilinear_init=True, bias=up_bias)
        # score_norm[i] / up_norm[i] follow score[i] / up[i] (the /32 scores have none, as in TF).
        norm = (lambda: nn.BatchNorm2d(num_classes)) if batch_norm else nn.Identity
        self.score_norm = nn.ModuleList(norm() for _ in range(len(infos) - 1))
        self.up_norm = nn.ModuleList(norm() for _ in range(len(infos) - 1))

    output_layer = "final_up"

    def output_layer_input(self, features: Sequence[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """The fused /8 scores that ``final_up`` brings to full resolution."""
        maps = [features[i] for i in SKIP_LEVELS]
        scores = self.score[-1](maps[-1])
        for level in range(len(maps) - 2, -1, -1):
            skip = self.score_norm[level](self.score[level](maps[level]))
            scores = fit_to(self.up_norm[level](self.up[level](scores)), skip.shape[-2:]) + skip
        return scores
