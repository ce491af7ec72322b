"""BiSeNet's context path, shared by BiSeNet v1 (Yu et al. 2018) and STDC-Seg (Fan et al. 2021),
and the official key names of it and of the heads both repositories build around it.

On a trunk's /8, /16 and /32 maps: the global average of /32 through a 1x1 ConvBNReLU is added
to ARM(/32); that is up-sampled (nearest) to the /16 map's size and refined by a 3x3
ConvBNReLU (the /16 context); added to ARM(/16), up-sampled to /8 and refined again (the /8
context). CoinCheung/BiSeNet up-samples by ``nn.Upsample(scale_factor=2)`` and STDC-Seg by
``F.interpolate(size=...)``; both are nearest and identical whenever the maps halve exactly,
so we resize to the next map's size, which also works when they do not (odd inputs).

Both official repositories name these parts the same (``cp.arm16``, ``cp.conv_avg``,
``cp.conv_head32``, ``conv_out``, ``conv_out16``, ``conv_out32``, ``ffm.convblk``):
``rename_bisenet_key`` maps them onto ours.
"""

from __future__ import annotations

import re

import torch
from torch import nn
from torch.nn import functional as F

from rtseg.models.zoo.blocks import AttentionRefinement, ConvBNReLU
from rtseg.models.zoo.pooling import global_average
from rtseg.models.zoo.release_keys import compile_rules, rename_by_rules


class ContextPath(nn.Module):
    def __init__(self, channels16: int, channels32: int, channels: int = 128):
        super().__init__()
        self.arm16 = AttentionRefinement(channels16, channels)
        self.arm32 = AttentionRefinement(channels32, channels)
        self.global_context = ConvBNReLU(channels32, channels, 1)
        self.refine32 = ConvBNReLU(channels, channels, 3)
        self.refine16 = ConvBNReLU(channels, channels, 3)

    def forward(self, size8, feat16: torch.Tensor, feat32: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The /8 and /16 context maps (``size8``: the /8 map's height and width)."""
        context = self.arm32(feat32) + self.global_context(global_average(feat32))
        context16 = self.refine32(F.interpolate(context, feat16.shape[-2:], mode="nearest"))
        context8 = self.refine16(F.interpolate(self.arm16(feat16) + context16, size8, mode="nearest"))
        return context8, context16


# Official prefix -> ours; the first pattern that matches wins.
_RENAMES = compile_rules((
    (r"cp\.arm(16|32)\.conv_atten\.", r"context.arm\1.attention.conv."),
    (r"cp\.arm(16|32)\.bn_atten\.", r"context.arm\1.attention.bn."),
    (r"cp\.arm(16|32)\.conv\.", r"context.arm\1.conv."),
    (r"cp\.conv_avg\.", "context.global_context."),
    (r"cp\.conv_head32\.", "context.refine32."),
    (r"cp\.conv_head16\.", "context.refine16."),
    (r"ffm\.convblk\.", "ffm.project."),
    (r"ffm\.conv1\.", "ffm.attention.0."),  # STDC-Seg: two-layer attention
    (r"ffm\.conv2\.", "ffm.attention.2."),
    (r"ffm\.conv\.", "ffm.attention.conv."),  # CoinCheung's BiSeNet v1: conv + BN attention
    (r"ffm\.bn\.", "ffm.attention.bn."),
))
# conv_out (main), conv_out16 (/8 context), conv_out32 (/16 context), conv_out_sp8 (STDC's detail
# head), each a 3x3 ConvBNReLU ``conv`` and a 1x1 ``conv_out``.
_HEAD = re.compile(r"conv_out(16|32|_sp8)?\.(conv_out|conv)\.")
_HEADS = {None: "head", "16": "aux", "32": "aux2", "_sp8": "detail"}


def rename_bisenet_key(key: str) -> str:
    """An official context-path, FFM or head key -> ours; other keys come back unchanged."""
    head = _HEAD.match(key)
    if head is not None:
        part = "classifier" if head.group(2) == "conv_out" else "conv"
        return f"{_HEADS[head.group(1)]}.{part}.{key[head.end():]}"
    return rename_by_rules(key, _RENAMES)
