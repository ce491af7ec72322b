"""Fast-SCNN: sizes, gradients, Tramac's release layout, cost, the exported adaptive pooling."""

import pytest
import torch
from torch import nn
from torch.export import Dim
from torch.nn import functional as F

import rtseg
from rtseg.errors import RtsegError
from rtseg.normalisation import IMAGENET_MEAN, IMAGENET_STD
from rtseg.models.zoo.fast_scnn import PUBLISHED, _tramac_to_ours
from rtseg.models.zoo.pyramid import adaptive_avg_pool2d
from rtseg.models.zoo.training_only import inference_param_count
from zoo_helpers import (assert_any_size, assert_exports, assert_gradients_everywhere,
                         assert_training_only_heads_are_exactly_the_unused_ones, fixture, state_with_layout)

SINGLE_THREAD = True
LAYOUTS = fixture("fast_scnn")["layouts"]


def test_registered_with_the_authors_normalisation():
    model = rtseg.create_model("fast_scnn", num_classes=5)
    assert (model.name, model.num_classes, model.mean, model.std) == ("fast_scnn", 5, IMAGENET_MEAN, IMAGENET_STD)
    assert {r.model for r in PUBLISHED} == {"fast_scnn"}
    with pytest.raises(RtsegError, match="no ImageNet weights"):
        rtseg.create_model("fast_scnn", pretrained=True)


def test_any_input_size_in_train_and_eval_mode():
    assert_any_size("fast_scnn", {"out": 7, "aux": 7})


def test_gradients_reach_every_parameter_at_an_odd_size():
    assert_gradients_everywhere(rtseg.create_model("fast_scnn", num_classes=3), (67, 93))


def test_only_the_auxiliary_head_is_training_only():
    assert_training_only_heads_are_exactly_the_unused_ones(rtseg.create_model("fast_scnn", num_classes=3), (64, 64))


@pytest.mark.parametrize("layout", ["cityscapes", "cityscapes_aux"])
def test_the_release_layout_converts_and_loads(layout, tmp_path):
    release = state_with_layout(LAYOUTS[layout]["keys"])
    torch.save(release, tmp_path / "fast_scnn_citys.pth")
    model = rtseg.create_model("fast_scnn", weights=tmp_path / "fast_scnn_citys.pth")
    own = model.state_dict()
    converted = {_tramac_to_ours(k): k for k in release}
    assert len(converted) == len(release)  # no two official keys onto one of ours
    for ours, official in converted.items():
        assert torch.equal(own[ours], release[official]), official
    if layout == "cityscapes":  # released without the auxiliary head: it keeps its initialisation
        assert set(own) - set(converted) == {k for k in own if k.startswith("aux_head.")}


def test_a_release_that_does_not_fit_names_its_keys(tmp_path):
    release = state_with_layout(LAYOUTS["cityscapes"]["keys"])
    del release["global_feature_extractor.ppm.out.conv.1.running_var"]
    torch.save(release, tmp_path / "cut.pth")
    with pytest.raises(RtsegError, match=r"cut.pth does not fit FastSCNN: missing keys: "
                                         r"global_feature_extractor.ppm.out.bn.running_var$"):
        rtseg.create_model("fast_scnn", weights=tmp_path / "cut.pth")


def test_cost_matches_the_paper():
    # Poudel et al. 2019: 1.11 million parameters (the paper publishes no FLOPs).
    assert inference_param_count(rtseg.create_model("fast_scnn")) == pytest.approx(1.11e6, rel=0.05)


class _Pool(nn.Module):
    def forward(self, x):
        return torch.cat([adaptive_avg_pool2d(x, bins).flatten(2) for bins in (1, 2, 3, 6)], 2)


def test_exported_adaptive_pooling_is_pytorchs_at_any_size():
    """While exporting, the pools are averaging matrices built from the traced map's size: the
    exported program must pool like ``F.adaptive_avg_pool2d`` at other sizes (uneven bins, a map
    smaller than the bins)."""
    program = torch.export.export(_Pool(), (torch.randn(2, 4, 16, 24),),
                                  dynamic_shapes={"x": {2: Dim.AUTO, 3: Dim.AUTO}}, strict=False)
    assert any(node.target == torch.ops.aten.matmul.default for node in program.graph.nodes)
    for size in ((9, 17), (5, 4), (33, 65)):
        x = torch.randn(2, 4, *size)
        expected = torch.cat([F.adaptive_avg_pool2d(x, bins).flatten(2) for bins in (1, 2, 3, 6)], 2)
        torch.testing.assert_close(program.module()(x), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.slow
def test_onnx_export_at_any_size(tmp_path):
    assert_exports(rtseg.create_model("fast_scnn", num_classes=4), tmp_path, (128, 192), other=(257, 513))
