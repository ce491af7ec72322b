"""BiSeNet v1 with a ResNet18 context path (Yu, Wang, Peng, Gao, Yu, Sang 2018, "BiSeNet:
Bilateral Segmentation Network for Real-time Semantic Segmentation", ECCV, arXiv 1808.00897).

The authors released no code; this follows the widely used github.com/CoinCheung/BiSeNet
(commit 6b4b67a, ``lib/models/bisenetv1.py`` and ``lib/models/resnet.py``), whose release
``model_final_v1_city_new.pth`` (README, 75.44 mIoU single-scale on Cityscapes val) it loads:

* spatial path: 7x7/2 (64), 3x3/2 (64), 3x3/2 (64), 1x1 (128) ConvBNReLU: a /8 map;
* context path (``rtseg.models.zoo.context_path``) on torchvision's ResNet18 (rtseg's
  ``resnet18`` encoder: timm's ResNet with torchvision's names) /16 and /32 maps;
* FFM of (spatial, /8 context) -> 256, with the release's conv + BN attention (the file's
  "_new": CoinCheung replaced the paper's two-layer attention for TensorRT fp16);
* heads with a biased 1x1 classifier: 3x3 ConvBNReLU 256 (main); 64 on the /8 and /16
  context (auxiliary, ``conv_out16`` -> "aux", ``conv_out32`` -> "aux2", both OHEM-trained);
* logits up-sampled by bilinear interpolation with ``align_corners=False`` (the release's
  ``nn.Upsample(scale_factor=8 or 16)``); we resize to the input's size, which is the same
  whenever the input is a multiple of 32 and also works when it is not (the official model
  then fails: its x2 up-samplings overshoot the /16 map). The official evaluation
  (``tools/evaluate.py``) first resizes the image to a multiple of 32 (a no-op at 1024x2048)
  and resizes the logits to the label with ``align_corners=True``.

Training mode returns ``{"out", "aux", "aux2"}``. The release is ``net.module.state_dict()``
of the training model (``tools/train_amp.py``): every key converts, the aux heads included (a
file without them loads with them at their initialisation, as for every zoo network).
``pretrained`` is torchvision's ImageNet ResNet18 (``resnet18-5c106cde.pth``, what
CoinCheung's ``Resnet18.init_weight`` loads), a local file or ``True`` to download it.

Input normalisation: CoinCheung's Cityscapes statistics (``lib/data/cityscapes_cv2.py``),
RGB in 0..1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from rtseg.models.encoders.resnet18 import ResNet18Encoder
from rtseg.models.registry import register_model
from rtseg.models.segmentation import SegmentationNetwork
from rtseg.models.zoo.blocks import ConvBNReLU, FeatureFusion, resize
from rtseg.models.zoo.context_path import ContextPath, rename_bisenet_key
from rtseg.models.zoo.eval_parameters import fill_training_heads
from rtseg.models.zoo.heads import SegHead

# lib/data/cityscapes_cv2.py (and BiSeNet v2's release, trained with the same pipeline).
COINCHEUNG_CITYSCAPES_MEAN = (0.3257, 0.3690, 0.3223)
COINCHEUNG_CITYSCAPES_STD = (0.2112, 0.2148, 0.2115)


class SpatialPath(nn.Sequential):
    def __init__(self):
        super().__init__(ConvBNReLU(3, 64, 7, stride=2), ConvBNReLU(64, 64, 3, stride=2),
                         ConvBNReLU(64, 64, 3, stride=2), ConvBNReLU(64, 128, 1))


@register_model("bisenet_v1")
class BiSeNetV1(SegmentationNetwork):
    def __init__(self, num_classes: int = 19, pretrained: bool | str | Path | None = None):
        super().__init__("bisenet_v1", num_classes, COINCHEUNG_CITYSCAPES_MEAN, COINCHEUNG_CITYSCAPES_STD)
        self.encoder = ResNet18Encoder()
        c16, c32 = self.encoder.out_channels[3:]
        self.spatial = SpatialPath()
        self.context = ContextPath(c16, c32, 128)
        self.ffm = FeatureFusion(128 + 128, 256, attention="conv_bn")
        self.head = SegHead(256, 256, num_classes, bias=True)
        self.aux = SegHead(128, 64, num_classes, bias=True)
        self.aux2 = SegHead(128, 64, num_classes, bias=True)
        _init_like_coincheung(self)
        if pretrained:
            self.encoder.load_pretrained(pretrained)

    def forward(self, x: torch.Tensor):
        size = x.shape[-2:]
        _, _, feat8, feat16, feat32 = self.encoder(x)
        spatial = self.spatial(x)
        context8, context16 = self.context(spatial.shape[-2:], feat16, feat32)
        out = _to_input(self.head(self.ffm(spatial, context8)), size)
        if not self.training:
            return out
        return {"out": out, "aux": _to_input(self.aux(context8), size), "aux2": _to_input(self.aux2(context16), size)}

    def convert_state_dict(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        converted = {}
        for key, value in state.items():
            if key.startswith("cp.resnet."):
                converted["encoder.body." + key[len("cp.resnet."):]] = value
            elif key.startswith("sp."):
                layer, rest = key[len("sp."):].split(".", 1)
                converted[f"spatial.{_SPATIAL_LAYERS.get(layer, layer)}.{rest}"] = value
            else:
                converted[rename_bisenet_key(key)] = value
        return fill_training_heads(self, converted)


_SPATIAL_LAYERS = {"conv1": "0", "conv2": "1", "conv3": "2", "conv_out": "3"}


def _to_input(logits: torch.Tensor, size) -> torch.Tensor:
    return resize(logits, size, align_corners=False)  # the release's nn.Upsample(scale_factor=8 or 16)


def _init_like_coincheung(model: nn.Module) -> None:
    # Every ConvBNReLU and head convolution of lib/models/bisenetv1.py: kaiming_normal_(a=1).
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and not name.startswith("encoder."):
            nn.init.kaiming_normal_(m.weight, a=1)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
