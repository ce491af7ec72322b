"""Every decoder works with every encoder, at any input size, with gradients everywhere."""

import pytest
import torch

import rtseg
from rtseg.models.factory import PAPER_DECODERS, PAPER_ENCODERS
from rtseg.models.registry import DECODERS, ENCODERS

GRID = [f"{d}-{e}" for d in DECODERS.names() for e in ENCODERS.names()]


def test_grid_covers_the_paper():
    for decoder in PAPER_DECODERS:
        for encoder in PAPER_ENCODERS:
            if encoder in ENCODERS:
                assert f"{decoder}-{encoder}" in GRID
    assert len(GRID) >= 9


@pytest.mark.parametrize("name", GRID)
@pytest.mark.parametrize("size", [(360, 640), (512, 1024), (1024, 2048), (257, 513)])
def test_logits_have_the_input_size(name, size):
    # Shapes only: the meta device runs the real graph without memory or arithmetic.
    with torch.device("meta"):
        model = rtseg.create_model(name)
        for training, batch in ((True, 2), (False, 1), (False, 3)):
            model.train(training)
            logits = model(torch.zeros(batch, 3, *size))
            assert logits.shape == (batch, 19, *size)


@pytest.mark.parametrize("name", GRID)
def test_real_forward_and_gradients_reach_every_parameter(name):
    model = rtseg.create_model(name, num_classes=5).train()
    # VGG16's 4096-channel fc6 makes every pixel costly on 2 CPU cores: keep its input small.
    height, width = (35, 51) if name.endswith("vgg16") else (67, 99)
    image = torch.randn(2, 3, height, width)
    logits = model(image)
    assert logits.shape == (2, 5, height, width)
    assert torch.isfinite(logits).all()
    target = torch.randint(0, 5, (2, height, width))
    torch.nn.functional.cross_entropy(logits, target).backward()
    without_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert without_grad == []
    model.eval()
    with torch.no_grad():
        assert model(image[:1]).shape == (1, 5, height, width)


def test_skipnet_starts_as_a_bilinear_upsampler():
    # FCN's initialisation: constant class scores stay constant through the transposed convolutions.
    model = rtseg.create_model("skipnet-mobilenet_v1", num_classes=3)
    ones = torch.ones(1, 3, 8, 16)
    up = model.decoder.up[0](ones)
    torch.testing.assert_close(up[..., 1:-1, 1:-1], torch.ones_like(up[..., 1:-1, 1:-1]))


def test_dilation_decoder_asks_for_output_stride_8():
    model = rtseg.create_model("dilation-resnet18")
    assert [f.stride for f in model.encoder.feature_info] == [2, 4, 8, 8, 8]
    assert rtseg.create_model("skipnet-resnet18").encoder.output_stride == 32


def test_unet_concatenation_fusion_changes_cost_not_shape():
    from rtseg.profiling.flops import count_flops

    add = rtseg.create_model("unet-mobilenet_v1")
    concat = rtseg.create_model("unet-mobilenet_v1", fusion="concat")
    assert count_flops(concat, (128, 256)) > count_flops(add, (128, 256))
    with torch.no_grad():
        assert concat.eval()(torch.randn(1, 3, 65, 97)).shape == (1, 19, 65, 97)
