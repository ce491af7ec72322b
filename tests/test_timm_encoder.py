"""timm backbones as encoders (``timm.<name>``): levels and missing levels, every decoder at any
size, gradients, timm's own features-only maps from the same weights, normalisation, errors, cost
and export. Random weights only: nothing is downloaded."""

import math

import pytest
import timm
import torch
from torch.utils.flop_counter import FlopCounterMode

import rtseg
from rtseg.errors import RtsegError
from rtseg.models.encoders.base import NOMINAL_STRIDES
from rtseg.models.encoders.timm_encoder import TimmEncoder, list_timm_backbones
from rtseg.models.factory import split_model_name
from rtseg.normalisation import IMAGENET_MEAN, IMAGENET_STD
from rtseg.models.registry import ENCODERS
from rtseg.profiling.flops import count_flops

SINGLE_THREAD = True

# The smallest variant of each family timm has (its test_* configs where it ships one).
FAMILIES = {
    "test_resnet": "ResNet",
    "mobilenetv3_small_050": "MobileNetV3",
    "test_efficientnet": "EfficientNet",
    "regnetx_002": "RegNet",
    "test_convnext": "ConvNeXt: 4x4 patchify stem, first map at stride 4",
    "fastvit_t8": "FastViT: hybrid, first map at stride 4, no dilation in timm",
    "efficientvit_b0": "EfficientViT (MIT): linear attention, first map at stride 4, no dilation",
    "mobilevit_xxs": "MobileViT: hybrid with transformer blocks, dilates",
    "test_mambaout": "MambaOut: channels-last maps, first map at stride 4, no dilation",
}
STRIDE_4_FIRST = {"test_convnext", "fastvit_t8", "efficientvit_b0", "test_mambaout"}
NO_DILATION = {"fastvit_t8", "efficientvit_b0", "test_mambaout"}  # their timm classes take no output_stride
DECODERS = ("skipnet", "unet", "dilation", "lraspp")


def randomise_statistics(module: torch.nn.Module) -> None:
    """Non-trivial BN statistics, so that a loader that skipped buffers would show."""
    with torch.no_grad():
        for name, buffer in module.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5)


@pytest.mark.parametrize("name", FAMILIES)
def test_feature_info_states_what_the_forward_returns(name):
    encoder = TimmEncoder(name).eval()
    infos = encoder.feature_info
    assert len(infos) == 5
    assert (infos[0] is None) == (name in STRIDE_4_FIRST)
    assert all(info is not None for info in infos[1:])
    assert [info.stride for info in infos if info] == [s for s, i in zip(NOMINAL_STRIDES, infos) if i]
    height, width = 67, 99
    with torch.no_grad():
        maps = encoder(torch.randn(1, 3, height, width))
    assert len(maps) == 5
    for fmap, info in zip(maps, infos):
        assert (fmap is None) == (info is None)
        if info is not None:
            assert fmap.shape[1] == info.channels
            # Stems round odd sizes up (padded convolutions) or down (ConvNeXt's 4x4 patchify).
            assert fmap.shape[2] in (height // info.stride, math.ceil(height / info.stride))
            assert fmap.shape[3] in (width // info.stride, math.ceil(width / info.stride))


@pytest.mark.parametrize("name", FAMILIES)
def test_maps_equal_timm_features_only_model_from_the_same_state_dict(name, tmp_path):
    classifier = timm.create_model(name, pretrained=False)
    randomise_statistics(classifier)
    path = tmp_path / f"{name}.pth"
    torch.save(classifier.state_dict(), path)
    ours = rtseg.create_model(f"skipnet-timm.{name}", pretrained=str(path)).encoder.eval()
    # timm's own loader on every map its feature_info lists; ours must pick the deepest at each stride.
    every = tuple(range(len(classifier.feature_info)))
    theirs = timm.create_model(name, features_only=True, out_indices=every, pretrained=True,
                               pretrained_cfg_overlay=dict(file=str(path))).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        our_maps, their_maps = ours(x), theirs(x)
    if str(getattr(theirs, "output_fmt", "NCHW")).endswith("NHWC"):
        their_maps = [m.permute(0, 3, 1, 2) for m in their_maps]
    reductions = theirs.feature_info.reduction()
    for level, fmap in enumerate(our_maps):
        at_stride = [m for m, r in zip(their_maps, reductions) if r == NOMINAL_STRIDES[level]]
        assert (fmap is None) == (not at_stride)
        if fmap is not None:
            assert torch.equal(fmap, at_stride[-1])


def test_features_only_state_dict_in_safetensors_loads(tmp_path):
    from safetensors.torch import save_file

    source = TimmEncoder("test_convnext")
    randomise_statistics(source)
    path = tmp_path / "body.safetensors"
    save_file({k: v.contiguous() for k, v in source.body.state_dict().items()}, str(path))
    model = rtseg.create_model("unet-timm.test_convnext", pretrained=str(path))
    for key, value in source.body.state_dict().items():
        assert torch.equal(model.encoder.body.state_dict()[key], value)


def test_weights_of_another_backbone_are_refused_by_name(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save(timm.create_model("test_resnet").state_dict(), path)
    with pytest.raises(RtsegError, match=r"not a state dict of timm model test_efficientnet.*missing keys"):
        rtseg.create_model("skipnet-timm.test_efficientnet", pretrained=str(path))


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("name", FAMILIES)
def test_logits_have_the_input_size(name, decoder):
    if decoder == "dilation" and name in NO_DILATION:
        with pytest.raises(RtsegError, match=rf"backbone {name} at output_stride=8"):
            rtseg.create_model(f"{decoder}-timm.{name}")
        return
    with torch.device("meta"):  # shapes only: the real graph without memory or arithmetic
        model = rtseg.create_model(f"{decoder}-timm.{name}")
        for size in ((257, 513), (360, 640)):
            for training, batch in ((True, 2), (False, 1)):
                assert model.train(training)(torch.zeros(batch, 3, *size)).shape == (batch, 19, *size)


@pytest.mark.parametrize("decoder", DECODERS)
@pytest.mark.parametrize("name", FAMILIES)
def test_gradients_reach_every_parameter(name, decoder):
    if decoder == "dilation" and name in NO_DILATION:
        pytest.skip("refused: test_logits_have_the_input_size checks the error")
    model = rtseg.create_model(f"{decoder}-timm.{name}", num_classes=3).train()
    with torch.no_grad():
        # timm zero-initialises the last BN or layer scale of residual branches (ResNet, RegNet,
        # MobileViT), which stops gradients before them at initialisation; any other value would not.
        for p in model.parameters():
            if not p.any():
                p.normal_(0, 0.1)
    image = torch.randn(2, 3, 65, 97)
    logits = model(image)
    assert logits.shape == (2, 3, 65, 97)
    torch.nn.functional.cross_entropy(logits, torch.randint(0, 3, (2, 65, 97))).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0] == []


@pytest.mark.parametrize("name", ["test_resnet", "mobilenetv3_small_050", "test_convnext", "mobilevit_xxs"])
def test_output_stride_through_timm_keeps_parameter_shapes(name):
    plain = TimmEncoder(name, output_stride=32)
    for output_stride in (16, 8):
        dilated = TimmEncoder(name, output_stride=output_stride)
        dilated.load_state_dict(plain.state_dict())  # same parameters, so ImageNet weights still fit
        expected = [None if i is None else min(i.stride, output_stride) for i in plain.feature_info]
        assert [None if i is None else i.stride for i in dilated.feature_info] == expected
        with torch.device("meta"):
            maps = TimmEncoder(name, output_stride=output_stride).eval()(torch.zeros(1, 3, 128, 256))
        assert [tuple(m.shape[-2:]) for m in maps[2:]] == [(128 // s, 256 // s) for s in expected[2:]]


def test_output_stride_timm_cannot_give_is_refused_naming_the_backbone():
    with pytest.raises(RtsegError, match="output_stride must be 8 or 16 or 32"):
        TimmEncoder("test_resnet", output_stride=4)
    with pytest.raises(RtsegError, match="backbone fastvit_t8 at output_stride=8"):
        rtseg.create_model("dilation-timm.fastvit_t8")
    with pytest.raises(RtsegError, match="backbone efficientvit_b0 at output_stride=16"):
        rtseg.create_model("lraspp-timm.efficientvit_b0", output_stride=16)


def test_mean_and_std_come_from_the_weights_pretrained_cfg():
    with torch.device("meta"):
        ra = rtseg.create_model("skipnet-timm.mobilenetv3_large_100.ra_in1k")
        miil = rtseg.create_model("skipnet-timm.mobilenetv3_large_100.miil_in21k_ft_in1k")
        mobilevit = rtseg.create_model("lraspp-timm.mobilevit_xxs")
    assert (ra.mean, ra.std) == (IMAGENET_MEAN, IMAGENET_STD)
    # Same architecture, weights trained on inputs in 0..1 without normalisation.
    assert (miil.mean, miil.std) == ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    for model, name in ((miil, "mobilenetv3_large_100.miil_in21k_ft_in1k"), (mobilevit, "mobilevit_xxs")):
        cfg = timm.get_pretrained_cfg(name)
        assert model.mean == tuple(cfg.mean) and model.std == tuple(cfg.std)
        assert (model.encoder.mean, model.encoder.std) == (model.mean, model.std)


def test_names_split_at_the_first_dash_and_keep_timm_tags():
    assert split_model_name("skipnet-timm.efficientnet_b0.ra_in1k") == ("skipnet", "timm.efficientnet_b0.ra_in1k")
    with torch.device("meta"):
        model = rtseg.create_model("lraspp", "timm.efficientnet_b0.ra_in1k")
    assert model.name == "lraspp-timm.efficientnet_b0.ra_in1k"
    assert "timm.efficientnet_b0" in ENCODERS and "timm.no_such_net" not in ENCODERS
    assert not any(name.startswith("timm.") for name in ENCODERS.names())  # the grid stays the paper's
    assert ENCODERS.families() == ["timm."]


def test_unknown_names_and_tags_are_one_clear_error():
    with pytest.raises(RtsegError, match="timm has no model 'efficientnet_b00'; did you mean efficientnet_b0"):
        rtseg.create_model("skipnet-timm.efficientnet_b00")
    with pytest.raises(RtsegError, match="no pretrained tag 'in22k'; its tags: .*ra_in1k"):
        rtseg.create_model("skipnet-timm.efficientnet_b0.in22k")


def test_backbones_rtseg_cannot_use_are_refused_with_the_reason():
    with pytest.raises(RtsegError, match=r"test_vit has feature maps at strides \[16\]; .*need maps at strides 8, 16, 32"):
        TimmEncoder("test_vit")
    with pytest.raises(RtsegError, match=r"swin_tiny_patch4_window7_224 fails at an input of 257x513 "
                                         r"\(timm builds it for 224x224 only\)"):
        TimmEncoder("swin_tiny_patch4_window7_224")


def test_listing_shows_usable_backbones_with_their_levels():
    usable, unusable = list_timm_backbones("mobilenetv3_small")
    by_name = {b.name: b for b in usable}
    assert by_name["timm.mobilenetv3_small_050"].levels == (16, 8, 16, 24, 288)
    assert "lamb_in1k" in by_name["timm.mobilenetv3_small_050"].tags
    assert unusable == {}
    usable, unusable = list_timm_backbones("test_vit*")
    assert usable == [] and "test_vit" in unusable and "strides [16]" in unusable["test_vit"]


def test_models_command_lists_timm_backbones(capsys):
    from rtseg.cli import main

    assert main(["models", "--timm", "test_conv*"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("timm.test_convnext "))
    assert row.split()[1:6] == ["-", "24", "32", "48", "64"]


@pytest.mark.parametrize("name", FAMILIES)
def test_flops_on_the_meta_device_equal_a_real_count(name):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model = rtseg.create_model(f"unet-timm.{name}").eval()
    # The CPU's fused attention kernel has no FLOP formula (MobileViT's attention would count 0);
    # the meta device, like the math backend, runs attention as matmuls, which are counted.
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.randn(1, 3, 65, 97))
    assert count_flops(model, (65, 97)) == counter.get_total_flops() > 0


@pytest.mark.parametrize("model_name", ["unet-timm.test_convnext", "lraspp-timm.mobilevit_xxs"])
def test_onnx_export_agrees_with_pytorch(model_name, tmp_path):
    from rtseg.export import compare_with_torch, export_onnx, require_agreement

    model = rtseg.create_model(model_name).eval()
    randomise_statistics(model)
    path = export_onnx(model, tmp_path / "model.onnx", (64, 96))
    agreement = compare_with_torch(model, path, [torch.randn(1, 3, 64, 96)])
    require_agreement(agreement, model_name)
    assert agreement.max_abs_diff < 1e-3


def test_pretrained_true_offline_is_one_clear_error(monkeypatch, tmp_path):
    import huggingface_hub.constants

    # Offline mode with an empty cache: the hub client can neither download nor find the weights.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(RtsegError, match="cannot load timm's weights for test_resnet"):
        rtseg.create_model("skipnet-timm.test_resnet", pretrained=True)
