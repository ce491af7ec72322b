"""The zoo's one adaptive pooling, which every pyramid pooling module pools through: PyTorch's
pooling in eager mode, the same pooling in an ONNX graph exported with a free height and width."""

import contextlib
import io

import pytest
import torch
from torch import nn
from torch.export import Dim
from torch.nn import functional as F

from rtseg.inference.onnx_runtime import create_session
from rtseg.models.zoo.pooling import adaptive_avg_pool2d

SINGLE_THREAD = True
BINS = (1, 2, 3, 4, 6, (2, 5))  # every bin count a zoo network pools to, and a non-square one
OTHER_SIZES = ((9, 17), (5, 4), (33, 65))  # uneven bins, a map smaller than the bins


def test_adaptive_pooling_is_pytorchs_in_eager_mode():
    x = torch.randn(2, 3, 9, 17)
    for bins in BINS:
        assert torch.equal(adaptive_avg_pool2d(x, bins), F.adaptive_avg_pool2d(x, bins)), bins


class _Pools(nn.Module):
    def forward(self, x):
        return torch.cat([adaptive_avg_pool2d(x, bins).flatten(2) for bins in BINS], 2)


def test_exported_adaptive_pooling_is_pytorchs_at_any_size():
    """While ``torch.export`` traces, the pools are averaging matrices built from the map's size:
    the exported program pools like ``F.adaptive_avg_pool2d`` at sizes other than the traced one."""
    program = torch.export.export(_Pools(), (torch.randn(2, 4, 16, 24),),
                                  dynamic_shapes={"x": {2: Dim.AUTO, 3: Dim.AUTO}}, strict=False)
    assert any(node.target == torch.ops.aten.matmul.default for node in program.graph.nodes)
    for size in OTHER_SIZES:
        x = torch.randn(2, 4, *size)
        expected = torch.cat([F.adaptive_avg_pool2d(x, bins).flatten(2) for bins in BINS], 2)
        torch.testing.assert_close(program.module()(x), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.slow  # an ONNX export, if a small one: about 2 s on one core
def test_onnx_pooling_is_pytorchs_at_any_size(tmp_path):
    """The ONNX exporter, not ``torch.export``, is what turns PyTorch's adaptive pooling into
    gathers fixed at the traced size: exported with a free height and width, the graph must pool
    like ``F.adaptive_avg_pool2d`` in ONNX Runtime at other sizes. Each network's own ONNX test
    runs it at a second size too (SPPM: pp_liteseg, PPM: fast_scnn, DAPPM: ddrnet_23_slim,
    PAPPM: pidnet_s, context path: stdc1_seg and bisenet_v1, context embedding: bisenet_v2)."""
    path = tmp_path / "pools.onnx"
    with contextlib.redirect_stdout(io.StringIO()):  # the exporter narrates its steps
        torch.onnx.export(_Pools().eval(), (torch.randn(2, 4, 16, 24),), str(path), dynamo=True, input_names=["x"],
                          dynamic_shapes={"x": {0: Dim.AUTO, 2: Dim.AUTO, 3: Dim.AUTO}})
    session = create_session(path)
    for size in OTHER_SIZES:
        x = torch.randn(2, 4, *size)
        expected = torch.cat([F.adaptive_avg_pool2d(x, bins).flatten(2) for bins in BINS], 2)
        pooled = torch.from_numpy(session.run(None, {"x": x.numpy()})[0])
        torch.testing.assert_close(pooled, expected, rtol=1e-5, atol=1e-6, msg=lambda m: f"at {size}: {m}")
