"""Which models a benchmark runs: ``paper``, ``realtime``, ``all`` or a comma-separated list of
names, where a list may mix names and those keywords (``paper,realtime``).

A benchmark *entry* is a model plus how it is trained: fine annotations only, or the
paper's two-stage coarse pre-training then fine-tuning (``<model>-coarse``, the name of
its config pair in ``configs/``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from rtseg.errors import RtsegError
from rtseg.models import model_names
from rtseg.models.factory import split_model_name

COARSE_SUFFIX = "-coarse"

# Table 1's seven fine-only rows, in the paper's order.
# Row 3 ("UNet-ResNet18" in the paper) is the LinkNet the authors' code trained (docs/fidelity.md).
PAPER_TABLE1_FINE = ("skipnet-mobilenet_v1", "skipnet-shufflenet_v1", "linknet-resnet18", "unet-mobilenet_v1",
                     "unet-shufflenet_v1", "dilation-mobilenet_v1", "dilation-shufflenet_v1")
# Table 1's two rows with coarse pre-training.
PAPER_TABLE1_COARSE = ("skipnet-mobilenet_v1", "skipnet-shufflenet_v1")
# Table 3's models that rtseg implements (DeepLab is not one of them).
PAPER_TABLE3 = ("skipnet-vgg16", "enet", "segnet")
# Today's real-time models (docs/zoo.md): each paper's own network, with its authors' released weights.
REALTIME_MODELS = ("bisenet_v1", "bisenet_v2", "stdc1_seg", "stdc2_seg", "pp_liteseg_t", "pp_liteseg_b",
                   "ddrnet_23_slim", "pidnet_s", "pidnet_m", "pidnet_l", "fast_scnn", "lraspp_mobilenet_v3_large")
# What ``make demo`` runs: the fine-only grid rows, the reference real-time network and the two
# smallest of today's models, so that its Pareto plots show both generations.
DEMO_MODELS = PAPER_TABLE1_FINE + ("enet", "fast_scnn", "pidnet_s")
KEYWORDS = ("paper", "realtime", "all")


@dataclass(frozen=True)
class Entry:
    """One row of the benchmark: ``model`` (a ``create_model`` name), trained fine-only or coarse -> fine."""

    model: str
    coarse: bool = False
    options: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def key(self) -> str:
        """Unique name in results and folder names: the model, plus ``-coarse`` for a two-stage run."""
        return self.model + (COARSE_SUFFIX if self.coarse else "")

    @property
    def parts(self) -> tuple[str, str | None]:
        """``(decoder, encoder)``, or ``(whole model name, None)``."""
        return split_model_name(self.model)


def parse_entry(name: str, options: dict | None = None) -> Entry:
    """``"skipnet-mobilenet_v1"`` or ``"skipnet-mobilenet_v1-coarse"`` -> Entry (unknown names refused)."""
    name = name.strip()
    coarse = name.endswith(COARSE_SUFFIX)
    model = name[: -len(COARSE_SUFFIX)] if coarse else name
    if not model:
        raise RtsegError(f"--models: {name!r} is not a model name")
    split_model_name(model)  # raises RtsegError naming the unknown model, decoder or encoder
    return Entry(model, coarse, dict(options or {}))


def resolve_models(spec: str | Sequence[str | Entry], has_coarse: bool = False,
                   options: dict | None = None) -> tuple[list[Entry], list[str]]:
    """``"paper"``, ``"all"``, ``"a,b,c"`` or a list of names or entries -> (entries, notes for the report).

    ``paper`` is Table 1 (seven fine-only rows, then the two coarse rows when the data has
    ``gtCoarse``; skipped with a note otherwise) and the Table 3 models; ``realtime`` is today's
    real-time models (``REALTIME_MODELS``); ``all`` is every registered model, fine-only. A
    comma-separated list may name keywords beside models: ``paper,realtime``.
    """
    notes: list[str] = []
    if isinstance(spec, str):
        names = []
        for part in (n.strip() for n in spec.split(",")):
            if part.lower() in KEYWORDS:
                names += [n for n in _keyword_names(part.lower(), has_coarse, notes) if n not in names]
            elif part:
                names.append(part)
    else:
        names = list(spec)
    if not names:
        raise RtsegError("--models is empty: give paper, realtime, all or comma-separated model names (see 'rtseg models')")
    entries: list[Entry] = []
    for name in names:
        entry = name if isinstance(name, Entry) else parse_entry(name, options)
        if entry.coarse and not has_coarse:
            raise RtsegError(f"--models {entry.key}: coarse pre-training needs gtCoarse/ in the data folder")
        if entry.key in {e.key for e in entries}:
            raise RtsegError(f"--models names {entry.key} twice")
        entries.append(entry)
    return entries, notes


def _keyword_names(keyword: str, has_coarse: bool, notes: list[str]) -> list[str]:
    if keyword == "paper":
        names = list(PAPER_TABLE1_FINE)
        if has_coarse:
            names += [m + COARSE_SUFFIX for m in PAPER_TABLE1_COARSE]
        else:
            notes.append("Table 1's coarse rows (" + ", ".join(m + COARSE_SUFFIX for m in PAPER_TABLE1_COARSE)
                         + ") were skipped: the data has no gtCoarse/ folder")
        return names + list(PAPER_TABLE3)
    if keyword == "realtime":
        return list(REALTIME_MODELS)
    return model_names()
