"""PIDNet-S/M/L: sizes, gradients, the authors' release and ImageNet layouts, cost, export."""

import pytest
import torch

import rtseg
from rtseg.errors import RtsegError
from rtseg.normalisation import IMAGENET_MEAN, IMAGENET_STD
from rtseg.models.zoo.eval_parameters import count_eval_params, training_only_modules
from rtseg.models.zoo.pidnet import PIDNet
from rtseg.models.zoo.published import published_records
from rtseg.profiling.flops import count_flops
from zoo_checks import (assert_any_size, assert_eval_parameters_are_those_an_eval_pass_reaches, assert_exports,
                        assert_gradients_everywhere, assert_imagenet_file_loads, assert_loaded_from, assert_registered,
                        official_layout, on_meta, random_state)

SINGLE_THREAD = True
NAMES = ("pidnet_s", "pidnet_m", "pidnet_l")
FIXTURE = "pidnet"
RENAMES = {"final_layer.": "head.", "seghead_p.": "aux_head.", "seghead_d.": "boundary_head."}
CLASSIFIER = ("down5", "last_layer", "linear")


def test_registered_with_the_authors_normalisation():
    assert_registered(NAMES, IMAGENET_MEAN, IMAGENET_STD)
    assert [r.model for name in NAMES for r in published_records(name)] == list(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_any_input_size_in_train_and_eval_mode(name):
    assert_any_size(name, {"out": 7, "aux": 7, "boundary": 1})


@pytest.mark.parametrize("name", ("pidnet_s", "pidnet_l"))  # M is S at twice the width
def test_gradients_reach_every_parameter_at_an_odd_size(name):
    assert_gradients_everywhere(rtseg.create_model(name, num_classes=3), (67, 93))


def test_only_the_p_and_d_heads_are_training_only():
    model = rtseg.create_model("pidnet_s", num_classes=3)
    assert training_only_modules(model) == ("aux_head", "boundary_head")
    assert_eval_parameters_are_those_an_eval_pass_reaches(model, (64, 64))


@pytest.mark.parametrize("name", NAMES)
def test_the_cityscapes_release_layout_converts_and_loads(name, tmp_path):
    release = random_state(official_layout(FIXTURE, f"{name}_cityscapes"))
    torch.save(release, tmp_path / "PIDNet_Cityscapes_val.pt")
    model = rtseg.create_model(name, weights=tmp_path / "PIDNet_Cityscapes_val.pt")
    assert assert_loaded_from(model, release, RENAMES, "model.") == {"sem_loss.criterion.weight"}


def test_a_release_that_does_not_fit_names_its_keys(tmp_path):
    release = random_state(official_layout(FIXTURE, "pidnet_s_cityscapes"))
    torch.save(release, tmp_path / "PIDNet_S.pt")
    with pytest.raises(RtsegError, match=r"PIDNet_S.pt does not fit PIDNet: missing keys: .*; unexpected keys: "
                                         r".*; keys with another shape: "):
        rtseg.create_model("pidnet_l", weights=tmp_path / "PIDNet_S.pt")
    del release["model.seghead_d.conv2.bias"]  # a head the file holds in part is not filled in
    torch.save(release, tmp_path / "cut.pt")
    with pytest.raises(RtsegError, match=r"cut.pt does not fit PIDNet: missing keys: boundary_head.conv2.bias$"):
        rtseg.create_model("pidnet_s", weights=tmp_path / "cut.pt")


def test_the_imagenet_backbone_loads_its_branches_and_drops_its_classifier(tmp_path):
    own, imagenet = assert_imagenet_file_loads("pidnet_s", official_layout(FIXTURE, "pidnet_s_imagenet"),
                                               tmp_path / "PIDNet_S_ImageNet.pth.tar", CLASSIFIER)

    # A D-branch module loads when the file has it (all of it); a file without the I branch's
    # last stage is refused.
    diff3 = {k: torch.rand(v.shape) + 0.5 for k, v in own.items() if k.startswith("diff3.")}
    torch.save({**imagenet, **diff3}, tmp_path / "with_d.pth")
    assert torch.equal(rtseg.create_model("pidnet_s", pretrained=tmp_path / "with_d.pth").diff3[0].weight,
                       diff3["diff3.0.weight"])
    del diff3["diff3.1.num_batches_tracked"]
    torch.save({**imagenet, **diff3}, tmp_path / "part_d.pth")
    with pytest.raises(RtsegError, match=r"part_d.pth does not fit ImageNetBackbone: missing keys: "
                                         r"diff3.1.num_batches_tracked$"):
        rtseg.create_model("pidnet_s", pretrained=tmp_path / "part_d.pth")
    torch.save({k: v for k, v in imagenet.items() if not k.startswith("layer5.")}, tmp_path / "cut.pth")
    with pytest.raises(RtsegError, match=r"cut.pth does not fit ImageNetBackbone: missing keys: layer5.0"):
        rtseg.create_model("pidnet_s", pretrained=tmp_path / "cut.pth")


@pytest.mark.parametrize("name, params, gmacs", [("pidnet_s", 7.6e6, 47.6e9), ("pidnet_l", 36.9e6, 275.8e9)])
def test_cost_matches_the_paper(name, params, gmacs):
    # Xu et al. 2023, Cityscapes table at 1024x2048; its "GFLOPs" are multiply-adds.
    model = on_meta(name)
    assert count_eval_params(model) == pytest.approx(params, rel=0.05)
    assert count_flops(model, (1024, 2048)) / 2 == pytest.approx(gmacs, rel=0.05)


def test_the_papers_pidnet_m_figures_are_those_of_four_i_blocks():
    """The paper's PIDNet-M (34.4M, 197.4 GFLOPs) is not the released code's (three BasicBlocks
    in I stages 3 and 4, as ``get_seg_model`` builds it): one more block in each matches it."""
    code = on_meta("pidnet_m")
    with torch.device("meta"):
        paper = PIDNet("pidnet_m", 19, m=2, n=4, planes=64, ppm_planes=96, head_planes=128)
    assert count_eval_params(code) < 0.85 * 34.4e6
    assert count_eval_params(paper) == pytest.approx(34.4e6, rel=0.01)
    assert count_flops(paper, (1024, 2048)) / 2 == pytest.approx(197.4e9, rel=0.01)


@pytest.mark.slow
def test_onnx_export_at_any_size(tmp_path):
    # Traced where the 1/64 map is 2x3: torch.export fixes a size that is 1 at the traced input.
    assert_exports(rtseg.create_model("pidnet_s", num_classes=4), tmp_path, (128, 192), (72, 104))
