"""LinkNet: the published layers, its published cost on ResNet18, and any encoder."""

import pytest
import torch
from torch import nn

import rtseg
from rtseg.models.decoders.linknet import LinkNet
from rtseg.models.encoders.base import FeatureInfo
from rtseg.profiling.flops import count_flops, count_params

# LinkNet paper (Chaurasia & Culurciello 2017, arXiv 1707.03718), Table 1 at 3x640x360.
PUBLISHED_PARAMS = 11.5e6
PUBLISHED_GFLOPS = 21.2


def elab_profiler_ops(model: nn.Module, size) -> int:
    """Operations as e-lab's Torch7 profiler counts them (github.com/e-lab/Torch7-profiling,
    commit e00d505, ``src/profiler.lua``), the tool the LinkNet README names for its figures.

    Convolution: 2 per multiply-add plus 1 per output (the bias, counted even without one);
    full (transposed) convolution: ``2 * k * k * C_in`` per input element and *input* channel
    (the profiler multiplies by the input planes twice) plus 1 per output; ReLU: 1 per
    element; max pool: k * k per output; batch norm: 0. The element-wise additions, which the
    profiler counts too (1 per summand), are functional here and left out: about 0.01 G.
    """
    ops = 0

    def hook(module, inputs, output):
        nonlocal ops
        x = inputs[0]
        if isinstance(module, nn.ConvTranspose2d):
            cin, area = x.shape[1], module.kernel_size[0] * module.kernel_size[1]
            ops += cin * x[0, 0].numel() * area * cin * 2 + output[0].numel()
        elif isinstance(module, nn.Conv2d):
            area = module.kernel_size[0] * module.kernel_size[1]
            ops += output[0].numel() * (2 * area * x.shape[1] + 1)
        elif isinstance(module, nn.ReLU):
            ops += x[0].numel()
        elif isinstance(module, nn.MaxPool2d):
            ops += output[0].numel() * module.kernel_size ** 2

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad():
            model.eval()(torch.zeros(1, 3, *size))
    finally:
        for handle in handles:
            handle.remove()
    return ops


def test_linknet_resnet18_matches_the_published_parameters_and_gflops():
    model = rtseg.create_model("linknet-resnet18", num_classes=19)
    assert count_params(model) == pytest.approx(PUBLISHED_PARAMS, rel=0.02)
    # rtseg's convention (the RTSeg paper's): GFLOPs = 2 x multiply-adds, transposed
    # convolutions charged once per input pixel: 19.5, 8 % below the paper.
    gflops = count_flops(model, (360, 640)) / 1e9
    assert gflops == pytest.approx(PUBLISHED_GFLOPS, rel=0.10)
    # The paper's "GFLOPs" are operations (2 per multiply-add, not MACs: the exact multiply-adds
    # are half of ours, 10 G), counted by e-lab's profiler, which comes closer still.
    elab = elab_profiler_ops(model, (360, 640)) / 1e9
    assert elab == pytest.approx(PUBLISHED_GFLOPS, rel=0.05)
    assert abs(elab - PUBLISHED_GFLOPS) < abs(gflops - PUBLISHED_GFLOPS)


def test_decoder_blocks_are_the_papers_table():
    decoder = rtseg.create_model("linknet-resnet18", num_classes=19).decoder
    # LinkNet paper Table 1: block i maps m -> n channels, with m/4 inside.
    published = [(64, 64), (128, 64), (256, 128), (512, 256)]
    for block, (m, n) in zip(decoder.blocks, published):
        reduce, up, expand = block.reduce[0], block.up[0], block.expand[0]
        assert (reduce.in_channels, reduce.out_channels, reduce.kernel_size) == (m, m // 4, (1, 1))
        assert isinstance(up, nn.ConvTranspose2d) and up.kernel_size == (3, 3)
        assert (expand.in_channels, expand.out_channels) == (m // 4, n)
        for part in (block.reduce, block.up, block.expand):
            assert isinstance(part[1], nn.BatchNorm2d) and isinstance(part[2], nn.ReLU)
    # ResNet18's layer1 does not down-sample, so block 1 does not up-sample (the Torch code's stride 1).
    assert [b.up[0].stride for b in decoder.blocks] == [(1, 1), (2, 2), (2, 2), (2, 2)]
    first, _, _, conv, _, _ = decoder.head
    assert (first.in_channels, first.out_channels, first.kernel_size, first.stride) == (64, 32, (3, 3), (2, 2))
    assert (conv.in_channels, conv.out_channels, conv.kernel_size) == (32, 32, (3, 3))
    last = decoder.classify
    assert (last.in_channels, last.out_channels, last.kernel_size, last.stride) == (32, 19, (2, 2), (2, 2))


def test_block1_bypass_is_resnet18s_stem_max_pool():
    model = rtseg.create_model("linknet-resnet18").eval()
    assert model.decoder.block1_bypass
    seen = {}
    model.encoder.body.maxpool.register_forward_hook(lambda m, i, o: seen.setdefault("pool", o))
    captured = {}
    original = model.decoder.blocks[0].forward

    def block1(x, size):
        captured["size"] = tuple(size)
        return original(x, size)

    model.decoder.blocks[0].forward = block1
    image = torch.randn(1, 3, 67, 99)
    with torch.no_grad():
        features = model.encoder(image)
        rebuilt = torch.nn.functional.max_pool2d(features[0], 3, stride=2, padding=1)
        model(image)
    torch.testing.assert_close(rebuilt, seen["pool"])
    assert captured["size"] == tuple(seen["pool"].shape[-2:])


def test_without_block1_bypass_is_the_tf_port_and_costs_the_same():
    torch_code = rtseg.create_model("linknet-resnet18", num_classes=5).eval()
    tf_port = rtseg.create_model("linknet-resnet18", num_classes=5, block1_bypass=False).eval()
    assert not tf_port.decoder.block1_bypass
    tf_port.load_state_dict(torch_code.state_dict())  # same layers
    image = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert not torch.allclose(torch_code(image), tf_port(image))
    assert count_flops(torch_code, (64, 96)) == count_flops(tf_port, (64, 96))


def test_encoders_without_a_matching_stem_map_get_no_block1_bypass():
    assert not rtseg.create_model("linknet-mobilenet_v1").decoder.block1_bypass  # 64 vs 128 channels
    assert rtseg.create_model("linknet-shufflenet_v1").decoder.block1_bypass  # its /4 map is that pool


def test_levels_an_encoder_states_as_none_are_skipped():
    infos = [None, FeatureInfo(24, 4), None, FeatureInfo(96, 16), FeatureInfo(160, 32)]
    decoder = LinkNet(infos, num_classes=3)
    assert decoder.levels == [1, 3, 4] and not decoder.block1_bypass
    assert decoder.blocks[1].up[0].stride == (4, 4)  # /16 -> /4 in one block
    features = [None, torch.randn(2, 24, 17, 25), None, torch.randn(2, 96, 5, 7), torch.randn(2, 160, 3, 4)]
    logits = decoder(features, (67, 99))
    assert logits.shape == (2, 3, 67, 99)
    logits.square().mean().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in decoder.parameters())


def test_no_usable_level_is_an_error():
    with pytest.raises(rtseg.RtsegError, match="linknet needs"):
        LinkNet([FeatureInfo(16, 2), None, None, None, None], num_classes=3)


def test_dilated_encoder_maps_decode_with_stride_1_blocks():
    infos = [FeatureInfo(64, 2), FeatureInfo(64, 4), FeatureInfo(128, 8), FeatureInfo(256, 8), FeatureInfo(512, 8)]
    decoder = LinkNet(infos, num_classes=3)
    assert [b.up[0].stride for b in decoder.blocks] == [(1, 1), (2, 2), (1, 1), (1, 1)]
    features = [torch.randn(1, c, -(-33 // s), -(-65 // s)) for c, s in ((64, 2), (64, 4), (128, 8), (256, 8), (512, 8))]
    assert decoder(features, (33, 65)).shape == (1, 3, 33, 65)
