"""The Python API: names, registration from outside, options, errors."""

import pytest
import torch
from torch import nn

import rtseg
from rtseg.errors import RtsegError
from rtseg.models.encoders.base import Encoder
from rtseg.models.registry import DECODERS, ENCODERS


def test_model_name_and_pair_build_the_same_network():
    a = rtseg.create_model("skipnet-mobilenet_v1")
    b = rtseg.create_model("skipnet", "mobilenet_v1")
    assert a.name == b.name == "skipnet-mobilenet_v1"
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}


def test_list_models_lists_encoders_decoders_and_every_name():
    listing = rtseg.list_models()
    assert {"vgg16", "resnet18", "mobilenet_v1"} <= set(listing["encoders"])
    assert {"skipnet", "unet", "dilation"} <= set(listing["decoders"])
    assert "unet-resnet18" in listing["models"]


@pytest.mark.parametrize("name, known", [
    ("skipnet-nosuch", "mobilenet_v1"),
    ("nosuch-resnet18", "skipnet"),
    ("nosuch", "skipnet-resnet18"),
])
def test_unknown_names_list_the_known_ones(name, known):
    with pytest.raises(RtsegError) as info:
        rtseg.create_model(name)
    assert name.split("-")[-1] in str(info.value) or "nosuch" in str(info.value)
    assert known in str(info.value)


def test_decoder_without_encoder_says_how_to_name_it():
    with pytest.raises(RtsegError, match="skipnet-<encoder>"):
        rtseg.create_model("skipnet")


def test_options_go_to_whoever_takes_them():
    model = rtseg.create_model("unet-mobilenet_v1", width=0.5, fusion="concat", num_classes=7)
    assert model.encoder.width == 0.5 and model.decoder.fusion == "concat"
    assert model.decoder.classify.out_channels == 7
    with pytest.raises(RtsegError, match="'colour'"):
        rtseg.create_model("unet-mobilenet_v1", colour="red")
    with pytest.raises(RtsegError, match="fusion"):
        rtseg.create_model("unet-mobilenet_v1", fusion="multiply")


def test_an_encoder_registered_from_outside_works_with_every_decoder():
    @rtseg.register_encoder("tiny_test_encoder")
    class TinyEncoder(Encoder):
        def __init__(self, output_stride: int = 32):
            super().__init__()
            self.output_stride = output_stride
            self.stages = nn.ModuleList()
            channels, in_ch = [8, 16, 24, 32, 40], 3
            for i, ch in enumerate(channels):
                stride = 2 if (i < 3 or output_stride == 32) else 1
                self.stages.append(nn.Sequential(nn.Conv2d(in_ch, ch, 3, stride, 1), nn.ReLU()))
                in_ch = ch
            self.set_feature_info(channels)

        def forward(self, x):
            out = []
            for stage in self.stages:
                x = stage(x)
                out.append(x)
            return out

    try:
        for decoder in DECODERS.names():
            model = rtseg.create_model(f"{decoder}-tiny_test_encoder", num_classes=4)
            assert model(torch.randn(1, 3, 45, 61)).shape == (1, 4, 45, 61)
        assert "skipnet-tiny_test_encoder" in rtseg.list_models()["models"]
    finally:
        ENCODERS._entries.pop("tiny_test_encoder")


def test_registering_a_name_twice_or_with_a_dash_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        rtseg.register_encoder("resnet18")(type("Other", (Encoder,), {}))
    with pytest.raises(ValueError, match="'-'"):
        rtseg.register_decoder("bad-name")(type("Bad", (nn.Module,), {}))
