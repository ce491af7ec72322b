"""ShuffleNet v1 (Zhang et al. 2017, arXiv 1707.01083) encoder, written here.

No maintained library ships ShuffleNet v1 (torchvision and timm have v2 only), so the
network is built from the paper: a 3x3 stride-2 stem conv and a 3x3 stride-2 max pool,
then stages of 4/8/4 units. A unit is grouped 1x1 -> BN -> ReLU -> channel shuffle -> 3x3
depthwise -> BN -> grouped 1x1 -> BN, joined to its input by addition, or for the first
(stride-2) unit of a stage by concatenation with a 3x3 average pool of the input; ReLU
after the join. The bottleneck is a quarter of the unit's output; the first 1x1 of stage 2
is not grouped (its input has only 24 channels).

Two choices follow Megvii's official PyTorch code (github.com/megvii-model/ShuffleNet-Series,
the only published ImageNet weights), so those weights compute here what they computed there:

* The shuffle is Megvii's permutation: view the channels as ``(c / g, g)`` and transpose,
  which is the inverse of the paper's "reshape to ``(g, c / g)``, transpose". Both send
  every group's channels to every next group; they are not interchangeable by relabelling
  weights in general (8 groups at 1x differ), hence Megvii's.
* The shuffle runs after the depthwise conv and its BN instead of before. Both are
  per-channel, so this is the same function with the depthwise weights indexed in the
  first 1x1's output order; it also moves 4x less data in the stride-2 units.

Speed (the model must be real-time on a CPU): the shuffle is PyTorch's own
``channel_shuffle`` kernel, which keeps channels_last tensors channels_last (a
view/transpose copy turned them back to NCHW); tracing and export see the view/transpose
form. Batch norm is folded by the inference engines, as for every other model.

``output_stride=8``: the first units of stages 3 and 4 keep stride 1 (their average pool
too) and the depthwise convs after them use dilation 2 and 4; as in torchvision's and
timm's dilated networks (the project's other encoders), the unit that gave up its stride
keeps the previous dilation. Parameter shapes do not change.

Weights: Megvii publishes its ImageNet checkpoints only behind OneDrive/BaiduYun links, so no
code downloads them. Configs name the local file as ``${RTSEG_WEIGHTS:-weights}/`` +
``megvii_weights_file(groups, width)`` (``rtseg.models.weights_path``); a missing file stops
with one line naming the file, where Megvii publishes it and how to pass it.
Normalisation: Megvii trained on BGR 0..255; ``convert_megvii_state_dict`` folds that into the
stem, so the encoder takes RGB normalised with ImageNet's statistics, like the other encoders.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping

import torch
from torch import nn
from torch.nn import functional as F

from rtseg.errors import RtsegError
from rtseg.models.encoders.base import Encoder, check_output_stride
from rtseg.models.encoders.classifier import GlobalPoolClassifier
from rtseg.normalisation import IMAGENET_MEAN, IMAGENET_STD
from rtseg.models.registry import register_encoder
from rtseg.models.weights_path import WEIGHTS_DIR, WEIGHTS_DIR_VARIABLE, expand_weights_path

# Output channels of stage 2 at 1x per number of groups (paper, Table 1); stages 3 and 4 double.
STAGE2_CHANNELS = {1: 144, 2: 200, 3: 240, 4: 272, 8: 384}
STAGE_UNITS = (4, 8, 4)
STEM_CHANNELS = 24
MEGVII_RELEASE = "https://github.com/megvii-model/ShuffleNet-Series/tree/master/ShuffleNetV1"


def megvii_weights_file(groups: int, width: float) -> str:
    """The local name rtseg's configs give Megvii's checkpoint of this configuration."""
    return f"shufflenet_v1_group{groups}_{width:.1f}x.pth.tar"


def stage_channels(groups: int, width: float) -> tuple[int, int, int]:
    """Stage output channels: the 1x figures scaled by ``width``, rounded to a multiple of
    ``4 * groups`` so that the bottleneck (a quarter) splits into whole groups."""
    step = 4 * groups
    stage2 = max(step, round(STAGE2_CHANNELS[groups] * width / step) * step)
    return stage2, 2 * stage2, 4 * stage2


def default_stem_channels(groups: int, width: float) -> int:
    """24 scaled by ``width`` (the paper scales every layer), rounded up to a multiple of
    ``groups`` so that the first unit's branch (stage channels - stem) splits into groups.

    This gives Megvii's 0.5x (12 for 3 groups, 16 for 8), 1x and 2x stems; their 1.5x
    models keep a 24-channel stem: build those with ``stem_channels=24``.
    """
    return math.ceil(round(STEM_CHANNELS * width, 6) / groups) * groups


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Megvii's shuffle: channel ``j * groups + i`` moves to ``i * (c / groups) + j``.

    Eager mode uses PyTorch's own kernel (``F.channel_shuffle`` with ``c / groups`` groups is
    this permutation), which keeps a channels_last input channels_last where the
    view/transpose/reshape copy would turn it back to NCHW; tracing and export get the
    view/transpose/reshape form, since the legacy ONNX exporter has no ``channel_shuffle``.
    """
    batch, channels, height, width = x.shape
    if _tracing():
        return x.view(batch, channels // groups, groups, height, width).transpose(1, 2).reshape(
            batch, channels, height, width)
    return F.channel_shuffle(x, channels // groups)


def _tracing() -> bool:
    return (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()
            or torch.onnx.is_in_onnx_export())


class ConvBN(nn.Module):
    """Conv2d without bias followed by BatchNorm2d (the layout of Megvii's state dicts).

    Batch norm is folded into the conv for inference by the engines (``rtseg.inference``),
    for this encoder and every other model alike, so speed comparisons stay fair.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 dilation: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride,
                              padding=dilation * (kernel_size // 2), dilation=dilation,
                              groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class ShuffleUnit(nn.Module):
    """One ShuffleNet v1 unit (Fig. 2 b/c of the paper)."""

    def __init__(self, in_channels: int, out_channels: int, groups: int, stride: int, dilation: int,
                 concat: bool, grouped_reduce: bool = True):
        super().__init__()
        self.groups = groups
        self.concat = concat
        mid = out_channels // 4
        branch_out = out_channels - in_channels if concat else out_channels
        self.reduce = ConvBN(in_channels, mid, 1, groups=groups if grouped_reduce else 1)
        self.depthwise = ConvBN(mid, mid, 3, stride, dilation, groups=mid)
        self.expand = ConvBN(mid, branch_out, 1, groups=groups)
        # The paper's shortcut for the first unit of a stage (stride 1 in a dilated stage).
        self.shortcut = nn.AvgPool2d(3, stride, padding=1) if concat else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.reduce(x), inplace=True)
        y = self.depthwise(y)
        if self.groups > 1:
            y = channel_shuffle(y, self.groups)
        y = self.expand(y)
        if self.concat:
            return torch.cat((self.shortcut(x), F.relu(y, inplace=True)), dim=1)
        # In place: the BN/conv output is not saved for backward, ReLU saves only its own output.
        return F.relu(y.add_(x), inplace=True)


@register_encoder("shufflenet_v1")
class ShuffleNetV1Encoder(Encoder):
    """ShuffleNet v1 with ``groups`` in (1, 2, 3, 4, 8) and a ``width`` scale (0.5x, 1x, 2x ...).

    Feature maps: stem conv (/2), max pool (/4), stages 2, 3, 4 (/8, /16, /32); at 3 groups
    1x: 24, 24, 240, 480, 960 channels. ``stem_channels`` overrides the stem width (24 at 1x).
    """

    mean = IMAGENET_MEAN  # Megvii's BGR 0..255 is folded into the stem on loading
    std = IMAGENET_STD

    def __init__(self, groups: int = 3, width: float = 1.0, output_stride: int = 32,
                 stem_channels: int | None = None):
        super().__init__()
        if groups not in STAGE2_CHANNELS:
            raise RtsegError(f"shufflenet_v1 groups must be one of "
                             f"{', '.join(map(str, STAGE2_CHANNELS))}, got {groups!r}")
        if not isinstance(width, (int, float)) or not 0 < width <= 4:
            raise RtsegError(f"shufflenet_v1 width must be in (0, 4], got {width!r}")
        channels = stage_channels(groups, width)
        stem = default_stem_channels(groups, width) if stem_channels is None else stem_channels
        if not isinstance(stem, int) or not 0 < stem < channels[0] or stem % groups:
            raise RtsegError(f"shufflenet_v1 stem_channels must be a multiple of groups={groups} below the "
                             f"{channels[0]} stage-2 channels, got {stem!r}")
        self.groups = groups
        self.width = float(width)
        self.output_stride = check_output_stride(output_stride)
        self.stem_channels = stem

        self.stem = ConvBN(3, stem, 3, stride=2)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        in_channels, dilation = stem, 1
        stages = []
        for index, (units, out_channels) in enumerate(zip(STAGE_UNITS, channels)):
            stride, next_dilation = 2, dilation
            if self.output_stride == 8 and index > 0:  # stages 3 and 4 give up their stride
                stride, next_dilation = 1, dilation * 2
            stage = []
            for unit in range(units):
                stage.append(ShuffleUnit(in_channels, out_channels, groups,
                                         stride=stride if unit == 0 else 1,
                                         dilation=dilation if unit == 0 else next_dilation,
                                         concat=unit == 0, grouped_reduce=not (index == 0 and unit == 0)))
                in_channels = out_channels
            dilation = next_dilation
            stages.append(nn.Sequential(*stage))
        self.stage2, self.stage3, self.stage4 = stages
        self.set_feature_info([stem, stem, *channels])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        c1 = F.relu(self.stem(x), inplace=True)
        c2 = self.maxpool(c1)
        c3 = self.stage2(c2)
        c4 = self.stage3(c3)
        c5 = self.stage4(c4)
        return [c1, c2, c3, c4, c5]

    def classifier(self, num_classes: int = 1000) -> nn.Module:
        return GlobalPoolClassifier(self, num_classes)

    # --- weights files -------------------------------------------------------------------
    def load_pretrained(self, pretrained: bool | str | Path) -> None:
        """``True`` or a path (``${RTSEG_WEIGHTS:-weights}/...`` expands) to Megvii's or rtseg's file."""
        if pretrained is not True:
            path = expand_weights_path(pretrained)
            if not path.is_file():
                raise RtsegError(self._weights_help(f"ShuffleNet v1 ImageNet weights not found: {path}", path))
            pretrained = path
        super().load_pretrained(pretrained)

    def download_state_dict(self) -> dict[str, torch.Tensor]:
        default = expand_weights_path(f"{WEIGHTS_DIR}/{megvii_weights_file(self.groups, self.width)}")
        raise RtsegError(self._weights_help("ShuffleNet v1 has no downloadable ImageNet weights", default))

    def _weights_help(self, problem: str, where: Path) -> str:
        return (f"{problem}; download Megvii's ShuffleNetV1 {self.width:.1f}x group={self.groups} checkpoint "
                f"(OneDrive/BaiduYun links at {MEGVII_RELEASE}) and save it as {where} "
                f"(configs look in ${WEIGHTS_DIR_VARIABLE}, else weights/), "
                f"or pass its path: --set model.pretrained=PATH, create_model(..., pretrained=PATH)")

    def convert_state_dict(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """This module's layout, its classifier form's, or Megvii's ShuffleNetV1 -> this module's keys."""
        if "first_conv.0.weight" in state:
            self._check_megvii_config(state)
            out = convert_megvii_state_dict(state, self.mean, self.std)
        elif any(k.startswith("encoder.") for k in state):  # GlobalPoolClassifier(self).state_dict()
            out = {k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")}
        else:
            out = dict(state)
        # Files written before PyTorch 0.4.1 have no BN batch counters; they only drive momentum=None.
        for key, value in self.state_dict().items():
            if key.endswith("num_batches_tracked") and key not in out:
                out[key] = torch.zeros_like(value)
        return out

    def _check_megvii_config(self, state: Mapping[str, torch.Tensor]) -> None:
        found = megvii_config(state)
        ours = {"groups": self.groups, "stem": self.stem_channels, "stage2": self.stage2[0].expand.conv.out_channels
                + self.stem_channels}
        if found and found != ours:
            raise RtsegError(
                f"the Megvii ShuffleNetV1 weights have groups={found['groups']}, {found['stem']} stem and "
                f"{found['stage2']} stage-2 channels, this encoder groups={ours['groups']}, {ours['stem']} and "
                f"{ours['stage2']}: build it with groups={found['groups']}, "
                f"width={found['stage2'] / STAGE2_CHANNELS.get(found['groups'], found['stage2']):g}, "
                f"stem_channels={found['stem']}")


# --- Megvii's ShuffleNetV1 layout (megvii-model/ShuffleNet-Series) --------------------------
# first_conv = Sequential(conv, bn, relu); features.N = unit N over all stages with
# branch_main_1 = Sequential(1x1, bn, relu, depthwise, bn), branch_main_2 = Sequential(1x1, bn);
# classifier = Sequential(Linear without bias).
_MEGVII_UNIT_PARTS = {"branch_main_1.0.": "reduce.conv.", "branch_main_1.1.": "reduce.bn.",
                      "branch_main_1.3.": "depthwise.conv.", "branch_main_1.4.": "depthwise.bn.",
                      "branch_main_2.0.": "expand.conv.", "branch_main_2.1.": "expand.bn."}


def _megvii_unit_prefix(index: int) -> str:
    for stage, units in zip(("stage2", "stage3", "stage4"), STAGE_UNITS):
        if index < units:
            return f"{stage}.{index}."
        index -= units
    return ""


def megvii_config(state: Mapping[str, torch.Tensor]) -> dict[str, int] | None:
    """groups, stem and stage-2 channels of a Megvii ShuffleNetV1 state dict (None if unreadable)."""
    try:
        stem = state["first_conv.0.weight"].shape[0]
        stage2 = state["features.0.branch_main_2.0.weight"].shape[0] + stem
        reduce_weight = state["features.1.branch_main_1.0.weight"]
        groups = stage2 // reduce_weight.shape[1]
    except (KeyError, IndexError, ZeroDivisionError):
        return None
    return {"groups": groups, "stem": stem, "stage2": stage2}


def convert_megvii_state_dict(state: Mapping[str, torch.Tensor], mean=(0.485, 0.456, 0.406),
                              std=(0.229, 0.224, 0.225)) -> dict[str, torch.Tensor]:
    """Rename Megvii's keys to ours and fold their input convention into the stem.

    Megvii trained on BGR images in 0..255 without normalisation; rtseg feeds RGB normalised
    by ``mean``/``std``. BGR 0..255 = 255 * (x * std + mean) with the channels reversed, so
    the stem weights are flipped and scaled by 255 * std, and the constant 255 * mean
    response moves into the BN running mean. That is exact except on the stem's padded
    border, where Megvii saw black and rtseg sees the mean colour.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.startswith("classifier."):
            continue
        new_key = key
        if key.startswith("first_conv.0."):
            new_key = "stem.conv." + key[len("first_conv.0."):]
        elif key.startswith("first_conv.1."):
            new_key = "stem.bn." + key[len("first_conv.1."):]
        elif key.startswith("features."):
            index, _, rest = key[len("features."):].partition(".")
            prefix = _megvii_unit_prefix(int(index)) if index.isdigit() else ""
            part = next((p for p in _MEGVII_UNIT_PARTS if rest.startswith(p)), None)
            if prefix and part:
                new_key = prefix + _MEGVII_UNIT_PARTS[part] + rest[len(part):]
        out[new_key] = value
    weight = out.get("stem.conv.weight")
    if weight is not None and weight.shape[1] == 3:
        weight = weight.flip(1).double()  # BGR -> RGB input channels
        scale = torch.tensor(std, dtype=torch.float64).view(1, 3, 1, 1) * 255
        offset = torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1) * 255
        out["stem.conv.weight"] = (weight * scale).to(state["first_conv.0.weight"].dtype)
        if "stem.bn.running_mean" in out:
            constant = (weight * offset).sum(dim=(1, 2, 3))
            running_mean = out["stem.bn.running_mean"]
            out["stem.bn.running_mean"] = (running_mean.double() - constant).to(running_mean.dtype)
    return out
