"""BiSeNet v1 (ResNet18): sizes, gradients, CoinCheung's key layout, cost, ONNX export.

The outputs were also checked against CoinCheung/BiSeNet's model code (6b4b67a,
``lib/models/bisenetv1.py``) run outside the repository: docs/zoo.md gives the figures.
"""

import math

import pytest
import torch
import torchvision

import rtseg
from rtseg.errors import RtsegError
from rtseg.models.zoo.bisenet_v1 import COINCHEUNG_CITYSCAPES_MEAN, COINCHEUNG_CITYSCAPES_STD
from rtseg.models.zoo.eval_parameters import count_eval_params
from rtseg.profiling.flops import count_flops, count_params
from zoo_checks import (assert_any_size, assert_exports, assert_gradients_everywhere, assert_registered,
                        official_layout, on_meta, random_state)

SINGLE_THREAD = True
FIXTURE = "bisenet_v1"


def test_registered_with_coincheungs_normalisation():
    assert_registered(["bisenet_v1"], COINCHEUNG_CITYSCAPES_MEAN, COINCHEUNG_CITYSCAPES_STD)


def test_any_input_size_in_train_and_eval_mode():
    assert_any_size("bisenet_v1", {"out": 7, "aux": 7, "aux2": 7})


def test_training_outputs_reach_every_parameter():
    assert set(assert_gradients_everywhere(rtseg.create_model("bisenet_v1", num_classes=3))) == {"out", "aux", "aux2"}


def test_the_release_layout_converts_and_loads(tmp_path):
    layout = official_layout(FIXTURE, "cityscapes")
    # CoinCheung's Resnet18 is torchvision's (it loads resnet18-5c106cde.pth): same keys, no fc.
    trunk = {k[len("cp.resnet."):]: s for k, s in layout.items() if k.startswith("cp.resnet.")}
    reference = torchvision.models.resnet18(weights=None).state_dict()
    assert trunk == {k: list(v.shape) for k, v in reference.items() if not k.startswith("fc.")}
    state = random_state(layout)
    path = tmp_path / "model_final_v1_city_new.pth"
    torch.save(state, path)
    ours = rtseg.create_model("bisenet_v1", weights=path).state_dict()
    pairs = {"encoder.body.layer3.0.downsample.1.running_var": "cp.resnet.layer3.0.downsample.1.running_var",
             "spatial.0.conv.weight": "sp.conv1.conv.weight", "spatial.3.bn.bias": "sp.conv_out.bn.bias",
             "context.arm16.attention.bn.weight": "cp.arm16.bn_atten.weight",
             "context.refine32.conv.weight": "cp.conv_head32.conv.weight",
             "context.global_context.bn.running_mean": "cp.conv_avg.bn.running_mean",
             "ffm.attention.conv.weight": "ffm.conv.weight", "ffm.attention.bn.weight": "ffm.bn.weight",
             "head.classifier.bias": "conv_out.conv_out.bias", "aux.conv.conv.weight": "conv_out16.conv.conv.weight",
             "aux2.classifier.weight": "conv_out32.conv_out.weight"}
    for our_key, official_key in pairs.items():
        assert torch.equal(ours[our_key], state[official_key]), our_key


def test_a_misfit_release_names_its_keys(tmp_path):
    state = random_state(official_layout(FIXTURE, "cityscapes"))
    del state["sp.conv2.bn.weight"]
    state["conv_out8.conv_out.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    with pytest.raises(RtsegError, match=r"missing keys: spatial\.1\.bn\.weight.*unexpected keys: conv_out8"):
        rtseg.create_model("bisenet_v1", weights=path)


def test_pretrained_resnet18_is_torchvisions(tmp_path):
    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18-5c106cde.pth"
    torch.save(reference.state_dict(), path)
    model = rtseg.create_model("bisenet_v1", pretrained=path)
    assert torch.equal(model.encoder.state_dict()["body.layer4.1.conv2.weight"], reference.layer4[1].conv2.weight)


# --- Cost -------------------------------------------------------------------------------------

def head_macs(height: int, width: int, num_classes: int = 19) -> int:
    """Multiply-adds of everything around the ResNet18 trunk, written out from CoinCheung's
    lib/models/bisenetv1.py: (in, out, kernel area, output pixels) per convolution."""
    px = {s: math.ceil(height / s) * math.ceil(width / s) for s in (2, 4, 8, 16, 32)}
    layers = [(3, 64, 49, px[2]), (64, 64, 9, px[4]), (64, 64, 9, px[8]), (64, 128, 1, px[8])]  # spatial path
    layers += [(512, 128, 9, px[32]), (128, 128, 1, 1), (512, 128, 1, 1)]  # ARM32 (+ attention), global context
    layers += [(128, 128, 9, px[16]), (256, 128, 9, px[16]), (128, 128, 1, 1)]  # refine32, ARM16
    layers += [(128, 128, 9, px[8])]  # refine16
    layers += [(256, 256, 1, px[8]), (256, 256, 1, 1)]  # FFM: projection, attention
    layers += [(256, 256, 9, px[8]), (256, num_classes, 1, px[8])]  # main head
    return sum(cin * cout * area * pixels for cin, cout, area, pixels in layers)


def test_cost_is_resnet18_plus_the_hand_counted_head():
    model = on_meta("bisenet_v1")
    size = (360, 640)  # the BiSeNet paper's cost table is at 640x360
    trunk = count_flops(torchvision.models.resnet18(weights=None), size) / 2 - 512 * 1000  # less its fc
    assert count_flops(model, size) / 2 == pytest.approx(trunk + head_macs(*size), rel=1e-4)
    # The eval output depends on everything but the two auxiliary heads.
    assert count_eval_params(model) == count_params(model) - count_params(model.aux) - count_params(model.aux2)


@pytest.mark.slow  # a dynamo export of the whole network: about 8 s on one core
def test_onnx_export_at_any_size(tmp_path):
    assert_exports(rtseg.create_model("bisenet_v1", num_classes=4), tmp_path, (64, 96), (71, 45))
