"""LR-ASPP (Howard et al. 2019): the decoder on any encoder, checked against torchvision's
``lraspp_mobilenet_v3_large`` (outputs, parameters, published cost)."""

import pytest
import torch
from torchvision.models import mobilenet_v3_large
from torchvision.models.segmentation import LRASPP_MobileNet_V3_Large_Weights, lraspp_mobilenet_v3_large

import rtseg
from rtseg.models.decoders.lraspp import LRASPP
from rtseg.models.encoders.base import FeatureInfo
from rtseg.profiling.flops import count_flops, count_params

SINGLE_THREAD = True
PUBLISHED = LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1.meta  # torchvision's model card


def torchvision_model(num_classes: int):
    model = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes)
    with torch.no_grad():  # BN statistics that are not the identity, so buffers must load too
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_(0, 0.1)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 1.5)
    return model.eval()


def test_whole_model_gives_torchvision_outputs_from_its_state_dict(tmp_path):
    reference = torchvision_model(19)
    path = tmp_path / "lraspp.pth"
    torch.save(reference.state_dict(), path)
    model = rtseg.create_model("lraspp_mobilenet_v3_large", weights=path).eval()
    x = torch.randn(1, 3, 97, 131)  # odd: torchvision's stride-2 convolutions round up
    with torch.no_grad():
        assert torch.equal(model(x), reference(x)["out"])
    assert (model.mean, model.std) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_whole_model_takes_torchvision_backbone_weights(tmp_path):
    classifier = mobilenet_v3_large(weights=None)
    path = tmp_path / "mobilenet_v3_large.pth"
    torch.save(classifier.state_dict(), path)
    model = rtseg.create_model("lraspp_mobilenet_v3_large", pretrained=str(path))
    for key, value in classifier.features.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value)


def test_whole_model_has_torchvision_published_cost():
    with torch.device("meta"):
        model = rtseg.create_model("lraspp_mobilenet_v3_large", num_classes=21)  # COCO with VOC labels
    assert count_params(model) == PUBLISHED["num_params"]  # 3,221,538
    # torchvision's "GFLOPS" are multiply-adds at its 520x520 evaluation size (2.086 G).
    assert count_flops(model, (520, 520)) / 2e9 == pytest.approx(PUBLISHED["_ops"], rel=1e-3)


def test_lraspp_on_timm_mobilenetv3_large_is_torchvision_model():
    with torch.device("meta"):
        reference = lraspp_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=19)
        ours = rtseg.create_model("lraspp-timm.mobilenetv3_large_100")
        dilated = rtseg.create_model("lraspp-timm.mobilenetv3_large_100", output_stride=16)
    assert count_params(ours) == pytest.approx(count_params(reference), rel=0.01)

    class Logits(torch.nn.Module):  # torchvision's model returns {"out": logits}
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return self.net(x)["out"]

    reference_flops = count_flops(Logits(reference), (520, 520))
    # With the last stage dilated (torchvision's and the paper's stride-16 high map) the cost is the same;
    # rtseg's default stride 32 runs that stage on a quarter of the pixels.
    assert count_flops(dilated, (520, 520)) == pytest.approx(reference_flops, rel=0.01)
    assert count_flops(ours, (520, 520)) < 0.7 * reference_flops


def test_decoder_reads_the_8_and_the_deepest_maps_only():
    infos = [FeatureInfo(8, 2), FeatureInfo(8, 4), FeatureInfo(16, 8), FeatureInfo(24, 16), FeatureInfo(32, 32)]
    decoder = LRASPP(infos, num_classes=5).eval()
    features = [torch.randn(1, info.channels, 64 // info.stride, 96 // info.stride) for info in infos]
    with torch.no_grad():
        logits = decoder(features, (64, 96))
        assert logits.shape == (1, 5, 64, 96)
        for level in range(5):
            changed = list(features)
            changed[level] = torch.randn_like(features[level])
            assert torch.equal(decoder(changed, (64, 96)), logits) == (level not in (2, 4))


def test_decoder_attention_pools_the_whole_map():
    infos = [None, None, FeatureInfo(16, 8), FeatureInfo(24, 16), FeatureInfo(32, 32)]
    decoder = LRASPP(infos, num_classes=5, inter_channels=64).eval()
    high = torch.randn(2, 32, 5, 7)
    with torch.no_grad():
        weights = decoder.attention(high)
        assert weights.shape == (2, 64, 1, 1)
        # Global average pooling: the same map with its pixels shuffled gets the same attention.
        shuffled = high.flatten(2)[..., torch.randperm(35)].reshape_as(high)
        torch.testing.assert_close(decoder.attention(shuffled), weights)
