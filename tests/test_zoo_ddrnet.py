"""DDRNet-23-slim: sizes, gradients, the authors' release and ImageNet layouts, cost, export."""

import pytest
import torch

import rtseg
from rtseg.errors import RtsegError
from rtseg.normalisation import IMAGENET_MEAN, IMAGENET_STD
from rtseg.models.zoo.eval_parameters import count_eval_params, training_only_modules
from rtseg.models.zoo.published import published_records
from rtseg.profiling.flops import count_flops
from zoo_checks import (assert_any_size, assert_eval_parameters_are_those_an_eval_pass_reaches, assert_exports,
                        assert_gradients_everywhere, assert_imagenet_file_loads, assert_loaded_from, assert_registered,
                        official_layout, on_meta, random_state)

SINGLE_THREAD = True
FIXTURE = "ddrnet_23_slim"
RENAMES = {"final_layer.": "head.", "seghead_extra.": "aux_head."}


def test_registered_with_the_authors_normalisation():
    assert_registered(["ddrnet_23_slim"], IMAGENET_MEAN, IMAGENET_STD)
    assert len(published_records("ddrnet_23_slim")) == 1


def test_any_input_size_in_train_and_eval_mode():
    assert_any_size("ddrnet_23_slim", {"out": 7, "aux": 7})


def test_gradients_reach_every_parameter_at_an_odd_size():
    assert_gradients_everywhere(rtseg.create_model("ddrnet_23_slim", num_classes=3), (67, 93))


def test_only_the_auxiliary_head_is_training_only():
    model = rtseg.create_model("ddrnet_23_slim", num_classes=3)
    assert training_only_modules(model) == ("aux_head",)
    assert_eval_parameters_are_those_an_eval_pass_reaches(model, (64, 64))


def test_the_cityscapes_release_layout_converts_and_loads(tmp_path):
    keys = official_layout(FIXTURE, "cityscapes")
    release = random_state(keys)
    torch.save(release, tmp_path / "best_val_smaller.pth")
    model = rtseg.create_model("ddrnet_23_slim", weights=tmp_path / "best_val_smaller.pth")
    # Every network key comes from the file; only the loss's class weights are left over.
    assert assert_loaded_from(model, release, RENAMES, "model.") == {"loss.criterion.weight"}


def test_a_release_that_does_not_fit_names_its_keys(tmp_path):
    release = random_state(official_layout(FIXTURE, "cityscapes"))
    del release["model.spp.compression.2.weight"]
    release["model.extra.weight"] = torch.zeros(1)
    torch.save(release, tmp_path / "bad.pth")
    with pytest.raises(RtsegError, match=r"bad.pth does not fit DDRNet: missing keys: spp.compression.2.weight; "
                                         r"unexpected keys: extra.weight"):
        rtseg.create_model("ddrnet_23_slim", weights=tmp_path / "bad.pth")
    with pytest.raises(RtsegError, match="keys with another shape: .*head.conv2.bias"):
        rtseg.create_model("ddrnet_23_slim", num_classes=11, weights=tmp_path / "bad.pth")


def test_a_release_without_the_auxiliary_head_loads_for_evaluation(tmp_path):
    release = {k: v for k, v in random_state(official_layout(FIXTURE, "cityscapes")).items()
               if not k.startswith("model.seghead_extra.")}
    torch.save(release, tmp_path / "eval_only.pth")
    model = rtseg.create_model("ddrnet_23_slim", weights=tmp_path / "eval_only.pth")
    assert torch.equal(model.head.conv2.weight, release["model.final_layer.conv2.weight"])


def test_the_imagenet_backbone_loads_and_its_classifier_is_dropped(tmp_path):
    own, imagenet = assert_imagenet_file_loads("ddrnet_23_slim", official_layout(FIXTURE, "imagenet"),
                                               tmp_path / "DDRNet23s_imagenet.pth", ("down5", "last_layer", "linear"))
    fresh = rtseg.create_model("ddrnet_23_slim").state_dict()
    assert torch.equal(own["spp.scale0.0.running_var"], fresh["spp.scale0.0.running_var"])  # not in the file

    del imagenet["layer3_.1.conv2.weight"]
    torch.save(imagenet, tmp_path / "cut.pth")
    with pytest.raises(RtsegError, match=r"cut.pth does not fit ImageNetBackbone: missing keys: layer3_.1.conv2.weight"):
        rtseg.create_model("ddrnet_23_slim", pretrained=tmp_path / "cut.pth")
    with pytest.raises(RtsegError, match="path to the authors' ImageNet file"):
        rtseg.create_model("ddrnet_23_slim", pretrained=True)


def test_cost_matches_the_paper():
    model = on_meta("ddrnet_23_slim")
    # Hong et al. 2021, Cityscapes table: 5.7M parameters, 36.3 "GFLOPs" (multiply-adds) at 1024x2048.
    assert count_eval_params(model) == pytest.approx(5.7e6, rel=0.05)
    assert count_flops(model, (1024, 2048)) / 2 == pytest.approx(36.3e9, rel=0.05)


@pytest.mark.slow
def test_onnx_export_at_any_size(tmp_path):
    # Traced where the 1/64 map is 2x3: torch.export fixes a size that is 1 at the traced input.
    assert_exports(rtseg.create_model("ddrnet_23_slim", num_classes=4), tmp_path, (128, 192), (72, 104))
