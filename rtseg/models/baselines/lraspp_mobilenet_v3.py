"""LR-ASPP MobileNetV3-Large (Howard et al. 2019, "Searching for MobileNetV3", arXiv 1905.02244),
torchvision's ``lraspp_mobilenet_v3_large`` as a whole rtseg network.

torchvision (github.com/pytorch/vision, torchvision/models/segmentation/lraspp.py) builds it
from ``mobilenet_v3_large(dilated=True)``: the last stage's stride-2 step becomes stride 1
with dilation 2, so the high map (960 channels) has stride 16 and the low one (40 channels)
stride 8, the paper's setting. The backbone here is torchvision's own module (its keys are
torchvision's ``backbone.<i>.*``); the head is rtseg's ``lraspp`` decoder, so
``convert_state_dict`` only renames torchvision's ``classifier.*`` keys onto it and a file
saved from torchvision's model loads with ``weights=PATH`` (its COCO-with-VOC-labels release
needs ``num_classes=21``). tests/test_lraspp.py checks that the outputs are torchvision's.

Published cost (torchvision's weights metadata, ``LRASPP_MobileNet_V3_Large_Weights``):
3,221,538 parameters at 21 classes and 2.086 G multiply-adds at 520x520 (torchvision's
"GFLOPS" are multiply-adds); rtseg counts 4.172 GFLOPs = 2 x 2.086 G there (``rtseg flops
--model lraspp_mobilenet_v3_large --size 520x520`` with 21 classes). ``lraspp-timm.
mobilenetv3_large_100`` with ``output_stride=16`` has the same parameters and convolutions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch

from rtseg.models.decoders.lraspp import LOW_LEVEL, LRASPP
from rtseg.models.encoders.base import NOMINAL_STRIDES, FeatureInfo
from rtseg.normalisation import IMAGENET_MEAN, IMAGENET_STD
from rtseg.models.registry import register_model
from rtseg.models.segmentation import SegmentationNetwork
from rtseg.models.weights import fit_state_dict, read_state_dict

NAME = "lraspp_mobilenet_v3_large"
# torchvision's LRASPPHead submodules -> rtseg's lraspp decoder.
HEAD_KEYS = {"classifier.cbr.": "decoder.project.", "classifier.scale.": "decoder.attention.",
             "classifier.low_classifier.": "decoder.classify_low.",
             "classifier.high_classifier.": "decoder.classify_high."}


@register_model(NAME)
class LRASPPMobileNetV3Large(SegmentationNetwork):
    """``pretrained``: True for torchvision's ImageNet backbone weights (online), or the path of
    a torchvision ``mobilenet_v3_large`` state dict."""

    def __init__(self, num_classes: int = 19, pretrained: bool | str | Path | None = None):
        # torchvision's weights are trained on ImageNet-normalised inputs (its SemanticSegmentation preset).
        super().__init__(NAME, num_classes, IMAGENET_MEAN, IMAGENET_STD)
        from torchvision.models import mobilenet_v3_large

        features = mobilenet_v3_large(weights=None, dilated=True).features
        # As torchvision picks them: the blocks that reduce the resolution, the /8 one is "low".
        stages = [0] + [i for i, block in enumerate(features) if getattr(block, "_is_cn", False)] + [len(features) - 1]
        self.low_index = stages[-4]
        self.backbone = features
        infos: list[FeatureInfo | None] = [None] * len(NOMINAL_STRIDES)
        infos[LOW_LEVEL] = FeatureInfo(features[self.low_index].out_channels, 8)
        infos[-1] = FeatureInfo(features[-1].out_channels, 16)
        self.decoder = LRASPP(infos, num_classes)
        if pretrained:
            self.load_backbone(pretrained)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        low = None
        for index, block in enumerate(self.backbone):
            x = block(x)
            if index == self.low_index:
                low = x
        features = [None] * len(NOMINAL_STRIDES)
        features[LOW_LEVEL], features[-1] = low, x
        return self.decoder(features, size)

    def convert_state_dict(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """torchvision's ``LRASPP`` keys (``backbone.*``, ``classifier.*``) -> this network's."""
        converted = {}
        for key, value in state.items():
            for theirs, ours in HEAD_KEYS.items():
                if key.startswith(theirs):
                    key = ours + key[len(theirs):]
                    break
            converted[key] = value
        return converted

    def load_backbone(self, pretrained: bool | str | Path) -> None:
        """torchvision's ``mobilenet_v3_large`` classification weights into the backbone."""
        if pretrained is True:
            from torchvision.models import MobileNet_V3_Large_Weights

            weights = MobileNet_V3_Large_Weights.IMAGENET1K_V1
            state, source = weights.get_state_dict(progress=False), f"torchvision's {weights}"
        else:
            state, source = read_state_dict(pretrained), str(pretrained)
        backbone = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        fit_state_dict(self.backbone, backbone, source)
