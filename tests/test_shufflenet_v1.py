"""ShuffleNet v1 encoder: stated maps, any size, dilation, published cost, weights files, fast paths."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import rtseg
from rtseg.errors import RtsegError
from rtseg.models.encoders.shufflenet_v1 import ShuffleNetV1Encoder
from rtseg.profiling.flops import count_flops, count_params

SMALL = (65, 97)  # odd: every stride-2 step rounds up


def ceil_div(a, b):
    return -(-a // b)


def randomize_batch_norms(module):
    """Non-trivial BN statistics and affine parameters, so folding and conversions are really tested."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return module


# --- structure ------------------------------------------------------------------------------

@pytest.mark.parametrize("groups, width, channels", [
    (1, 1.0, [24, 24, 144, 288, 576]),  # paper, Table 1
    (3, 1.0, [24, 24, 240, 480, 960]),
    (8, 1.0, [24, 24, 384, 768, 1536]),
    (3, 0.5, [12, 12, 120, 240, 480]),  # Megvii's 0.5x: the stem scales too
    (8, 0.5, [16, 16, 192, 384, 768]),  # stem rounded up to a multiple of 8 groups
    (3, 2.0, [48, 48, 480, 960, 1920]),
])
def test_feature_info_states_channels_and_strides(groups, width, channels):
    encoder = ShuffleNetV1Encoder(groups=groups, width=width)
    assert encoder.out_channels == channels
    assert [f.stride for f in encoder.feature_info] == [2, 4, 8, 16, 32]
    for out_channels, stage in zip(channels[2:], (encoder.stage2, encoder.stage3, encoder.stage4)):
        assert stage[-1].expand.conv.out_channels == out_channels
        assert stage[-1].reduce.conv.out_channels == out_channels // 4


@pytest.mark.parametrize("groups", [2, 4])
def test_maps_have_stated_channels_and_rounded_up_sizes(groups):
    encoder = ShuffleNetV1Encoder(groups=groups, width=0.25).eval()
    with torch.no_grad():
        maps = encoder(torch.randn(2, 3, *SMALL))
    assert len(maps) == 5
    for fmap, info in zip(maps, encoder.feature_info):
        assert fmap.shape == (2, info.channels, ceil_div(SMALL[0], info.stride), ceil_div(SMALL[1], info.stride))


@pytest.mark.parametrize("size", [(257, 513), (360, 640), (1024, 2048)])
def test_large_and_odd_sizes_on_meta_device(size):
    with torch.device("meta"):
        maps = ShuffleNetV1Encoder()(torch.zeros(1, 3, *size))
    assert [m.shape[-2:] for m in maps] == [(ceil_div(size[0], s), ceil_div(size[1], s)) for s in (2, 4, 8, 16, 32)]


def test_output_stride_8_keeps_parameter_shapes_and_dilates():
    plain, dilated = ShuffleNetV1Encoder(), ShuffleNetV1Encoder(output_stride=8)
    assert {k: v.shape for k, v in plain.state_dict().items()} == \
        {k: v.shape for k, v in dilated.state_dict().items()}
    dilated.load_state_dict(plain.state_dict())
    assert [f.stride for f in dilated.feature_info] == [2, 4, 8, 8, 8]
    # The unit that gives up its stride keeps the previous dilation; the units after it dilate.
    assert [u.depthwise.conv.dilation[0] for u in dilated.stage3] == [1] + [2] * 7
    assert [u.depthwise.conv.dilation[0] for u in dilated.stage4] == [2] + [4] * 3
    assert [u.depthwise.conv.stride[0] for u in (dilated.stage2[0], dilated.stage3[0], dilated.stage4[0])] == [2, 1, 1]
    assert dilated.stage4[0].shortcut.stride == 1
    with torch.device("meta"):
        maps = ShuffleNetV1Encoder(output_stride=8)(torch.zeros(1, 3, 257, 513))
    assert [m.shape[-2:] for m in maps] == [(129, 257), (65, 129)] + [(33, 65)] * 3


def test_gradients_reach_every_parameter():
    encoder = ShuffleNetV1Encoder(groups=3, width=0.25).train()
    maps = encoder(torch.randn(2, 3, 17, 23))
    sum(m.square().mean() for m in maps).backward()
    assert [name for name, p in encoder.named_parameters() if p.grad is None] == []
    # (The bias of a BN that feeds a conv + train-mode BN gets an exactly-zero gradient, so only
    # conv weights are required to move.)
    assert [name for name, p in encoder.named_parameters()
            if name.endswith("conv.weight") and not p.grad.abs().sum() > 0] == []


def test_bad_options_are_refused_with_the_allowed_values():
    with pytest.raises(RtsegError, match=r"groups must be one of 1, 2, 3, 4, 8, got 5"):
        ShuffleNetV1Encoder(groups=5)
    with pytest.raises(RtsegError, match="width"):
        ShuffleNetV1Encoder(width=0)
    with pytest.raises(RtsegError, match="stem_channels must be a multiple of groups=8 .* got 12"):
        ShuffleNetV1Encoder(groups=8, stem_channels=12)
    with pytest.raises(RtsegError, match="below the 384 stage-2 channels"):
        ShuffleNetV1Encoder(groups=8, stem_channels=384)
    with pytest.raises(RtsegError, match="groups"):
        rtseg.create_model("skipnet-shufflenet_v1", groups=7)


# --- published ImageNet cost ----------------------------------------------------------------

@pytest.mark.parametrize("groups, width, macs, params", [
    (3, 1.0, 140e6, None),  # paper, Table 2 (ShuffleNet 1x, g = 3: 140 MFLOPs = multiply-adds)
    (3, 2.0, 524e6, 5.4e6),  # Megvii's ShuffleNet-Series README, 2.0x (group=3)
    (8, 0.5, 40e6, 1.0e6),  # the same README, 0.5x (group=8)
])
def test_classifier_matches_published_imagenet_cost(groups, width, macs, params):
    classifier = ShuffleNetV1Encoder(groups=groups, width=width).classifier(1000)
    assert count_flops(classifier, (224, 224)) / 2 == pytest.approx(macs, rel=0.02)
    if params is not None:
        assert count_params(classifier) == pytest.approx(params, rel=0.02)


# --- the inference fast path equals the plain network ---------------------------------------

def megvii_shuffle(x, groups):
    """Plain reshape/transpose shuffle of Megvii's code: channel j * g + i -> i * (c / g) + j."""
    b, c, h, w = x.shape
    return x.reshape(b, c // groups, groups, h, w).permute(0, 2, 1, 3, 4).reshape(b, c, h, w)


def plain_conv_bn(block, x):
    return block.bn(block.conv(x))


def plain_unit(unit, x):
    """Paper order with separate BN: ReLU -> shuffle -> depthwise, the depthwise weights relabelled."""
    y = F.relu(plain_conv_bn(unit.reduce, x))
    conv, bn = unit.depthwise.conv, unit.depthwise.bn
    order = torch.arange(y.shape[1])
    if unit.groups > 1:
        y = megvii_shuffle(y, unit.groups)
        order = megvii_shuffle(order.view(1, -1, 1, 1), unit.groups).flatten()
    y = F.conv2d(y, conv.weight[order], None, conv.stride, conv.padding, conv.dilation, conv.groups)
    y = F.batch_norm(y, bn.running_mean[order], bn.running_var[order], bn.weight[order], bn.bias[order],
                     False, 0.0, bn.eps)
    y = plain_conv_bn(unit.expand, y)
    if unit.concat:
        return torch.cat((unit.shortcut(x), F.relu(y)), 1)
    return F.relu(y + x)


def plain_encoder(encoder, x):
    c1 = F.relu(plain_conv_bn(encoder.stem, x))
    maps = [c1, encoder.maxpool(c1)]
    for stage in (encoder.stage2, encoder.stage3, encoder.stage4):
        x = maps[-1]
        for unit in stage:
            x = plain_unit(unit, x)
        maps.append(x)
    return maps


@pytest.mark.parametrize("output_stride", [32, 8])
def test_native_shuffle_equals_plain_shuffle_network(output_stride):
    encoder = randomize_batch_norms(ShuffleNetV1Encoder(groups=3, width=0.25, output_stride=output_stride)).eval()
    x = torch.randn(1, 3, *SMALL)
    with torch.no_grad():
        expected = plain_encoder(encoder, x)
    with torch.inference_mode():
        fast = encoder(x)
    encoder.to(memory_format=torch.channels_last)  # the shuffle kernel keeps this layout
    with torch.inference_mode():
        channels_last = encoder(x.contiguous(memory_format=torch.channels_last))
    assert channels_last[-1].is_contiguous(memory_format=torch.channels_last)
    for ours, last, plain in zip(fast, channels_last, expected):
        torch.testing.assert_close(ours, plain, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(last, plain, atol=1e-5, rtol=1e-5)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the legacy exporter announces its retirement
def test_onnx_export_matches_eager(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    encoder = randomize_batch_norms(ShuffleNetV1Encoder(groups=3, width=0.25)).eval()
    x = torch.randn(1, 3, *SMALL)
    path = tmp_path / "shufflenet.onnx"
    torch.onnx.export(encoder, (x,), str(path), dynamo=False, input_names=["image"])
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        for ours, theirs in zip(encoder(x), outputs):
            torch.testing.assert_close(ours, torch.from_numpy(theirs), atol=1e-4, rtol=1e-4)


# --- weights files --------------------------------------------------------------------------

def test_state_dict_round_trip_through_a_file(tmp_path):
    source = randomize_batch_norms(ShuffleNetV1Encoder(groups=4, width=0.25)).eval()
    x = torch.randn(1, 3, *SMALL)
    for name, state in (("encoder.pth", source.state_dict()),
                        ("classifier.pth", source.classifier(10).state_dict())):
        torch.save(state, tmp_path / name)
        loaded = ShuffleNetV1Encoder(groups=4, width=0.25).eval()
        loaded.load_pretrained(tmp_path / name)
        with torch.no_grad():
            for a, b in zip(source(x), loaded(x)):
                torch.testing.assert_close(a, b, atol=0, rtol=0)
    with pytest.raises(RtsegError, match="encoder.pth does not fit .*keys with another shape: stage2"):
        ShuffleNetV1Encoder(groups=4, width=0.5).load_pretrained(tmp_path / "encoder.pth")


class MegviiUnit(nn.Module):
    """A unit in the key layout of megvii-model/ShuffleNet-Series (ShuffleNetV1/blocks.py)."""

    def __init__(self, inp, oup, groups, grouped_first, stride):
        super().__init__()
        mid = oup // 4
        self.groups, self.stride = groups, stride
        self.branch_main_1 = nn.Sequential(
            nn.Conv2d(inp, mid, 1, bias=False, groups=groups if grouped_first else 1), nn.BatchNorm2d(mid),
            nn.ReLU(), nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid))
        self.branch_main_2 = nn.Sequential(
            nn.Conv2d(mid, oup - inp if stride == 2 else oup, 1, groups=groups, bias=False),
            nn.BatchNorm2d(oup - inp if stride == 2 else oup))
        if stride == 2:
            self.branch_proj = nn.AvgPool2d(3, 2, 1)

    def forward(self, x):
        y = self.branch_main_1(x)
        if self.groups > 1:  # their shuffle sits after the depthwise BN
            y = megvii_shuffle(y, self.groups)
        y = self.branch_main_2(y)
        return torch.cat((self.branch_proj(x), F.relu(y)), 1) if self.stride == 2 else F.relu(y + x)


class MegviiShuffleNetV1(nn.Module):
    """Megvii's ShuffleNetV1 network layout (network.py): first_conv, maxpool, features.0-15, classifier."""

    def __init__(self, groups, stem, stage2):
        super().__init__()
        self.first_conv = nn.Sequential(nn.Conv2d(3, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU())
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        units, inp = [], stem
        for stage, (repeats, oup) in enumerate(zip((4, 8, 4), (stage2, 2 * stage2, 4 * stage2))):
            for i in range(repeats):
                units.append(MegviiUnit(inp, oup, groups, grouped_first=not (stage == 0 and i == 0),
                                        stride=2 if i == 0 else 1))
                inp = oup
        self.features = nn.Sequential(*units)
        self.classifier = nn.Sequential(nn.Linear(inp, 1000, bias=False))

    def taps(self, x):
        c1 = self.first_conv(x)
        maps = [c1, self.maxpool(c1)]
        for start, stop in ((0, 4), (4, 12), (12, 16)):
            maps.append(self.features[start:stop](maps[-1]))
        return maps


def _save_megvii(model, path):
    # Their train.py saves {'state_dict': ...} of an nn.DataParallel model ("module." prefix).
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)


@pytest.mark.parametrize("groups, stem, stage2", [(3, 12, 120), (8, 16, 192)])  # their 0.5x models
def test_megvii_weights_compute_what_they_computed(tmp_path, groups, stem, stage2):
    megvii = randomize_batch_norms(MegviiShuffleNetV1(groups, stem, stage2)).eval()
    _save_megvii(megvii, tmp_path / "snetv1_g3_0.5x.pth.tar")
    encoder = ShuffleNetV1Encoder(groups=groups, width=0.5)
    # Feed exactly Megvii's input (BGR in 0..255) by declaring it as the normalisation: then the
    # stem fold is exact everywhere and the whole network must agree.
    encoder.mean, encoder.std = (0.0, 0.0, 0.0), (1 / 255,) * 3
    encoder.load_pretrained(tmp_path / "snetv1_g3_0.5x.pth.tar")
    encoder.eval()
    rgb = torch.rand(1, 3, *SMALL)
    with torch.no_grad():
        expected = megvii.taps(255 * rgb.flip(1))
        ours = encoder(255 * rgb)
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_megvii_stem_takes_imagenet_normalised_rgb(tmp_path):
    megvii = randomize_batch_norms(MegviiShuffleNetV1(groups=8, stem=16, stage2=192)).eval()
    _save_megvii(megvii, tmp_path / "g8.pth")
    model = rtseg.create_model("skipnet-shufflenet_v1", groups=8, width=0.5, pretrained=tmp_path / "g8.pth")
    model.eval()
    mean, std = torch.tensor(model.mean).view(1, 3, 1, 1), torch.tensor(model.std).view(1, 3, 1, 1)
    rgb = torch.rand(1, 3, *SMALL)
    with torch.no_grad():
        expected = megvii.first_conv(255 * rgb.flip(1))
        ours = model.encoder(((rgb - mean) / std))[0]
    # Exact except where the stem reads its zero padding (black for Megvii, the mean colour here).
    torch.testing.assert_close(ours[..., 1:-1, 1:-1], expected[..., 1:-1, 1:-1], atol=1e-4, rtol=1e-4)


def test_megvii_weights_of_another_configuration_name_the_options(tmp_path):
    _save_megvii(MegviiShuffleNetV1(groups=3, stem=24, stage2=360), tmp_path / "g3_1.5x.pth")
    with pytest.raises(RtsegError, match="groups=3, width=1.5, stem_channels=24"):
        ShuffleNetV1Encoder(groups=3, width=1.5).load_pretrained(tmp_path / "g3_1.5x.pth")
    encoder = ShuffleNetV1Encoder(groups=3, width=1.5, stem_channels=24)
    encoder.load_pretrained(tmp_path / "g3_1.5x.pth")  # fits
