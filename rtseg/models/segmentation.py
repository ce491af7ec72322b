"""What every network ``create_model`` returns, and the encoder -> decoder composition.

``SegmentationNetwork`` is the contract the rest of rtseg relies on, for the paper's grid,
ENet and SegNet, and today's real-time models alike:

* attributes ``name`` (the registered name), ``num_classes``, ``mean`` and ``std`` (the input
  normalisation of its weights, see ``rtseg.normalisation``);
* ``forward(x)``: ``x`` is ``[N, 3, H, W]`` float32, normalised; in eval mode the result is the
  main logits ``[N, num_classes, H, W]`` at the input's height and width;
* in training mode a network with auxiliary heads returns a dict instead: ``"out"`` (the main
  logits, as in eval mode) and one entry per extra output its recipe trains (``"aux"``,
  ``"aux2"``, ``"boundary"``, ``"detail"``...), each a tensor; the training recipe names the
  loss of each (``rtseg.training``), so the trainer needs no code per model;
* ``output_layer()``: the last layer, linear (a transposed convolution to full resolution, or
  a stride-1 convolution at it: a 1x1 classifier), whose output, fitted to the input's size by
  ``fit_to``, is the eval-mode logits, or None; when there is one, ``output_layer_input(x)`` is
  what it is applied to, so an inference engine can take the labels inside that layer
  (``rtseg.inference.upsampled_labels``) without the full-resolution scores;
* ``load_weights(path)``: a whole-network file, rtseg's own or the authors' release, turned
  into this network's keys by ``convert_state_dict`` (identity unless a network knows another
  layout); a file that does not fit names its missing and unexpected keys.

``SegmentationModel`` is the grid's network: encoder -> decoder -> logits, nothing else (the
shape of segmentation_models.pytorch); its ``mean``/``std`` are its encoder's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import torch
from torch import nn

from rtseg.errors import RtsegError
from rtseg.models.decoders.base import Decoder
from rtseg.models.encoders.base import Encoder
from rtseg.normalisation import IMAGENET_MEAN, IMAGENET_STD
from rtseg.models.weights import fit_state_dict, read_state_dict


class SegmentationNetwork(nn.Module):
    """Base class of every network rtseg builds; see the module docstring for the contract."""

    def __init__(self, name: str, num_classes: int, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise RtsegError(f"num_classes must be a positive integer, got {num_classes!r}")
        self.name = name
        self.num_classes = num_classes
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)

    def output_layer(self) -> nn.Module | None:
        """The last, linear layer of the logits (see the module docstring), or None: the default."""
        return None

    def output_layer_input(self, x: torch.Tensor) -> torch.Tensor:
        """The input of ``output_layer()`` for the image batch ``x`` (eval mode)."""
        raise NotImplementedError(f"{self.name} names no output layer")

    def convert_state_dict(self, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Another layout of this network's weights (an official release) -> this module's keys.

        Called by ``load_weights`` when the file's keys are not this module's own. Networks
        that load their authors' checkpoints override it; the default changes nothing.
        """
        return dict(state)

    def load_weights(self, weights: str | Path | Mapping[str, torch.Tensor], source: str | None = None) -> None:
        """Load a whole-network state dict (a file path or a mapping), converted when needed."""
        if isinstance(weights, Mapping):
            state, source = dict(weights), source or "state dict"
        else:
            state, source = read_state_dict(weights), source or str(weights)
        if set(state) != set(self.state_dict()):
            state = self.convert_state_dict(state)
        fit_state_dict(self, state, source)


class SegmentationModel(SegmentationNetwork):
    def __init__(self, encoder: Encoder, decoder: Decoder, name: str, num_classes: int):
        # The normalisation the encoder's weights expect; data pipelines read it here.
        super().__init__(name, num_classes, encoder.mean, encoder.std)
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x), x.shape[-2:])

    def output_layer(self) -> nn.Module | None:
        name = self.decoder.output_layer
        return None if name is None else getattr(self.decoder, name)

    def output_layer_input(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder.output_layer_input(self.encoder(x), x.shape[-2:])
