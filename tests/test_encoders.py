"""Encoders: stated feature maps, dilation, published ImageNet cost, and library weights."""

import pytest
import timm
import torch
import torchvision
from torchvision.models.feature_extraction import create_feature_extractor

import rtseg
from rtseg.errors import RtsegError
from rtseg.models.registry import ENCODERS
from rtseg.profiling.flops import count_flops, count_params

ENCODER_NAMES = ENCODERS.names()


def build_encoder(name, **options):
    return ENCODERS.get(name)(**options)


def ceil_div(a, b):
    return -(-a // b)


@pytest.mark.parametrize("name", ENCODER_NAMES)
def test_feature_maps_match_stated_channels_and_strides(name):
    encoder = build_encoder(name).eval()
    assert [f.stride for f in encoder.feature_info] == [2, 4, 8, 16, 32]
    height, width = 67, 99  # odd: every stride-2 step rounds
    with torch.no_grad():
        maps = encoder(torch.randn(1, 3, height, width))
    assert len(maps) == 5
    for fmap, info in zip(maps, encoder.feature_info):
        assert fmap.shape[1] == info.channels
        assert fmap.shape[-2:] == (ceil_div(height, info.stride), ceil_div(width, info.stride))


@pytest.mark.parametrize("name", ENCODER_NAMES)
def test_output_stride_8_keeps_parameter_shapes_and_resolution(name):
    plain, dilated = build_encoder(name), build_encoder(name, output_stride=8)
    assert {k: v.shape for k, v in plain.state_dict().items()} == \
        {k: v.shape for k, v in dilated.state_dict().items()}
    dilated.load_state_dict(plain.state_dict())  # ImageNet weights still fit
    assert [f.stride for f in dilated.feature_info] == [2, 4, 8, 8, 8]
    with torch.device("meta"):
        maps = build_encoder(name, output_stride=8).eval()(torch.zeros(1, 3, 128, 256))
    assert [m.shape[-2:] for m in maps[2:]] == [(16, 32)] * 3


def test_bad_output_stride_is_refused():
    with pytest.raises(RtsegError, match="output_stride"):
        build_encoder("resnet18", output_stride=16)


# Published ImageNet classifier figures at 224x224: (parameters, multiply-adds).
PUBLISHED = {
    "resnet18": (11.69e6, 1.82e9),  # He et al. 2016 / torchvision model card
    "vgg16": (138.4e6, 15.5e9),  # Simonyan & Zisserman 2014 / torchvision model card
    "mobilenet_v1": (4.2e6, 569e6),  # Howard et al. 2017, Table 8 (1.0 MobileNet-224)
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_trunks_match_published_imagenet_cost(name):
    params, macs = PUBLISHED[name]
    classifier = build_encoder(name).classifier(1000)
    assert count_params(classifier) == pytest.approx(params, rel=0.02)
    assert count_flops(classifier, (224, 224)) / 2 == pytest.approx(macs, rel=0.02)


def test_mobilenet_width_multiplier_scales_channels():
    half = build_encoder("mobilenet_v1", width=0.5)
    assert half.out_channels == [32, 64, 128, 256, 512]
    with pytest.raises(RtsegError, match="width"):
        build_encoder("mobilenet_v1", width=0)


# --- ImageNet weights in the libraries' formats -----------------------------------------

def _save(state, tmp_path, name="weights.pth"):
    path = tmp_path / name
    torch.save(state, path)
    return path


def test_resnet18_loads_torchvision_weights_and_matches_its_features(tmp_path):
    reference = torchvision.models.resnet18(weights=None).eval()
    path = _save(reference.state_dict(), tmp_path)
    model = rtseg.create_model("skipnet-resnet18", pretrained=path).eval()
    nodes = {"relu": "s2", "layer1": "s4", "layer2": "s8", "layer3": "s16", "layer4": "s32"}
    extractor = create_feature_extractor(reference, nodes)
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        expected = list(extractor(x).values())
        ours = model.encoder(x)
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_vgg16_loads_torchvision_weights_and_matches_its_features(tmp_path):
    reference = torchvision.models.vgg16(weights=None).eval()
    path = _save(reference.state_dict(), tmp_path)
    encoder = build_encoder("vgg16")
    encoder.load_pretrained(path)
    encoder.eval()
    x = torch.randn(1, 3, 224, 224)
    pools = {"features.4": "pool1", "features.9": "pool2", "features.16": "pool3",
             "features.23": "pool4", "classifier.4": "fc7"}
    extractor = create_feature_extractor(reference, pools)
    with torch.no_grad():
        expected = list(extractor(x).values())
        ours = encoder(x)
    for a, b in zip(ours[:4], expected[:4]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    # fc6 as a padded 7x7 convolution sees exactly pool5's 7x7 window at the centre position.
    torch.testing.assert_close(ours[4][0, :, 3, 3], expected[4][0], rtol=1e-4, atol=1e-4)


def test_mobilenet_v1_loads_timm_weights_and_matches_its_features(tmp_path):
    reference = timm.create_model("mobilenetv1_100", pretrained=False).eval()
    path = _save(reference.state_dict(), tmp_path)
    encoder = build_encoder("mobilenet_v1")
    encoder.load_pretrained(path)
    encoder.eval()
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        expected = reference.forward_intermediates(x, indices=5, intermediates_only=True)
        ours = encoder(x)
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_safetensors_weights_load(tmp_path):
    from safetensors.torch import save_file

    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.safetensors"
    save_file(reference.state_dict(), str(path))
    encoder = build_encoder("resnet18")
    encoder.load_pretrained(path)
    torch.testing.assert_close(encoder.body.conv1.weight, reference.conv1.weight)


def test_weights_that_do_not_fit_name_missing_and_unexpected_keys(tmp_path):
    state = torchvision.models.resnet18(weights=None).state_dict()
    del state["layer1.0.conv1.weight"]
    state["extra.weight"] = torch.zeros(1)
    path = _save(state, tmp_path)
    with pytest.raises(RtsegError) as info:
        rtseg.create_model("skipnet-resnet18", pretrained=path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    assert "missing keys: body.layer1.0.conv1.weight" in message
    assert "unexpected keys: body.extra.weight" in message


def test_unreadable_weights_file_is_named(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(RtsegError, match="broken.pth"):
        rtseg.create_model("skipnet-resnet18", pretrained=path)
    with pytest.raises(RtsegError, match="does not exist"):
        rtseg.create_model("skipnet-resnet18", pretrained=tmp_path / "missing.pth")
