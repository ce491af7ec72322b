"""The authors' variants as options (docs/fidelity.md), normalisation from the weights' own
configuration, local weights paths, and ENet's asymmetric order as in its Torch code."""

from pathlib import Path

import pytest
import timm
import torch
import yaml
from torch import nn
from torchvision.models import ResNet18_Weights, VGG16_Weights

import rtseg
from rtseg.errors import RtsegError
from rtseg.models.decoders.base import bilinear_kernel
from rtseg.models.encoders.mobilenet_v1 import TIMM_NAME, TIMM_WEIGHTS, MobileNetV1Encoder
from rtseg.models.encoders.shufflenet_v1 import MEGVII_RELEASE, ShuffleNetV1Encoder, megvii_weights_file
from rtseg.models.weights_path import WEIGHTS_DIR, expand_weights_path
from rtseg.profiling.flops import count_flops

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


# --- normalisation: what the weights were trained with ---------------------------------------

def test_mobilenet_v1_normalisation_is_timms_pretrained_cfg():
    cfg = timm.get_pretrained_cfg(TIMM_WEIGHTS)
    assert cfg is not None and (cfg.mean, cfg.std) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    # The pinned tag is the one timm itself loads for the bare architecture name.
    assert timm.get_pretrained_cfg(TIMM_NAME).hf_hub_id == cfg.hf_hub_id
    model = rtseg.create_model("skipnet-mobilenet_v1")
    assert (MobileNetV1Encoder.mean, MobileNetV1Encoder.std) == (cfg.mean, cfg.std)
    assert (model.mean, model.std) == (tuple(cfg.mean), tuple(cfg.std))


def test_resnet18_normalisation_is_that_of_torchvisions_file():
    transforms = ResNet18_Weights.IMAGENET1K_V1.transforms()
    model = rtseg.create_model("unet-resnet18")
    assert (model.mean, model.std) == (tuple(transforms.mean), tuple(transforms.std))
    # timm's record of the same file says the same.
    cfg = timm.get_pretrained_cfg("resnet18.tv_in1k")
    assert cfg.url == ResNet18_Weights.IMAGENET1K_V1.url
    assert (model.mean, model.std) == (tuple(cfg.mean), tuple(cfg.std))


def test_vgg16_normalisation_is_that_of_torchvisions_file():
    transforms = VGG16_Weights.IMAGENET1K_V1.transforms()
    model = rtseg.create_model("skipnet-vgg16")
    assert (model.mean, model.std) == (tuple(transforms.mean), tuple(transforms.std))


def test_shufflenet_states_the_normalisation_its_megvii_fold_uses():
    model = rtseg.create_model("skipnet-shufflenet_v1")
    assert (model.mean, model.std) == (ShuffleNetV1Encoder.mean, ShuffleNetV1Encoder.std)


# --- MobileNet's first-layer taps --------------------------------------------------------------

def _block_outputs(encoder, image):
    """timm's own module outputs, by hooks: (stage index, block index) -> tensor."""
    seen, handles = {}, []
    for s, stage in enumerate(encoder.body.blocks):
        for b, block in enumerate(stage):
            handles.append(block.register_forward_hook(lambda m, i, o, key=(s, b): seen.setdefault(key, o)))
    handles.append(encoder.body.bn1.register_forward_hook(lambda m, i, o: seen.setdefault("stem", o)))
    with torch.no_grad():
        encoder(image)
    for handle in handles:
        handle.remove()
    return seen


def test_first_layer_taps_are_the_first_block_at_those_strides():
    plain = MobileNetV1Encoder().eval()
    tapped = MobileNetV1Encoder(first_layer_taps=[8, 16]).eval()
    tapped.load_state_dict(plain.state_dict())
    image = torch.randn(1, 3, 67, 99)
    with torch.no_grad():
        ours, default = tapped(image), plain(image)
    timm_blocks = _block_outputs(plain, image)
    torch.testing.assert_close(ours[2], timm_blocks[(2, 0)])  # TF's conv_ds_5 (feed2)
    torch.testing.assert_close(ours[3], timm_blocks[(3, 0)])  # TF's conv_ds_7 (feed1)
    for level in (0, 1, 4):
        torch.testing.assert_close(ours[level], default[level])
    assert not torch.allclose(ours[2], default[2])
    assert tapped.out_channels == plain.out_channels


def test_first_layer_tap_at_2_is_the_stem_and_at_32_skips_the_dead_layer():
    encoder = MobileNetV1Encoder(first_layer_taps=[2, 32]).eval()
    assert encoder.out_channels[0] == encoder.body.conv_stem.out_channels == 32
    image = torch.randn(1, 3, 64, 96)
    timm_blocks = _block_outputs(encoder, image)
    with torch.no_grad():
        maps = encoder(image)
    torch.testing.assert_close(maps[0], timm_blocks["stem"])
    torch.testing.assert_close(maps[4], timm_blocks[(4, 0)])
    assert (4, 1) not in timm_blocks  # the last /32 layer feeds nothing, so it does not run
    assert rtseg.create_model("unet-mobilenet_v1", first_layer_taps=[2]).eval()(image).shape == (1, 19, 64, 96)


@pytest.mark.parametrize("bad", [[3], [8, "16"], 8, [True]])
def test_bad_first_layer_taps_are_refused(bad):
    with pytest.raises(RtsegError, match="first_layer_taps"):
        MobileNetV1Encoder(first_layer_taps=bad)


# --- SkipNet's TF batch norm and biases ----------------------------------------------------------

def test_skipnet_defaults_have_no_tf_batch_norm_or_biases():
    decoder = rtseg.create_model("skipnet-mobilenet_v1").decoder
    assert not any(isinstance(m, nn.BatchNorm2d) for m in decoder.modules())
    assert all(up.bias is None for up in (*decoder.up, decoder.final_up))


def test_skipnet_tf_options_add_batch_norm_and_zero_biases_where_tf_has_them():
    model = rtseg.create_model("skipnet-mobilenet_v1", num_classes=3, batch_norm=True, up_bias=True)
    decoder = model.decoder
    # TF: BN after score_feed1/2 and upscore2/4, not after score_fr or upscore8.
    assert [type(m) for m in (*decoder.score_norm, *decoder.up_norm)] == [nn.BatchNorm2d] * 4
    assert sum(isinstance(m, nn.BatchNorm2d) for m in decoder.modules()) == 4
    for up in (*decoder.up, decoder.final_up):
        assert up.bias is not None and not up.bias.any()
        torch.testing.assert_close(up.weight, bilinear_kernel(3, up.kernel_size[0]))  # still bilinear
    image = torch.randn(2, 3, 67, 99)
    logits = model.train()(image)
    logits.square().mean().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert count_flops(model, (64, 96)) == count_flops(rtseg.create_model("skipnet-mobilenet_v1", num_classes=3),
                                                       (64, 96))


# --- UNet's TF stage ------------------------------------------------------------------------------

def test_unet_tf_stage_is_1x1_transposed_add_1x1_with_bn_and_no_relu():
    model = rtseg.create_model("unet-mobilenet_v1", num_classes=3, stage="tf")
    decoder = model.decoder
    assert not any(isinstance(m, nn.ReLU) for m in decoder.modules())
    for stage, skip in zip(decoder.stages, model.encoder.feature_info[-2::-1]):
        reduce, norm1 = stage.reduce
        up, norm2 = stage.up
        expand, norm3 = stage.expand
        assert reduce.kernel_size == (1, 1) and reduce.out_channels == skip.channels
        assert isinstance(up, nn.ConvTranspose2d) and up.kernel_size == (4, 4) and up.stride == (2, 2)
        torch.testing.assert_close(up.weight, bilinear_kernel(skip.channels, 4))
        assert expand.kernel_size == (1, 1) and (expand.in_channels, expand.out_channels) == (skip.channels,) * 2
        assert all(isinstance(n, nn.BatchNorm2d) for n in (norm1, norm2, norm3))
    assert isinstance(decoder.dropout, nn.Dropout) and decoder.dropout.p == 0.5
    assert decoder.classify.in_channels == 32  # TF: conv1_1's 32 channels
    assert isinstance(rtseg.create_model("unet-mobilenet_v1").decoder.dropout, nn.Identity)


def test_unet_tf_stage_trains_at_odd_sizes_with_either_fusion():
    for fusion in ("add", "concat"):
        model = rtseg.create_model("unet-shufflenet_v1", num_classes=3, stage="tf", head_channels=24, fusion=fusion)
        logits = model.train()(torch.randn(2, 3, 67, 99))
        assert logits.shape == (2, 3, 67, 99)
        logits.square().mean().backward()
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_unet_tf_stage_changes_cost():
    size = (128, 256)
    assert count_flops(rtseg.create_model("unet-shufflenet_v1", stage="tf"), size) < \
        count_flops(rtseg.create_model("unet-shufflenet_v1"), size)


@pytest.mark.parametrize("options, match", [({"stage": "keras"}, "stage"), ({"dropout": 1.0}, "dropout"),
                                            ({"head_channels": 0}, "head_channels")])
def test_bad_unet_options_are_refused(options, match):
    with pytest.raises(RtsegError, match=match):
        rtseg.create_model("unet-mobilenet_v1", **options)


# --- ENet's asymmetric convolution ------------------------------------------------------------------

def test_enet_asymmetric_convolution_is_1x5_then_5x1_as_in_the_torch_code():
    # e-lab/ENet-training train/models/encoder.lua: SpatialConvolution(n, n, 5, 1, 1, 1, 2, 0):noBias()
    # then SpatialConvolution(n, n, 1, 5, 1, 1, 0, 2); Torch gives the kernel as width, height.
    model = rtseg.create_model("enet")
    asymmetric = [b for stage in (model.stage2, model.stage3) for b in stage
                  if any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 5) for m in b.modules())]
    assert len(asymmetric) == 4
    for block in asymmetric:
        convs = [m for m in block.branch if isinstance(m, nn.Conv2d)]
        first, second = convs[1], convs[2]
        assert (first.kernel_size, first.padding, first.bias) == ((1, 5), (0, 2), None)
        assert (second.kernel_size, second.padding) == ((5, 1), (2, 0)) and second.bias is not None


# --- local weights files ----------------------------------------------------------------------------

def test_weights_paths_expand_variables_and_defaults():
    assert expand_weights_path("${W:-weights}/a.pth", {}) == Path("weights/a.pth")
    assert expand_weights_path("${W:-weights}/a.pth", {"W": "/data/w"}) == Path("/data/w/a.pth")
    assert expand_weights_path("${W}/a.pth", {"W": "/x"}) == Path("/x/a.pth")
    assert expand_weights_path("plain/$HOME/a.pth", {}) == Path("plain/$HOME/a.pth")  # only ${...}
    assert expand_weights_path("~/a.pth", {}) == Path.home() / "a.pth"
    with pytest.raises(RtsegError, match=r"\$\{W\}, which is not set"):
        expand_weights_path("${W}/a.pth", {})


def test_missing_shufflenet_weights_stop_with_one_line_saying_where(tmp_path, monkeypatch):
    monkeypatch.setenv("RTSEG_WEIGHTS", str(tmp_path))
    expected = tmp_path / megvii_weights_file(3, 1.0)
    with pytest.raises(RtsegError) as error:
        rtseg.create_model("skipnet-shufflenet_v1", pretrained=f"{WEIGHTS_DIR}/{megvii_weights_file(3, 1.0)}")
    message = str(error.value)
    assert "\n" not in message and str(expected) in message and MEGVII_RELEASE in message
    assert "model.pretrained=PATH" in message and "1.0x group=3" in message
    with pytest.raises(RtsegError, match="no downloadable") as error:
        rtseg.create_model("skipnet-shufflenet_v1", groups=8, width=0.5, pretrained=True)
    assert str(tmp_path / megvii_weights_file(8, 0.5)) in str(error.value)


def test_shufflenet_weights_load_from_the_folder_rtseg_weights_names(tmp_path, monkeypatch):
    source = ShuffleNetV1Encoder()
    torch.save(source.state_dict(), tmp_path / megvii_weights_file(3, 1.0))
    monkeypatch.setenv("RTSEG_WEIGHTS", str(tmp_path))
    model = rtseg.create_model("skipnet-shufflenet_v1", pretrained=f"{WEIGHTS_DIR}/{megvii_weights_file(3, 1.0)}")
    for key, value in source.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[key], value)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*shufflenet*.yaml")), ids=lambda p: p.name)
def test_every_shufflenet_config_names_megvii_weights_or_none(path):
    model = yaml.safe_load(path.read_text())["model"]
    assert "shufflenet_v1" in model["name"]
    # Set in the file itself: paper_recipe.yaml's `pretrained: true` cannot load ShuffleNet v1.
    assert model["pretrained"] in (False, f"{WEIGHTS_DIR}/{megvii_weights_file(3, 1.0)}")
