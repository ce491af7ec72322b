"""Labels taken inside the final up-sampling (``rtseg.inference.upsampled_labels``) are the
argmax of the network's logits, and every network that names an output layer computes its
logits through it.

Equalities are checked in float64, where the matrix-product and transposed-convolution
orders of summation cannot flip a label; no test asserts a time.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import rtseg
from rtseg.inference import Backend, SubPixelConvTranspose2d, build_runners
from rtseg.inference.torch_engines import EndToEnd, choose_labels, fused_labels_of
from rtseg.inference.upsampled_labels import CHUNK_BYTES, UpsampledLabels, can_fuse
from rtseg.models.decoders.base import fit_to
from rtseg.models.factory import model_names


def _reference(layer: nn.Module, x: torch.Tensor, size) -> torch.Tensor:
    return fit_to(layer(x), size).argmax(1)


@pytest.mark.parametrize("cin,kernel,stride,padding,output_padding,bias", [
    (19, 16, 8, 4, 0, False),  # SkipNet's and the Dilation frontend's x8
    (16, 2, 2, 0, 0, True),    # ENet's and LinkNet's 2x2 classifier
    (6, 4, 2, 1, 0, True),     # an x2 FCN up-sampler
    (6, 3, 2, 1, 1, False),    # LinkNet-style 3x3 with output padding
    (6, 5, 3, 2, 1, True),     # kernel not a multiple of the stride
])
@pytest.mark.parametrize("shape,size", [
    ((2, 0, 5, 7), "natural"),  # batch 2, the layer's own output size
    ((1, 0, 6, 9), "cropped"),  # fit_to crops the bottom/right
    ((1, 0, 4, 5), "padded"),   # fit_to replicates the last row and column
])
def test_labels_equal_the_argmax_of_the_fitted_up_sampling(cin, kernel, stride, padding, output_padding, bias,
                                                          shape, size):
    torch.manual_seed(0)
    deconv = nn.ConvTranspose2d(cin, 7, kernel, stride, padding, output_padding=output_padding, bias=bias).double()
    x = torch.randn(shape[0], cin, *shape[2:], dtype=torch.float64)
    natural = deconv(x).shape[-2:]
    target = {"natural": tuple(natural), "cropped": (natural[0] - 3, natural[1] - 1),
              "padded": (natural[0] + 2, natural[1] + 5)}[size]
    expected = _reference(deconv, x, target)
    for layer in (deconv, SubPixelConvTranspose2d(deconv)):  # before and after the sub-pixel rewrite
        got = UpsampledLabels(layer)(x, target)
        assert got.dtype == torch.int64 and got.shape == expected.shape == (shape[0], *target)
        assert torch.equal(got, expected)


def test_labels_are_the_same_whatever_the_chunk_of_rows():
    """The rows are multiplied a few at a time: one row per chunk and all at once agree."""
    torch.manual_seed(1)
    deconv = nn.ConvTranspose2d(5, 4, 4, 2, 1).double()
    x = torch.randn(2, 5, 9, 11, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    expected = _reference(deconv, x, (18, 22))
    for chunk_bytes in (1, CHUNK_BYTES, 1 << 40):
        assert torch.equal(UpsampledLabels(deconv, chunk_bytes)(x, (18, 22)), expected)


def test_ties_go_to_the_lowest_class_as_argmax_does():
    deconv = nn.ConvTranspose2d(3, 5, 2, 2)
    with torch.no_grad():
        deconv.weight.zero_()
        deconv.bias.copy_(torch.tensor([0.0, 2.0, 2.0, 1.0, 2.0]))  # classes 1, 2 and 4 tie
    labels = UpsampledLabels(deconv)(torch.randn(1, 3, 3, 4), (6, 8))
    assert torch.equal(labels, torch.ones(1, 6, 8, dtype=torch.long))


@pytest.mark.parametrize("kernel,padding,bias", [
    (1, 0, True),         # UNet's 1x1 classifier
    (3, 1, True),         # a 3x3 classifier (SegNet's, were it declared)
    (3, 0, False),        # no padding: the map shrinks, fit_to pads it back
    ((3, 5), (1, 2), True),  # rectangular
])
@pytest.mark.parametrize("size", ["natural", "cropped", "padded"])
def test_labels_equal_the_argmax_of_a_fitted_stride_one_convolution(kernel, padding, bias, size):
    """A classifier at full resolution is a stride-1 transposed convolution with its kernel flipped."""
    torch.manual_seed(2)
    conv = nn.Conv2d(6, 5, kernel, padding=padding, bias=bias).double()
    x = torch.randn(2, 6, 7, 9, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    natural = conv(x).shape[-2:]
    target = {"natural": tuple(natural), "cropped": (natural[0] - 2, natural[1] - 1),
              "padded": (natural[0] + 3, natural[1] + 2)}[size]
    expected = _reference(conv, x, target)
    for chunk_bytes in (1, CHUNK_BYTES):
        got = UpsampledLabels(conv, chunk_bytes)(x, target)
        assert got.shape == expected.shape == (2, *target) and torch.equal(got, expected)


def test_only_plain_transposed_and_stride_one_convolutions_are_fused():
    assert can_fuse(nn.ConvTranspose2d(4, 4, 4, 2, 1))
    assert can_fuse(nn.Conv2d(4, 4, 1)) and can_fuse(nn.Conv2d(4, 4, 3, padding=1))
    assert not can_fuse(nn.ConvTranspose2d(4, 4, 4, 2, 1, groups=2))
    assert not can_fuse(nn.Conv2d(4, 4, 3, stride=2)) and not can_fuse(nn.Conv2d(4, 4, 3, groups=2))
    assert not can_fuse(nn.Conv2d(4, 4, 3, padding=3))  # wider than the kernel: no transposed twin
    assert not can_fuse(nn.Conv2d(4, 4, 3, padding="same")) and not can_fuse(None)
    with pytest.raises(ValueError, match="groups=1"):
        UpsampledLabels(nn.ConvTranspose2d(4, 4, 4, 2, 1, groups=4))


FUSED_FAMILIES = ("skipnet-", "unet-", "dilation-", "linknet-", "enet")


@pytest.mark.slow
def test_every_network_with_an_output_layer_computes_its_logits_through_it():
    """The contract ``SegmentationNetwork.output_layer`` states, on every registered network:
    eval-mode logits are ``fit_to(up(output_layer_input(x)), size)``, and the fused labels are their argmax."""
    declared = []
    for name in model_names():
        torch.manual_seed(0)
        model = rtseg.create_model(name, num_classes=5).eval().double()
        layer = model.output_layer()
        if layer is None:
            continue
        declared.append(name)
        x = torch.randn(1, 3, 67, 101, dtype=torch.float64)  # odd: the up-sampled map is cropped
        with torch.no_grad():
            logits = model(x)
            assert torch.equal(fit_to(layer(model.output_layer_input(x)), x.shape[-2:]), logits), name
            assert torch.equal(EndToEnd(model, fused_labels_of(model))(x), logits.argmax(1)), name
    expected = [n for n in model_names() if n.startswith(FUSED_FAMILIES)]
    assert declared == expected  # a family that stops declaring its output layer loses the fused labels


def test_the_torch_engines_fuse_the_labels_when_told_or_when_timed_faster():
    torch.manual_seed(0)
    model = rtseg.create_model("skipnet-shufflenet_v1", width=0.25).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        reference = model(x)
    for fused_labels in (None, True, False):
        model_only, end_to_end = build_runners(model, (64, 96), Backend("eager", fused_labels=fused_labels))
        choice = end_to_end.details.get("labels_choice")
        if fused_labels is None:  # timed at build: the record says what was measured and chosen
            assert choice["inside the last layer"] is end_to_end.details["argmax_first"]
            assert choice["fused_ms"] > 0 and choice["argmax_ms"] > 0
        else:
            assert choice is None and end_to_end.details["argmax_first"] is fused_labels
        torch.testing.assert_close(model_only(x), reference, rtol=1e-4, atol=1e-4)  # logits stay full
        assert torch.equal(end_to_end(x), reference.argmax(1))


def test_the_fused_labels_are_chosen_only_when_timed_faster_by_the_margin():
    torch.manual_seed(0)
    model = rtseg.create_model("skipnet-shufflenet_v1", width=0.25).eval()
    x = torch.randn(1, 3, 64, 96)
    timings = []

    def timer(argmax_s, fused_s):
        def time_steps(steps):
            assert len(steps) == 2 and all(step() > 0 for step in steps)  # both heads run
            timings.append((argmax_s, fused_s))
            return [argmax_s, fused_s]
        return time_steps

    labels = fused_labels_of(model)
    chosen, record = choose_labels(model, labels, x, Backend("eager"), timer=timer(0.010, 0.005))
    assert chosen is labels and record == {"inside the last layer": True, "argmax_ms": 10.0, "fused_ms": 5.0,
                                           "argmax_head": "eager"}
    # within the margin, or slower: the argmax
    assert choose_labels(model, labels, x, Backend("eager"), timer=timer(0.010, 0.0099))[0] is None
    assert choose_labels(model, labels, x, Backend("eager"), timer=timer(0.010, 0.012))[0] is None
    assert len(timings) == 3
    # a network without an output layer has nothing to fuse, so nothing is timed
    lraspp = rtseg.create_model("lraspp-shufflenet_v1", width=0.25).eval()  # ends in a bilinear resize
    assert fused_labels_of(lraspp) is None
    lraspp_runner = build_runners(lraspp, (64, 96), Backend("eager"))[1]
    assert lraspp_runner.details["argmax_first"] is False and "labels_choice" not in lraspp_runner.details
