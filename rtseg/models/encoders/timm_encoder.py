"""Any timm backbone as an encoder: ``timm.<timm model name>[.<pretrained tag>]``.

timm (Wightman et al., github.com/huggingface/pytorch-image-models) builds about 1,300
ImageNet backbones and, with ``features_only=True``, returns the maps its ``feature_info``
lists, each with its channels and reduction. This module only decides which of those maps
are rtseg's five levels and states what is missing; building, dilation, weight loading and
normalisation stay timm's, so nothing here depends on one architecture:

* **Levels.** For each nominal stride 2, 4, 8, 16, 32 the deepest map timm lists at that
  reduction, read from the model built on the meta device (no memory, no initialisation).
  A backbone without a map at stride 2 (ConvNeXt, FastViT, EfficientViT, Swin...) has that
  level ``None``; one without maps at 8, 16 and 32 (plain ViTs, stride 16 throughout) is
  refused with the strides it has. ``feature_info`` holds the channels and the *actual*
  strides timm reports for the built model, so it is known before any forward pass.
* **Any input size.** rtseg's networks take crops and frames of any size (its decoders crop
  or pad each up-sampled map to its partner), so the backbone runs once on the meta device
  at 257x513 when it is built; those made for one size (Swin, CoaT, EfficientFormer, MaxViT)
  or for multiples of their stride (DLA, HRNet, HaloNet, LambdaResNet) are refused, naming the
  backbone and timm's own error, instead of failing later inside a benchmark.
* **Output stride.** 8 or 16 through timm's own ``output_stride`` (the last stages dilated),
  where the backbone supports it (ResNet, RegNet, EfficientNet/MobileNet, ConvNeXt,
  MobileViT...); for the others a one-line error naming the backbone, which is also how the
  dilation decoder refuses them.
* **Weights.** ``pretrained=True``: timm's weights for the name's tag (online).
  ``pretrained=path``: a local ``.pth``/``.safetensors`` state dict of the timm model (the
  classification model as timm and the Hugging Face hub release it, or its features-only
  form), read by rtseg's safe reader, checked key by key (timm's features-only loading is not
  strict), then loaded by timm itself (its checkpoint filter, its classifier handling).
* **Normalisation.** ``mean``/``std`` are the tag's ``pretrained_cfg`` (the default tag's
  when none is given): 0/1 for timm's MobileViT or MIIL weights, 0.5/0.5 for TF ports, not
  ImageNet's by assumption.
"""

from __future__ import annotations

import difflib
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import timm
import torch
from torch import nn

from rtseg.errors import RtsegError
from rtseg.models.encoders.base import DEEP_LEVELS, NOMINAL_STRIDES, Encoder, FeatureInfo, check_output_stride
from rtseg.normalisation import check_normalisation
from rtseg.models.registry import ENCODERS
from rtseg.models.weights import fit_state_dict, read_state_dict

TIMM_PREFIX = "timm."
OUTPUT_STRIDES = (8, 16, 32)
ODD_SIZE = (257, 513)  # an input size no backbone built for one size (or its multiples) accepts


def check_timm_name(name: str) -> str:
    """``name`` (``arch`` or ``arch.tag``) if timm knows it, else an error with close names."""
    arch, tag = timm.models.split_model_name_tag(name)
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise RtsegError(f"timm has no model {arch!r}{hint} (`rtseg models --timm PATTERN` lists them)")
    if tag:
        try:
            timm.models.get_pretrained_cfg(name)
        except RuntimeError:
            tags = sorted(timm.models.get_arch_pretrained_cfgs(arch))
            raise RtsegError(f"timm model {arch!r} has no pretrained tag {tag!r}; "
                             f"its tags: {', '.join(tags) or 'none'}") from None
    return name


def select_levels(reductions: Sequence[int]) -> tuple[int | None, ...]:
    """For each nominal stride 2..32 the index of the deepest map at that reduction, or None."""
    return tuple(max((i for i, r in enumerate(reductions) if r == stride), default=None)
                 for stride in NOMINAL_STRIDES)


@functools.lru_cache(maxsize=None)  # timm's registry is fixed: a name probes the same every time
def probe_backbone(name: str) -> tuple[tuple[tuple[int, int], ...], tuple[int | None, ...]]:
    """What rtseg can take from timm's ``name``: ``(channels, reduction)`` of every map its
    ``feature_info`` lists, and the index of the map at each of rtseg's five levels.

    Both come from the classification model built, and run once, on the meta device (no
    weights, memory or arithmetic): timm states feature_info at construction. A backbone
    without maps at strides 8, 16 and 32, or one that fails at an odd input size, is refused.
    """
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False)
        info = getattr(model, "feature_info", None)
        if not info:
            raise RtsegError(f"timm backbone {name} states no feature_info: timm cannot build it features-only")
        features = tuple((int(f["num_chs"]), int(f["reduction"])) for f in info)
        levels = select_levels([r for _, r in features])
        if any(levels[i] is None for i in DEEP_LEVELS):
            raise RtsegError(f"timm backbone {name} has feature maps at strides {sorted({r for _, r in features})}; "
                             f"rtseg's decoders need maps at strides "
                             f"{', '.join(str(NOMINAL_STRIDES[i]) for i in DEEP_LEVELS)}")
        try:
            model.eval()(torch.zeros(1, 3, *ODD_SIZE))
        except NotImplementedError:
            pass  # an operator without a meta kernel: the size cannot be checked here
        except (RuntimeError, AssertionError, ValueError, IndexError) as exc:
            cfg = timm.models.get_pretrained_cfg(name)
            why = (f"timm builds it for {cfg.input_size[1]}x{cfg.input_size[2]} only" if cfg and cfg.fixed_input_size
                   else "rtseg's encoders must take any size")
            raise RtsegError(f"timm backbone {name} fails at an input of {ODD_SIZE[0]}x{ODD_SIZE[1]} ({why}): "
                             f"{type(exc).__name__}: {exc}".splitlines()[0]) from exc
    return features, levels


class TimmEncoder(Encoder):
    """A timm backbone's features-only model, its maps placed at rtseg's five levels."""

    def __init__(self, timm_name: str, output_stride: int = 32):
        super().__init__()
        self.timm_name = check_timm_name(timm_name)
        self.output_stride = check_output_stride(output_stride, OUTPUT_STRIDES)
        features, levels = probe_backbone(self.timm_name)
        self.levels = tuple(level for level in range(len(levels)) if levels[level] is not None)
        self.out_indices = tuple(levels[level] for level in self.levels)
        self.body = self._build_body()
        self._set_feature_info([features[i][1] for i in self.out_indices])
        cfg = self.body.pretrained_cfg
        self.mean, self.std = check_normalisation(cfg.get("mean"), cfg.get("std"),
                                                  f"pretrained_cfg of timm model {self.timm_name}")

    def _build_body(self, **weights) -> nn.Module:
        kwargs = {"features_only": True, "out_indices": self.out_indices, "pretrained": False, **weights}
        if self.output_stride != 32:
            kwargs["output_stride"] = self.output_stride
        try:
            return timm.create_model(self.timm_name, **kwargs)
        except (TypeError, AssertionError, ValueError, KeyError, NotImplementedError) as exc:
            # timm signals an unsupported option or feature extraction with any of these.
            what = (f"at output_stride={self.output_stride} (it may build at 32 only)" if self.output_stride != 32
                    else "features-only")
            raise RtsegError(f"timm cannot build backbone {self.timm_name} {what}: "
                             f"{type(exc).__name__}: {exc}".splitlines()[0]) from exc

    def _set_feature_info(self, nominal: Sequence[int]) -> None:
        channels, strides = self.body.feature_info.channels(), self.body.feature_info.reduction()
        expected = [min(stride, self.output_stride) for stride in nominal]
        if list(strides) != expected:
            raise RtsegError(f"timm backbone {self.timm_name} gives maps at strides {list(strides)} "
                             f"with output_stride={self.output_stride}, not {expected}")
        infos: list[FeatureInfo | None] = [None] * len(NOMINAL_STRIDES)
        for level, c, s in zip(self.levels, channels, strides):
            infos[level] = FeatureInfo(int(c), int(s))
        self.feature_info = tuple(infos)
        # A few timm families (MambaOut, Hiera-SAM2...) return channels-last maps.
        self.channels_last_maps = str(getattr(self.body, "output_fmt", "NCHW")) in ("NHWC", "Format.NHWC")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor | None]:
        maps = self.body(x)
        out: list[torch.Tensor | None] = [None] * len(NOMINAL_STRIDES)
        for level, fmap in zip(self.levels, maps):
            out[level] = fmap.permute(0, 3, 1, 2) if self.channels_last_maps else fmap
        return out

    # --- weights ----------------------------------------------------------------------
    def load_pretrained(self, pretrained: bool | str | Path) -> None:
        if pretrained is True:
            try:
                self.body = self._build_body(pretrained=True)
            except (OSError, RuntimeError) as exc:  # offline (hub or URL), or a name without weights
                raise RtsegError(f"cannot load timm's weights for {self.timm_name} (downloaded from the "
                                 f"Hugging Face hub): {type(exc).__name__}: {exc}".splitlines()[0]) from exc
            return
        state, source = read_state_dict(pretrained), str(pretrained)
        own = self.body.state_dict()
        for prefix in ("", "body."):  # the features-only model's own layout, or this encoder's
            if {prefix + k for k in own} == set(state):
                fit_state_dict(self.body, {k[len(prefix):]: v for k, v in state.items()}, source)
                return
        self._check_timm_state(state, source)
        self.body = self._build_body(pretrained=True, pretrained_cfg_overlay=dict(state_dict=state))
        # timm keeps the overlay in the config; the tensors now live in the model.
        self.body.pretrained_cfg.pop("state_dict", None)

    def _check_timm_state(self, state: Mapping[str, torch.Tensor], source: str) -> None:
        """The keys and shapes of timm's classification model, bar its classifier (timm drops it)."""
        with torch.device("meta"):
            reference = timm.create_model(self.timm_name, pretrained=False)
        heads = reference.pretrained_cfg.get("classifier") or ()
        heads = (heads,) if isinstance(heads, str) else tuple(heads)

        def body_only(keys):
            return {k for k in keys if not any(k.startswith(head + ".") for head in heads)}

        own = reference.state_dict()
        missing, unexpected = body_only(own) - set(state), body_only(state) - set(own)
        wrong = sorted(k for k in body_only(own) & set(state) if own[k].shape != state[k].shape)
        if missing or unexpected or wrong:
            parts = [f"{label}: {', '.join(sorted(keys)[:6])}{' ...' if len(keys) > 6 else ''} ({len(keys)})"
                     for label, keys in (("missing keys", missing), ("unexpected keys", unexpected),
                                         ("keys with another shape", wrong)) if keys]
            raise RtsegError(f"{source} is not a state dict of timm model {self.timm_name}: " + "; ".join(parts))


@ENCODERS.register_family(TIMM_PREFIX)
def timm_encoder(timm_name: str) -> Callable[..., TimmEncoder]:
    """``timm.<name>`` -> the constructor ``create_model`` calls with the encoder's options."""
    check_timm_name(timm_name)

    def build(output_stride: int = 32) -> TimmEncoder:
        return TimmEncoder(timm_name, output_stride=output_stride)

    return build


# --- listing: ``rtseg models --timm PATTERN`` ----------------------------------------------
@dataclass(frozen=True)
class TimmBackbone:
    name: str  # the rtseg encoder name, "timm.<arch>"
    levels: tuple[int | None, ...]  # channels at strides 2..32, None where missing
    tags: tuple[str, ...]  # pretrained tags timm has weights for


def list_timm_backbones(pattern: str = "") -> tuple[list[TimmBackbone], dict[str, str]]:
    """timm's architectures matching ``pattern`` (a substring, or a wildcard pattern) that rtseg
    can use as encoders, and why each of the others cannot (the encoder's own error).

    Each architecture is built as an encoder on the meta device: quick for one family, a few
    minutes for all of timm.
    """
    arch_filter = pattern if any(ch in pattern for ch in "*?[") else f"*{pattern}*"
    tags: dict[str, list[str]] = {}
    for tagged in timm.list_pretrained([arch_filter, arch_filter + ".*"]):
        arch, tag = timm.models.split_model_name_tag(tagged)
        tags.setdefault(arch, []).append(tag)
    usable, unusable = [], {}
    for arch in timm.list_models(arch_filter):
        try:
            with torch.device("meta"):
                encoder = TimmEncoder(arch)
        except RtsegError as exc:
            unusable[arch] = str(exc)
            continue
        usable.append(TimmBackbone(TIMM_PREFIX + arch, tuple(encoder.out_channels), tuple(tags.get(arch, ()))))
    return usable, unusable
