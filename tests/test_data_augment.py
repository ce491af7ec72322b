"""The trainer's fast augmentation against its reference, the torchvision v2 pipeline: same random
parameters from the same seed (so the same distribution), the same labels pixel for pixel, images
within interpolation rounding; colour jitter on the device equals torchvision's; the decode cache
returns the decoder's arrays."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F
from torchvision import tv_tensors
from torchvision.transforms import v2

from rtseg.data.augment import TrainAugmentation, apply_color_jitter, nearest_index, to_network_input
from rtseg.data.dataset import SegmentationDataset
from rtseg.data.layouts import open_dataset
from rtseg.data.synthetic import generate_synthetic
from rtseg.data.transforms import train_transforms
from rtseg.errors import RtsegError

SINGLE_THREAD = True


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """A rendered street scene (textures, edges, every class) and its train ids."""
    root = tmp_path_factory.mktemp("scene")
    generate_synthetic(root, train=1, val=0, test=0, size=(96, 192), seed=5, progress=False)
    layout = open_dataset(root)
    ds = SegmentationDataset(layout, "train")
    from rtseg.data.io import read_image

    return read_image(ds.files[0]), layout.read_label(ds.label_files[0])


def reference(image, label, seed, **recipe):
    torch.manual_seed(seed)
    out_image, out_label = train_transforms(mean=(0, 0, 0), std=(1, 1, 1), **recipe)(
        tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1).contiguous()), tv_tensors.Mask(torch.from_numpy(label)))
    return out_image * 255, out_label, torch.rand(1)


def fast(image, label, seed, **recipe):
    torch.manual_seed(seed)
    item = TrainAugmentation(**recipe)(image, label)
    after = torch.rand(1)
    out = item["image"][None]
    if "jitter" in item:
        out = apply_color_jitter(out, item["jitter"][None])
    return out[0].float(), item["label"], after


RECIPES = [
    dict(crop=(64, 128), scale=(0.5, 2.0), hflip=True, color_jitter=0.3),  # the default pipeline, small
    dict(crop=(48, 96), scale=(0.5, 0.5), hflip=True, color_jitter=0.0),  # the paper's: fixed scale
    dict(crop=(80, 160), scale=(0.3, 0.6), hflip=False, color_jitter=0.0),  # crop larger: padding
    dict(crop=(40, 50), scale=(1.3, 2.7), hflip=True, color_jitter=0.2),  # enlarging only
    dict(crop=None, scale=(0.7, 1.4), hflip=True, color_jitter=0.0),  # no crop
]


@pytest.mark.parametrize("recipe", RECIPES, ids=[str(i) for i in range(len(RECIPES))])
@pytest.mark.parametrize("seed", range(4))
def test_same_seed_same_parameters_labels_equal_images_close(sample, recipe, seed):
    image, label = sample
    ref_image, ref_label, ref_next = reference(image, label, seed, **recipe)
    new_image, new_label, new_next = fast(image, label, seed, **recipe)
    assert torch.equal(ref_next, new_next)  # the same random numbers were drawn: same distribution
    assert new_label.dtype == torch.uint8 and torch.equal(new_label, ref_label.to(torch.uint8))
    assert new_image.shape == ref_image.shape
    difference = (new_image - ref_image).abs()
    if recipe["scale"][1] <= 1:  # shrinking: torch's own kernel, the same pixels
        assert difference.max() <= 1e-3
    else:  # enlarging: OpenCV's bilinear rounding, within a few grey levels
        assert difference.mean() < 1.0 and torch.quantile(difference.flatten(), 0.99) <= 4


def test_a_flip_without_the_label_flip_would_be_caught(sample):
    image, label = sample
    recipe = dict(crop=None, scale=None, hflip=True, color_jitter=0.0)
    flips = 0
    for seed in range(12):
        ref_image, ref_label, _ = reference(image, label, seed, **recipe)
        new_image, new_label, _ = fast(image, label, seed, **recipe)
        assert torch.equal(new_label, ref_label.to(torch.uint8)) and torch.allclose(new_image, ref_image, atol=1e-3)
        flips += not torch.equal(new_label, torch.from_numpy(label))
    assert 0 < flips < 12


def test_parameters_cover_their_ranges():
    augment = TrainAugmentation(crop=(50, 100), scale=(0.5, 2.0), color_jitter=0.2)
    torch.manual_seed(0)
    draws = [augment.params(100, 200) for _ in range(400)]
    heights = np.array([d["scaled"][0] for d in draws])
    assert heights.min() < 55 and heights.max() > 195 and abs(np.median(heights) - 125) < 10  # U(0.5, 2) x 100
    assert 0.4 < np.mean([d["flip"] for d in draws]) < 0.6
    tops = np.array([d["top"] for d in draws if d["scaled"][0] == 150])
    assert tops.min() >= 0 and tops.max() <= 100
    factors = torch.stack([d["jitter"][4:7] for d in draws])
    assert factors.min() >= 0.8 and factors.max() <= 1.2 and torch.isnan(torch.stack([d["jitter"][7] for d in draws])).all()


def test_windows_outside_the_scaled_image_are_padded():
    from rtseg.data.augment import nearest_window, scaled_window

    image = np.full((10, 20, 3), 200, np.uint8)
    label = np.full((10, 20), 4, np.uint8)
    window = scaled_window(image, (5, 10), top=-2, left=-3, crop=(8, 16))  # half size, window hangs over
    ids = nearest_window(label, (5, 10), top=-2, left=-3, crop=(8, 16))
    inside = np.zeros((8, 16), bool)
    inside[2:7, 3:13] = True
    assert (window[inside] == 200).all() and (window[~inside] == 0).all()
    assert (ids[inside] == 4).all() and (ids[~inside] == 255).all()


@pytest.mark.parametrize("size_in, size_out", [(1024, 512), (1024, 1741), (37, 53), (53, 37), (100, 200), (7, 7),
                                               (2048, 1229)])
def test_nearest_index_is_torch_nearest(size_in, size_out):
    source = torch.arange(size_in, dtype=torch.float32)[None, None, None]
    theirs = F.interpolate(source, size=(1, size_out), mode="nearest")[0, 0, 0].long().numpy()
    np.testing.assert_array_equal(nearest_index(size_in, size_out), theirs)


def test_device_jitter_equals_torchvision_colour_jitter(sample):
    image, _ = sample
    tensor = torch.from_numpy(image).permute(2, 0, 1).contiguous()
    jitter = v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4)
    augment = TrainAugmentation(crop=None, scale=None, hflip=False, color_jitter=0.4)
    for seed in range(5):
        torch.manual_seed(seed)
        expected = jitter(tensor)
        torch.manual_seed(seed)
        item = augment(image, None)
        assert torch.equal(apply_color_jitter(item["image"][None], item["jitter"][None])[0], expected)


def test_to_network_input_normalises_uint8_and_passes_floats(sample):
    image, label = sample
    item = TrainAugmentation(crop=(32, 64), scale=None, hflip=False, color_jitter=0.0)(image, label)
    batch = {"image": item["image"][None], "label": item["label"][None]}
    images, labels = to_network_input(batch, torch.device("cpu"), (0.5, 0.4, 0.3), (0.2, 0.25, 0.5))
    expected = (item["image"].float() / 255 - torch.tensor([0.5, 0.4, 0.3])[:, None, None]) / \
        torch.tensor([0.2, 0.25, 0.5])[:, None, None]
    torch.testing.assert_close(images[0], expected)
    assert labels.dtype == torch.int64
    already = {"image": images, "label": labels}
    assert to_network_input(already, torch.device("cpu"), (0, 0, 0), (1, 1, 1))[0] is not None
    with pytest.raises(RtsegError, match="uint8 or float"):
        to_network_input({"image": torch.zeros(1, 3, 2, 2, dtype=torch.int32)}, torch.device("cpu"), (0, 0, 0), (1, 1, 1))


def test_decode_cache_gives_the_decoded_arrays_and_follows_file_changes(tmp_path):
    import os

    root = tmp_path / "data"
    generate_synthetic(root, layout="camvid", train=2, val=0, test=0, size=(32, 64), seed=1, progress=False)
    layout = open_dataset(root, "camvid")
    plain = SegmentationDataset(layout, "train")
    cached = SegmentationDataset(layout, "train", cache=tmp_path / "cache")
    for _ in range(2):  # the first pass writes, the second maps the files
        for i in range(2):
            a, b = plain[i], cached[i]
            assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 4
    label = plain.label_files[0]
    from PIL import Image

    ids = np.array(Image.open(label))
    ids[:] = 3
    Image.fromarray(ids).save(label)
    os.utime(label, ns=(1, 1))
    assert (cached[0]["label"] == 3).all()
