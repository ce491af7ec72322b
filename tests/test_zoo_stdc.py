"""STDC backbones and STDC1/2-Seg: sizes, gradients, the authors' key layouts, cost, ONNX export.

The outputs were also checked against the authors' model code (MichaelFan01/STDC-Seg at
59ff37f, ``models/model_stages.py``) run outside the repository: docs/zoo.md gives the figures.
"""

import pytest
import torch

import rtseg
from rtseg.errors import RtsegError
from rtseg.normalisation import IMAGENET_MEAN, IMAGENET_STD
from rtseg.models.zoo.eval_parameters import count_eval_params, training_only_modules
from rtseg.models.zoo.stdc import STDCClassifier, STDCNet
from rtseg.models.zoo.stdc_seg import INPLACE_ABN_EPS
from rtseg.profiling.flops import count_flops, count_params
from zoo_checks import (assert_any_size, assert_eval_parameters_are_those_an_eval_pass_reaches, assert_exports,
                        assert_gradients_everywhere, assert_registered, official_layout, random_state)

SINGLE_THREAD = True
MODELS = ("stdc1_seg", "stdc2_seg")
FIXTURE = "stdc_seg"


def test_registered_with_the_authors_normalisation():
    assert_registered(MODELS, IMAGENET_MEAN, IMAGENET_STD)


@pytest.mark.parametrize("name", MODELS)
def test_any_input_size_in_train_and_eval_mode(name):
    assert_any_size(name, {"out": 7, "aux": 7, "aux2": 7, "detail": 1})


@pytest.mark.parametrize("name", MODELS)
def test_training_outputs_reach_every_parameter(name):
    outputs = assert_gradients_everywhere(rtseg.create_model(name, num_classes=3))
    assert set(outputs) == {"out", "aux", "aux2", "detail"}
    assert outputs["detail"].shape[1] == 1


def test_trunk_maps_have_the_documented_strides_and_channels():
    feats = STDCNet("stdc1")(torch.zeros(1, 3, 65, 97))
    assert [tuple(f.shape[1:]) for f in feats] == [(32, 33, 49), (64, 17, 25), (256, 9, 13), (512, 5, 7), (1024, 3, 4)]


def test_pool_padding_choice_changes_only_the_top_left_border():
    # PyTorch's AvgPool2d counts the zero padding (STDC-Seg's release), PaddlePaddle's does not
    # (PP-LiteSeg's): with an even map only the first row and column of the skip pool see padding.
    torch_style, paddle_style = STDCNet("stdc1", True).eval(), STDCNet("stdc1", False).eval()
    paddle_style.load_state_dict(torch_style.state_dict())
    x = torch.randn(1, 64, 16, 16)
    with torch.no_grad():
        diff = (torch_style.stages[2][0](x) - paddle_style.stages[2][0](x)).abs().amax(dim=1)[0]
    assert diff[1:, 1:].max() == 0 and diff[0].min() > 0 and diff[:, 0].min() > 0


# --- The authors' checkpoints ---------------------------------------------------------------

@pytest.mark.parametrize("name", MODELS)
def test_the_official_checkpoint_layout_converts_and_loads(name, tmp_path):
    layout = official_layout(FIXTURE, name)
    state = random_state(layout)
    path = tmp_path / "model_maxmIOU50.pth"
    torch.save(state, path)  # as train.py saves it: net.module.state_dict()
    model = rtseg.create_model(name, num_classes=19, weights=path)
    ours = model.state_dict()
    # The trunk is nn.BatchNorm2d: copied as it is.
    assert torch.equal(ours["backbone.stages.0.bn.weight"], state["cp.backbone.features.0.bn.weight"])
    assert torch.equal(ours["backbone.stages.3.1.convs.2.conv.weight"],
                       state[f"cp.backbone.features.{2 + model.backbone.layers[0] + 1}.conv_list.2.conv.weight"])
    assert torch.equal(ours["backbone.stages.2.0.down.conv.weight"], state["cp.backbone.features.2.avd_layer.0.weight"])
    # The head is InPlace-ABN: its scale is |weight| + eps.
    assert torch.equal(ours["head.conv.bn.weight"], state["conv_out.conv.bn.weight"].abs() + INPLACE_ABN_EPS)
    assert torch.equal(ours["context.arm32.attention.bn.weight"], state["cp.arm32.bn_atten.weight"].abs() + INPLACE_ABN_EPS)
    assert torch.equal(ours["head.conv.bn.bias"], state["conv_out.conv.bn.bias"])
    assert torch.equal(ours["ffm.attention.2.weight"], state["ffm.conv2.weight"])
    assert torch.equal(ours["detail.classifier.weight"], state["conv_out_sp8.conv_out.weight"])
    assert torch.equal(ours["aux2.conv.conv.weight"], state["conv_out32.conv.conv.weight"])


def test_a_misfit_checkpoint_names_its_keys(tmp_path):
    state = random_state(official_layout(FIXTURE, "stdc1_seg"))
    del state["ffm.conv1.weight"]
    state["cp.backbone.features.99.conv.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(RtsegError, match=r"missing keys: ffm\.attention\.0\.weight.*unexpected keys: "
                                         r"backbone\.features\.99\.conv\.weight"):
        rtseg.create_model("stdc1_seg", weights=path)
    # STDC2's file does not fit STDC1: the extra trunk modules are named.
    torch.save(random_state(official_layout(FIXTURE, "stdc2_seg")), path)
    with pytest.raises(RtsegError, match="unexpected keys: backbone.features"):
        rtseg.create_model("stdc1_seg", weights=path)


@pytest.mark.parametrize("variant, name", [("stdc1", "stdc1_seg"), ("stdc2", "stdc2_seg")])
def test_the_authors_imagenet_trunk_loads(variant, name, tmp_path):
    state = random_state(official_layout(FIXTURE, f"{variant}_imagenet"))
    path = tmp_path / "STDCNet_imagenet.tar"
    torch.save({"epoch": 250, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    model = rtseg.create_model(name, pretrained=path)
    trunk = model.backbone.state_dict()
    assert torch.equal(trunk["stages.1.conv.weight"], state["features.1.conv.weight"])
    assert torch.equal(trunk["stages.4.0.convs.3.bn.running_var"], state[f"features.{len(model.backbone.stages[2]) + len(model.backbone.stages[3]) + 2}.conv_list.3.bn.running_var"])
    with pytest.raises(RtsegError, match="STDC1 trunk|STDC2 trunk"):
        rtseg.create_model(name, pretrained=True)
    del state["features.0.conv.weight"]
    torch.save({"state_dict": state}, path)
    with pytest.raises(RtsegError, match=r"missing keys: stages\.0\.conv\.weight"):
        rtseg.create_model(name, pretrained=path)


# --- Cost -------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant, published_macs", [("stdc1", 813e6), ("stdc2", 1446e6)])
def test_imagenet_trunk_has_the_published_multiply_adds(variant, published_macs):
    # The paper's ImageNet table and the checkpoints' names (STDCNet813M, STDCNet1446) count
    # multiply-adds at 224x224; ours counts convolutions and linear layers.
    with torch.device("meta"):
        macs = count_flops(STDCClassifier(variant), (224, 224)) / 2
    assert macs == pytest.approx(published_macs, rel=0.02)


def test_eval_parameters_leave_out_exactly_the_training_heads():
    model = rtseg.create_model("stdc1_seg")  # on the CPU: an eval backward is compared
    assert training_only_modules(model) == ("aux", "aux2", "detail")
    heads = sum(count_params(getattr(model, h)) for h in ("aux", "aux2", "detail"))
    assert count_eval_params(model) == count_params(model) - heads
    assert_eval_parameters_are_those_an_eval_pass_reaches(model, (64, 64))


def test_a_checkpoint_without_the_training_heads_loads_for_evaluation(tmp_path):
    state = {k: v for k, v in random_state(official_layout(FIXTURE, "stdc1_seg")).items()
             if not k.startswith(("conv_out16.", "conv_out32.", "conv_out_sp8."))}
    torch.save(state, tmp_path / "eval_only.pth")
    model = rtseg.create_model("stdc1_seg", weights=tmp_path / "eval_only.pth")
    assert torch.equal(model.head.classifier.weight, state["conv_out.conv_out.weight"])


# --- Export -----------------------------------------------------------------------------------

@pytest.mark.slow  # a dynamo export of the whole network: about 8 s on one core
def test_onnx_export_at_any_size(tmp_path):
    assert_exports(rtseg.create_model("stdc1_seg", num_classes=4), tmp_path, (64, 96), (71, 45))
