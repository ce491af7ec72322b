"""ENet (Paszke, Chaurasia, Kim, Culurciello 2016, arXiv 1606.02147), the paper's fastest reference.

The layers follow the authors' Torch code (github.com/e-lab/ENet-training, ``train/models/
encoder.lua`` and ``decoder.lua``), which fixes what the paper leaves open:

- initial block: a 3x3 stride-2 convolution with 13 channels (with bias) concatenated with a
  2x2 max pool of the image (16 channels), then BN and PReLU;
- bottleneck: 1x1 projection to a quarter of the output channels (2x2 stride 2 when it
  down-samples), the main convolution (3x3 regular / dilated with bias, or asymmetric: 1x5
  without bias then 5x1 with bias, the Torch code's ``SpatialConvolution(n, n, 5, 1, ...)``
  then ``(n, n, 1, 5, ...)``, whose arguments are width first), 1x1 expansion, BN (eps 1e-3) and PReLU after each convolution but the
  last, spatial dropout (0.01 in stage 1, 0.1 after it), added to the shortcut (max pooled
  with indices and zero-padded in channels when down-sampling), then PReLU;
- decoder bottlenecks: the up-sampling ones (4.0, 5.0) map the shortcut by a 1x1 convolution
  and BN and max-unpool it with the indices of the matching encoder pooling; their main
  branch up-samples by a 3x3 stride-2 transposed convolution; no dropout in the decoder;
- a 2x2 stride-2 transposed convolution to classes.

``encoder_only=True`` is ENet's first training stage (the paper trains the encoder first, to
classify down-sampled regions of the image; ``train/models/encoder.lua``):
the encoder and a 1x1 convolution to classes at 1/8 of the input. In training mode it returns
those 1/8 logits, which the recipe compares with labels down-sampled to them (the loss term's
``resize: nearest_labels``, as e-lab's loader scales the labels with ``'simple'``); in eval mode
it up-samples them bilinearly to the input. ``decoder.lua`` then drops the 1x1 convolution and
appends the decoder; the whole network starts from the encoder stage's checkpoint with
``model.init_keys: shared`` (``configs/enet_recipe-encoder.yaml``, ``configs/enet_recipe.yaml``).

One departure, on purpose: the Torch decoder uses ReLU where the encoder uses PReLU. We use
PReLU everywhere (the paper's description, and what this project asked for);
``decoder_relu=True`` gives the Torch code's ReLU (same FLOPs, 336 fewer parameters).

Any input size works: pooling rounds up (``ceil_mode``) so it matches the stride-2
convolution beside it, unpooling is told the exact size to restore, and ``fit_to`` aligns
the up-sampled branches with their shortcuts.

Cost (checked in ``tests/test_baselines.py``): 0.365M parameters for 19 classes; the ENet
paper's Table 3 (Paszke et al. 2016) states 0.37M (the RTSeg paper lists no parameter counts).
At 360x640 the convolutions cost 3.45 GFLOPs (2 x multiply-adds, ``rtseg flops --model enet
--size 360x640``), the same as a hand count of them; the ENet paper's Table 3, copied by the
RTSeg paper's Table 3, states 3.83 GFLOPs without saying how it counted. Ours is 10% lower.
Element-wise work does not explain the gap (BN, PReLU, biases, additions and pooling come to
about 0.13 GFLOPs); charging each transposed convolution its whole kernel at every output
pixel, a common over-count, would (3.93 GFLOPs). docs/baselines.md shows both counts.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from rtseg.errors import RtsegError
from rtseg.models.decoders.base import fit_to
from rtseg.models.registry import register_model
from rtseg.models.segmentation import SegmentationNetwork

BN_EPS = 1e-3  # the Torch code's SpatialBatchNormalization(n, 1e-3)
PROJECTION_RATIO = 4


def _bn_act(channels: int, relu: bool = False) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels, eps=BN_EPS),
            nn.ReLU(inplace=True) if relu else nn.PReLU(channels)]


class InitialBlock(nn.Module):
    """3x3 stride-2 convolution (13 channels) beside a 2x2 max pool of the image, joined -> 16."""

    def __init__(self, in_channels: int = 3, out_channels: int = 16):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels - in_channels, 3, stride=2, padding=1)
        # ceil_mode: for odd sizes the pool then gives ceil(n/2) like the padded convolution.
        self.pool = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.bn, self.act = _bn_act(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(torch.cat([self.conv(x), self.pool(x)], dim=1)))


class Bottleneck(nn.Module):
    """Encoder bottleneck: regular, dilated or asymmetric main convolution on an identity shortcut."""

    def __init__(self, channels: int, dropout: float, dilation: int = 1, asymmetric: int = 0):
        super().__init__()
        internal = channels // PROJECTION_RATIO
        if asymmetric:
            pad = (asymmetric - 1) // 2
            # Torch's SpatialConvolution(n, n, 5, 1, 1, 1, 2, 0) is kW=5, kH=1: 1x5 comes first.
            conv = [nn.Conv2d(internal, internal, (1, asymmetric), padding=(0, pad), bias=False),
                    nn.Conv2d(internal, internal, (asymmetric, 1), padding=(pad, 0))]
        else:
            conv = [nn.Conv2d(internal, internal, 3, padding=dilation, dilation=dilation)]
        self.branch = nn.Sequential(
            nn.Conv2d(channels, internal, 1, bias=False), *_bn_act(internal),
            *conv, *_bn_act(internal),
            nn.Conv2d(internal, channels, 1, bias=False), nn.BatchNorm2d(channels, eps=BN_EPS),
            nn.Dropout2d(dropout),
        )
        self.act = nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.branch(x))


class DownsamplingBottleneck(nn.Module):
    """Halves the resolution: 2x2 stride-2 projection in the branch, max pool (indices kept) on the
    shortcut, whose missing channels are zeros. Returns the output and the pooling indices."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float):
        super().__init__()
        internal = out_channels // PROJECTION_RATIO
        self.extra_channels = out_channels - in_channels
        self.pool = nn.MaxPool2d(2, 2, ceil_mode=True, return_indices=True)
        self.branch = nn.Sequential(
            nn.Conv2d(in_channels, internal, 2, stride=2, bias=False), *_bn_act(internal),
            nn.Conv2d(internal, internal, 3, padding=1), *_bn_act(internal),
            nn.Conv2d(internal, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels, eps=BN_EPS),
            nn.Dropout2d(dropout),
        )
        self.act = nn.PReLU(out_channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        shortcut, indices = self.pool(x)
        shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, self.extra_channels))
        # The 2x2 stride-2 convolution rounds odd sizes down, the pool rounds up: pad a row/column.
        branch = fit_to(self.branch(x), shortcut.shape[-2:])
        return self.act(shortcut + branch), indices


class DecoderBottleneck(nn.Module):
    """Regular decoder bottleneck (3x3 main convolution, identity shortcut), no dropout."""

    def __init__(self, channels: int, relu: bool):
        super().__init__()
        internal = channels // PROJECTION_RATIO
        self.branch = nn.Sequential(
            nn.Conv2d(channels, internal, 1, bias=False), *_bn_act(internal, relu),
            nn.Conv2d(internal, internal, 3, padding=1), *_bn_act(internal, relu),
            nn.Conv2d(internal, channels, 1, bias=False), nn.BatchNorm2d(channels, eps=BN_EPS),
        )
        self.act = nn.ReLU(inplace=True) if relu else nn.PReLU(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.branch(x))


class UpsamplingBottleneck(nn.Module):
    """Doubles the resolution: the shortcut is a 1x1 convolution + BN max-unpooled with the saved
    indices, the branch up-samples by a 3x3 stride-2 transposed convolution."""

    def __init__(self, in_channels: int, out_channels: int, relu: bool):
        super().__init__()
        internal = out_channels // PROJECTION_RATIO
        self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False),
                                      nn.BatchNorm2d(out_channels, eps=BN_EPS))
        self.reduce = nn.Sequential(nn.Conv2d(in_channels, internal, 1, bias=False), *_bn_act(internal, relu))
        self.up = nn.ConvTranspose2d(internal, internal, 3, stride=2, padding=1, output_padding=1)
        self.expand = nn.Sequential(
            *_bn_act(internal, relu),
            nn.Conv2d(internal, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels, eps=BN_EPS),
        )
        self.act = nn.ReLU(inplace=True) if relu else nn.PReLU(out_channels)

    def forward(self, x: torch.Tensor, indices: torch.Tensor, size: torch.Size) -> torch.Tensor:
        # output_size: the pooled map may have had an odd size, which 2 x its input cannot tell.
        shortcut = F.max_unpool2d(self.shortcut(x), indices, 2, 2, output_size=size)
        branch = self.expand(fit_to(self.up(self.reduce(x)), size))
        return self.act(shortcut + branch)


@register_model("enet")
class ENet(SegmentationNetwork):
    """ENet for ``num_classes`` classes, trained from scratch (ImageNet normalisation, as the
    PyTorch ports train it); a trained ENet loads with ``create_model("enet", weights=PATH)``."""

    def __init__(self, num_classes: int = 19, decoder_relu: bool = False, encoder_only: bool = False,
                 pretrained: bool | str | Path | None = None):
        super().__init__("enet", num_classes)
        self.encoder_only = encoder_only
        self.initial = InitialBlock(3, 16)
        # Stage 1 (dropout 0.01), then stages 2 and 3 (0.1), as in the Torch code.
        self.down1 = DownsamplingBottleneck(16, 64, 0.01)
        self.stage1 = nn.Sequential(*(Bottleneck(64, 0.01) for _ in range(4)))
        self.down2 = DownsamplingBottleneck(64, 128, 0.1)
        self.stage2 = self._dilated_stage()
        self.stage3 = self._dilated_stage()
        if encoder_only:  # encoder.lua's last layer: SpatialConvolution(128, #classes, 1, 1)
            self.encoder_classifier = nn.Conv2d(128, num_classes, 1)
        else:
            self.up4 = UpsamplingBottleneck(128, 64, decoder_relu)
            self.stage4 = nn.Sequential(DecoderBottleneck(64, decoder_relu), DecoderBottleneck(64, decoder_relu))
            self.up5 = UpsamplingBottleneck(64, 16, decoder_relu)
            self.stage5 = DecoderBottleneck(16, decoder_relu)
            self.classifier = nn.ConvTranspose2d(16, num_classes, 2, stride=2)
        if pretrained:
            raise RtsegError("enet has no ImageNet weights (it is trained from scratch); "
                             "load a trained ENet with weights='path/to/enet.pth'")

    @staticmethod
    def _dilated_stage() -> nn.Sequential:
        # regular, dilated 2, asymmetric 5, dilated 4, regular, dilated 8, asymmetric 5, dilated 16
        return nn.Sequential(
            Bottleneck(128, 0.1), Bottleneck(128, 0.1, dilation=2), Bottleneck(128, 0.1, asymmetric=5),
            Bottleneck(128, 0.1, dilation=4), Bottleneck(128, 0.1), Bottleneck(128, 0.1, dilation=8),
            Bottleneck(128, 0.1, asymmetric=5), Bottleneck(128, 0.1, dilation=16),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.encoder_only:
            coarse = self.encoder_classifier(self._encode(x)[-1])
            return coarse if self.training else F.interpolate(coarse, size=x.shape[-2:], mode="bilinear",
                                                              align_corners=False)
        return fit_to(self.classifier(self.output_layer_input(x)), x.shape[-2:])

    def output_layer(self) -> nn.Module | None:
        return None if self.encoder_only else self.classifier

    def output_layer_input(self, x: torch.Tensor) -> torch.Tensor:
        """The 16-channel half-resolution map the 2x2 stride-2 ``classifier`` turns into logits."""
        x1, x2, indices1, indices2, x3 = self._encode(x)
        y = self.stage4(self.up4(x3, indices2, x2.shape[-2:]))
        return self.stage5(self.up5(y, indices1, x1.shape[-2:]))

    def _encode(self, x: torch.Tensor):
        x1 = self.initial(x)
        x2, indices1 = self.down1(x1)
        x2 = self.stage1(x2)
        x3, indices2 = self.down2(x2)
        x3 = self.stage3(self.stage2(x3))
        return x1, x2, indices1, indices2, x3
