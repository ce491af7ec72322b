"""Fast-SCNN: sizes, gradients, Tramac's release layout, cost, the exported adaptive pooling."""

import pytest
import torch

import rtseg
from rtseg.errors import RtsegError
from rtseg.normalisation import IMAGENET_MEAN, IMAGENET_STD
from rtseg.models.zoo.eval_parameters import count_eval_params, training_only_modules
from rtseg.models.zoo.fast_scnn import _tramac_to_ours
from rtseg.models.zoo.published import published_records
from zoo_checks import (assert_any_size, assert_eval_parameters_are_those_an_eval_pass_reaches, assert_exports,
                        assert_gradients_everywhere, assert_registered, official_layout, on_meta,
                        random_state)

SINGLE_THREAD = True
FIXTURE = "fast_scnn"


def test_registered_with_the_authors_normalisation():
    assert_registered(["fast_scnn"], IMAGENET_MEAN, IMAGENET_STD)
    assert len(published_records("fast_scnn")) == 2
    with pytest.raises(RtsegError, match="no ImageNet weights"):
        rtseg.create_model("fast_scnn", pretrained=True)


def test_any_input_size_in_train_and_eval_mode():
    assert_any_size("fast_scnn", {"out": 7, "aux": 7})


def test_gradients_reach_every_parameter_at_an_odd_size():
    assert_gradients_everywhere(rtseg.create_model("fast_scnn", num_classes=3), (67, 93))


def test_only_the_auxiliary_head_is_training_only():
    model = rtseg.create_model("fast_scnn", num_classes=3)
    assert training_only_modules(model) == ("aux_head",)
    assert_eval_parameters_are_those_an_eval_pass_reaches(model, (64, 64))


@pytest.mark.parametrize("layout", ["cityscapes", "cityscapes_aux"])
def test_the_release_layout_converts_and_loads(layout, tmp_path):
    release = random_state(official_layout(FIXTURE, layout))
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
    release = random_state(official_layout(FIXTURE, "cityscapes"))
    del release["global_feature_extractor.ppm.out.conv.1.running_var"]
    torch.save(release, tmp_path / "cut.pth")
    with pytest.raises(RtsegError, match=r"cut.pth does not fit FastSCNN: missing keys: "
                                         r"global_feature_extractor.ppm.out.bn.running_var$"):
        rtseg.create_model("fast_scnn", weights=tmp_path / "cut.pth")


def test_cost_matches_the_paper():
    # Poudel et al. 2019: 1.11 million parameters (the paper publishes no FLOPs).
    assert count_eval_params(on_meta("fast_scnn")) == pytest.approx(1.11e6, rel=0.05)


@pytest.mark.slow
def test_onnx_export_at_any_size(tmp_path):
    assert_exports(rtseg.create_model("fast_scnn", num_classes=4), tmp_path, (128, 192), (257, 513))
