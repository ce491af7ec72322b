"""Batch-norm folding: every Conv -> BatchNorm pair becomes one convolution.

In eval mode a batch norm is a per-channel affine map, so it can be merged into the weights
and bias of the convolution that feeds it (``torch.nn.utils.fusion.fuse_conv_bn_eval`` does the
arithmetic). What no library does for an arbitrary model is *find* the pairs: torch.fx cannot
trace our models (decoders crop to shapes read from tensors) and timm hides its activation
inside ``BatchNormAct2d``. So we find them the way the data flows: one forward pass on a tiny
input with hooks that record which tensor each convolution produced and which tensor each
batch norm consumed. A batch norm whose input *is* a convolution's output (same tensor
object) is that convolution's partner. Afterwards the folded model is checked against the
original on the same input, so a pair whose convolution output had a second consumer (which
folding would change) can never slip through silently.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _replacement_for_norm(norm: nn.Module) -> nn.Module | None:
    """What is left of a batch norm once its affine map lives in the conv; None if unknown."""
    if type(norm) in _NORMS:
        return nn.Identity()
    # timm's BatchNormAct2d: batch norm, then ``drop``, then ``act`` (both modules).
    if isinstance(getattr(norm, "act", None), nn.Module) and isinstance(getattr(norm, "drop", None), nn.Module):
        return nn.Sequential(norm.drop, norm.act)
    return None


def find_conv_bn_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """Names of (conv, batch norm) pairs where the norm directly consumes the conv's output.

    Only modules that run exactly once per forward pass qualify (a shared module could be
    paired differently at each call).
    """
    names = {module: name for name, module in model.named_modules()}
    produced: dict[int, tuple[nn.Module, torch.Tensor]] = {}
    calls: dict[nn.Module, int] = {}
    consumed: dict[nn.Module, nn.Module] = {}
    handles = []

    def after_conv(module, inputs, output):
        calls[module] = calls.get(module, 0) + 1
        produced[id(output)] = (module, output)  # keep the tensor alive so its id stays unique

    def before_norm(module, inputs):
        calls[module] = calls.get(module, 0) + 1
        source = produced.get(id(inputs[0]))
        if source is not None and source[1] is inputs[0]:
            consumed[module] = source[0]

    for module in model.modules():
        if isinstance(module, _CONVS):
            handles.append(module.register_forward_hook(after_conv))
        elif isinstance(module, _NORMS):
            handles.append(module.register_forward_pre_hook(before_norm))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return [(names[conv], names[norm]) for norm, conv in consumed.items()
            if calls.get(norm) == 1 and calls.get(conv) == 1 and _replacement_for_norm(norm) is not None]


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, module)


def fold_batch_norm(model: nn.Module, example: torch.Tensor, *, atol: float = 1e-3,
                    inplace: bool = False) -> tuple[nn.Module, int]:
    """Fold every Conv -> BatchNorm pair of an eval-mode model; returns (model, pairs folded).

    ``example`` is a small input of the right layout (a 1x3x64x64 tensor does for an image
    model); the result is checked against the unfolded model on it and, should they
    disagree by more than ``atol`` (relative to the output's scale), the unfolded copy is
    returned with a warning.
    """
    if not inplace:
        model = copy.deepcopy(model)
    model.eval()
    pairs = find_conv_bn_pairs(model, example)
    if not pairs:
        return model, 0
    with torch.no_grad():
        reference = model(example)
    original = copy.deepcopy(model)
    for conv_name, norm_name in pairs:
        conv, norm = model.get_submodule(conv_name), model.get_submodule(norm_name)
        transpose = isinstance(conv, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d))
        _set_submodule(model, conv_name, fuse_conv_bn_eval(conv, norm, transpose=transpose))
        _set_submodule(model, norm_name, _replacement_for_norm(norm))
    with torch.no_grad():
        folded = model(example)
    scale = max(float(reference.abs().max()), 1.0)
    error = float((folded - reference).abs().max()) / scale
    if error > atol:
        warnings.warn(f"batch-norm folding changed the output by {error:.2e} (relative); "
                      "keeping the unfolded model", RuntimeWarning, stacklevel=2)
        return original, 0
    return model, len(pairs)
