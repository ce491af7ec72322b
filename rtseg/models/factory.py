"""``create_model``: one name (``decoder-encoder`` or a whole model like ``enet``) -> nn.Module."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable

import torch

from rtseg.checkpoint import load_checkpoint
from rtseg.errors import RtsegError
from rtseg.models import baselines, decoders, encoders, zoo  # noqa: F401 (importing them registers the built-ins)
from rtseg.models.encoders.base import DEEP_LEVELS
from rtseg.models.registry import DECODERS, ENCODERS, MODELS
from rtseg.models.segmentation import SegmentationModel, SegmentationNetwork
from rtseg.models.weights import fit_state_dict
from rtseg.normalisation import check_normalisation

# The paper's model grid (Table 1 and FCN8s from Table 3); the report lays tables out in this order.
PAPER_ENCODERS = ("vgg16", "resnet18", "mobilenet_v1", "shufflenet_v1")
PAPER_DECODERS = ("skipnet", "unet", "dilation")


def split_model_name(name: str, encoder: str | None = None) -> tuple[str, str | None]:
    """``"skipnet-mobilenet_v1"`` -> ``("skipnet", "mobilenet_v1")``; ``"enet"`` -> ``("enet", None)``."""
    if encoder is None and "-" in name:
        name, encoder = name.split("-", 1)
    if encoder is None:
        if name in MODELS:
            return name, None
        if name in DECODERS:
            raise RtsegError(f"decoder {name!r} needs an encoder: use '{name}-<encoder>'; "
                             f"encoders: {', '.join(ENCODERS.names() + [p + '<name>' for p in ENCODERS.families()])}")
        raise RtsegError(f"unknown model {name!r}; known models: {', '.join(model_names())}")
    DECODERS.get(name)
    ENCODERS.get(encoder)
    return name, encoder


def _accepted_options(factory: Callable) -> set[str]:
    params = inspect.signature(factory).parameters
    return {n for n, p in params.items()
            if n not in ("self", "feature_info", "num_classes") and p.kind is not p.VAR_KEYWORD}


def _take(options: dict[str, Any], accepted: set[str]) -> dict[str, Any]:
    return {k: options.pop(k) for k in list(options) if k in accepted}


def create_model(name: str, encoder: str | None = None, num_classes: int = 19,
                 pretrained: bool | str | Path | None = None, weights: str | Path | None = None,
                 **options: Any) -> SegmentationNetwork:
    """Build a segmentation network.

    ``create_model("skipnet", "mobilenet_v1")`` and ``create_model("skipnet-mobilenet_v1")``
    are the same model; ``create_model("enet")`` builds a whole reference network.
    ``pretrained`` is ``True`` (the encoder's ImageNet weights from torchvision/timm, needs a
    network connection) or a path to a local state dict in the library's format. Options go
    to whichever of encoder and decoder takes them (``width=0.5``, ``groups=3``,
    ``fusion="concat"``, ``output_stride=8``); an option neither takes is an error.
    ``weights`` is a whole-network file loaded after building (rtseg's own state dict, or a
    network's official release for networks that convert one: ``SegmentationNetwork.load_weights``).
    """
    model = _build(name, encoder, num_classes, pretrained, dict(options))
    if weights is not None:
        model.load_weights(weights)
    return model


def _build(name: str, encoder: str | None, num_classes: int, pretrained, options: dict) -> SegmentationNetwork:
    decoder_name, encoder_name = split_model_name(name, encoder)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise RtsegError(f"num_classes must be a positive integer, got {num_classes!r}")
    if encoder_name is None:
        factory = MODELS.get(decoder_name)
        unknown = set(options) - _accepted_options(factory)
        if unknown:
            raise RtsegError(f"model {decoder_name!r} takes no option {sorted(unknown)[0]!r}")
        if pretrained:
            options["pretrained"] = pretrained
        model = factory(num_classes=num_classes, **options)
        if not isinstance(model, SegmentationNetwork) or model.name != decoder_name:
            raise TypeError(f"model {decoder_name!r} must build a SegmentationNetwork named {decoder_name!r}, "
                            f"got {type(model).__name__} named {getattr(model, 'name', None)!r}")
        return model

    decoder_cls = DECODERS.get(decoder_name)
    encoder_cls = ENCODERS.get(encoder_name)
    encoder_options = _take(options, _accepted_options(encoder_cls))
    decoder_options = _take(options, _accepted_options(decoder_cls))
    if options:
        raise RtsegError(f"neither encoder {encoder_name!r} nor decoder {decoder_name!r} "
                         f"takes option {sorted(options)[0]!r}")
    if "output_stride" in _accepted_options(encoder_cls):
        encoder_options.setdefault("output_stride", decoder_cls.encoder_output_stride)
    enc = encoder_cls(**encoder_options)
    infos = getattr(enc, "feature_info", None)
    if not infos or len(infos) != 5 or any(infos[level] is None for level in DEEP_LEVELS):
        raise RtsegError(f"encoder {encoder_name!r} must state feature_info for its five maps "
                         "(strides 2, 4, 8, 16, 32; only the /2 and /4 ones may be None)")
    if pretrained:
        enc.load_pretrained(pretrained)
    dec = decoder_cls(enc.feature_info, num_classes, **decoder_options)
    return SegmentationModel(enc, dec, f"{decoder_name}-{encoder_name}", num_classes)


def model_names(include_baselines: bool = True) -> list[str]:
    """Every buildable name: the decoder x encoder grid, then whole models."""
    names = [f"{d}-{e}" for d in DECODERS.names() for e in ENCODERS.names()]
    return names + (MODELS.names() if include_baselines else [])


def list_models() -> dict[str, list[str]]:
    """Registered encoders, decoders, whole models and every model name."""
    return {"encoders": ENCODERS.names(), "decoders": DECODERS.names(),
            "baselines": MODELS.names(), "models": model_names()}


def model_from_checkpoint(state: dict, source: str = "checkpoint") -> SegmentationNetwork:
    """Rebuild the network an rtseg checkpoint describes, with its weights and normalisation (no download)."""
    model = create_model(state["model_name"], num_classes=int(state["num_classes"]),
                         pretrained=None, **dict(state.get("model_options") or {}))
    fit_state_dict(model, state["model"], source)
    if state.get("mean") is not None and state.get("std") is not None:
        # The normalisation the weights were trained with travels in the checkpoint.
        model.mean, model.std = check_normalisation(state["mean"], state["std"], source)
    return model


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[SegmentationNetwork, dict]:
    """``(network in eval mode on device, checkpoint dict)`` from an ``rtseg train`` checkpoint."""
    state = load_checkpoint(path)
    model = model_from_checkpoint(state, str(path)).to(device).eval()
    return model, state
