"""``LossRecipe``: the config's loss terms applied to whatever a network returns.

A network returns its main logits, or in training mode a dict of them (``"out"``) and its
extra outputs (``"aux"``, ``"boundary"``, ``"detail"``...; ``rtseg.models.segmentation``).
The recipe's terms name the outputs they read, so the trainer needs no code per network.
Every output must be read by some term and every term's output must exist: an auxiliary head
the recipe forgets would get no gradient (and stop DistributedDataParallel), a misspelt name
would train nothing.

All the terms' counts travel in one all-reduce per step (``rtseg.training.losses.base``).
"""

from __future__ import annotations

from typing import Mapping, NamedTuple

import torch

from rtseg.distributed import DistInfo, all_reduce_sum
from rtseg.errors import RtsegError
from rtseg.training.losses.base import LossTerm, Partial


class LossValue(NamedTuple):
    loss: torch.Tensor       # to back-propagate (scaled for DDP's gradient averaging)
    total: float             # the global weighted sum of the terms, the same on every process
    terms: dict[str, float]  # each term's global value, before its weight


class LossRecipe:
    def __init__(self, terms: Mapping[str, LossTerm], class_weights: torch.Tensor | None = None,
                 info: DistInfo | None = None):
        if not terms:
            raise RtsegError("the loss has no terms: give the config a loss section, e.g. "
                             "loss: {out: {type: cross_entropy}}")
        self.terms = dict(terms)
        self.class_weights = class_weights
        self.info = info or DistInfo()

    @property
    def needs_class_weights(self) -> bool:
        return any(term.wants_class_weights() for term in self.terms.values())

    def reads(self) -> set[str]:
        return set().union(*(term.reads(name) for name, term in self.terms.items()))

    def check_outputs(self, produced: set[str]) -> None:
        read = self.reads()
        missing, unread = sorted(read - produced), sorted(produced - read)
        listed = ", ".join(sorted(produced))
        if missing:
            readers = [f"loss.{n}" for n, t in self.terms.items() if t.reads(n) & set(missing)]
            raise RtsegError(f"{', '.join(readers)} read{'s' if len(readers) == 1 else ''} the network output "
                             f"{', '.join(map(repr, missing))}, but in training mode it returns {listed}")
        if unread:
            raise RtsegError(f"the network returns {', '.join(map(repr, unread))} in training mode, which no loss "
                             f"term reads: add a term for each (e.g. loss.{unread[0]}: "
                             "{type: cross_entropy, weight: 0.4})")

    def __call__(self, outputs: torch.Tensor | Mapping[str, torch.Tensor], target: torch.Tensor) -> LossValue:
        if isinstance(outputs, torch.Tensor):
            outputs = {"out": outputs}
        self.check_outputs(set(outputs))
        partials: list[tuple[str, LossTerm, Partial]] = [
            (name, term, term.partial(name, outputs, target, self.class_weights)) for name, term in self.terms.items()]
        local = [value.detach().float() for _, _, p in partials for value in (*p.sums, *p.counts)]
        totals = all_reduce_sum(torch.stack(local), self.info)
        world = self.info.world_size
        loss: torch.Tensor | float = 0.0
        logged: dict[str, float] = {}
        on_host = totals.detach().cpu()  # one device synchronisation for all the logged values
        start = 0
        for name, term, part in partials:
            n_sums, n_counts = len(part.sums), len(part.counts)
            counts = slice(start + n_sums, start + n_sums + n_counts)
            # this process's sums over the global counts; DDP averages the gradients of the world
            loss = loss + term.weight * (term.combine(part.sums, tuple(totals[counts])) * world)
            logged[name] = float(term.combine(tuple(on_host[start:start + n_sums]), tuple(on_host[counts])))
            start += n_sums + n_counts
        total = sum(self.terms[name].weight * value for name, value in logged.items())
        return LossValue(loss, float(total), logged)
