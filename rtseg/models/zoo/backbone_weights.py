"""The authors' ImageNet-pretrained backbone files, loaded into the part of a network they cover.

A classification checkpoint shares its stem and stages with the segmentation network and adds a
classifier the network has not; the segmentation heads are missing from it by design. The file
must hold exactly the backbone modules (a missing or misshapen backbone key is an error that
names it, as ``fit_state_dict`` words it), the classifier's keys are dropped by name, and
anything else is an unexpected key. The official training scripts instead load whichever keys
happen to match and ignore the rest, which would hide a wrong file. Used by every zoo network
whose recipe starts from ImageNet weights but BiSeNet v1, whose trunk is rtseg's ``resnet18``
encoder (torchvision's file, loaded by the encoder).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from torch import nn

from rtseg.errors import RtsegError
from rtseg.models.weights import fit_state_dict, read_state_dict


class ImageNetBackbone(nn.ModuleDict):
    """A view of a network's backbone children under their own names (same state-dict keys)."""


def load_backbone_weights(model: nn.Module, path: str | Path | bool, backbone: tuple[str, ...],
                          classifier: tuple[str, ...], release: str, optional: tuple[str, ...] = (),
                          convert: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]] | None = None) -> None:
    """Load ``path`` into ``model``'s children named in ``backbone``; drop the keys under ``classifier``.

    Children named in ``optional`` load when the file holds any of their keys (then all of
    them), for files whose exact contents the authors did not publish. ``convert`` turns the
    file's remaining keys into ``model``'s (where the classification code names them otherwise).
    ``release`` names the authors' file, for the error when ``path`` is not a path.
    """
    if isinstance(path, bool) or not isinstance(path, (str, Path)):
        raise RtsegError(f"{getattr(model, 'name', type(model).__name__)}: pretrained must be the path "
                         f"to the authors' ImageNet file ({release}); nothing is downloaded, got {path!r}")
    state = read_state_dict(path)
    dropped = tuple(f"{name}." for name in classifier)
    state = {key: value for key, value in state.items() if not key.startswith(dropped)}
    if convert is not None:
        state = convert(state)
    present = tuple(name for name in optional if any(key.startswith(f"{name}.") for key in state))
    view = ImageNetBackbone({name: getattr(model, name) for name in backbone + present})
    fit_state_dict(view, state, str(path))

