"""Training and evaluation transforms: image and label move together, crops pad with ignore,
labels stay valid ids, normalisation matches the model's mean/std."""

import pytest
import torch
from torch.nn import functional as F
from torchvision import tv_tensors

from rtseg.data.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transforms, train_transforms
from rtseg.errors import RtsegError


def _stripes(height=48, width=128, seed=0):
    """Label = class of irregular vertical stripes and horizontal bands; the image encodes
    the class in its pixel value, so any image/label misalignment shows."""
    g = torch.Generator().manual_seed(seed)
    widths = torch.randint(10, 20, (width,), generator=g)
    col_class = torch.randint(0, 19, (width,), generator=g).repeat_interleave(widths)[:width]
    row_shift = (torch.arange(height) // 16) * 3
    label = (col_class[None, :] + row_shift[:, None]) % 19
    image = (label * 12 + 10).to(torch.uint8)[None].repeat(3, 1, 1)
    return tv_tensors.Image(image), tv_tensors.Mask(label.to(torch.uint8))


def _decode(image):
    """Undo normalisation with mean 0, std 1: back to 0..255 and to the class."""
    return torch.round((image[0] * 255 - 10) / 12)


@pytest.mark.parametrize("seed", range(6))
def test_joint_geometry_keeps_image_and_label_aligned(seed):
    torch.manual_seed(seed)
    image, label = _stripes(seed=seed)
    transform = train_transforms(crop=(32, 64), scale=(0.5, 2.0), mean=(0, 0, 0), std=(1, 1, 1),
                                 hflip=True, color_jitter=0)
    out_image, out_label = transform(image, label)
    assert out_image.shape == (3, 32, 64) and out_label.shape == (32, 64)
    # away from class borders (where the bilinear image blends, the nearest label cannot) and
    # from the crop's edges (whose outside neighbours are unseen) the image must still encode
    # exactly the label's class
    lab = out_label.float()[None, None]
    interior = (F.max_pool2d(lab, 5, 1, 2) == -F.max_pool2d(-lab, 5, 1, 2))[0, 0] & (out_label != 255)
    interior[:2], interior[-2:], interior[:, :2], interior[:, -2:] = False, False, False, False
    assert interior.sum() > 0.2 * (out_label != 255).sum()
    assert torch.equal(_decode(out_image)[interior], out_label[interior].float())


def test_flip_without_label_flip_would_be_caught():
    image, label = _stripes()
    flipped = torch.flip(image, dims=[-1])
    assert (_decode(flipped.float() / 255) == label.float()).float().mean() < 0.5


def test_crop_pads_label_with_ignore_and_image_with_zero():
    image, label = _stripes(height=20, width=40)
    transform = train_transforms(crop=(32, 64), scale=None, mean=(0, 0, 0), std=(1, 1, 1), hflip=False,
                                 color_jitter=0)
    out_image, out_label = transform(image, label)
    padded = out_label == 255
    assert int(padded.sum()) == 32 * 64 - 20 * 40
    assert (out_image[:, padded] == 0).all() and (out_image[:, ~padded] > 0).all()


def test_scaled_labels_only_hold_ids_that_were_there():
    g = torch.Generator().manual_seed(3)
    values = torch.tensor([0, 5, 13, 18, 255], dtype=torch.uint8)
    label = tv_tensors.Mask(values[torch.randint(0, 5, (37, 53), generator=g)])
    image = tv_tensors.Image(torch.randint(0, 256, (3, 37, 53), dtype=torch.uint8, generator=g))
    for seed in range(5):
        torch.manual_seed(seed)
        _, out = train_transforms(crop=None, scale=(0.37, 1.9))(image, label)
        assert set(out.unique().tolist()) <= set(values.tolist())
        assert out.dtype == torch.uint8


def test_normalisation_uses_the_given_mean_and_std():
    image, label = _stripes()
    out_image, out_label = train_transforms(crop=None, scale=None, hflip=False, color_jitter=0)(image, label)
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    torch.testing.assert_close(out_image, (image.float() / 255 - mean) / std)
    assert torch.equal(out_label, label)
    custom, _ = eval_transforms(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))(image, label)
    torch.testing.assert_close(custom, (image.float() / 255 - 0.5) / 0.25)


def test_colour_jitter_changes_the_image_not_the_label():
    image, label = _stripes()
    torch.manual_seed(0)
    jittered, out_label = train_transforms(crop=None, scale=None, hflip=False, color_jitter=0.4)(image, label)
    plain, _ = train_transforms(crop=None, scale=None, hflip=False, color_jitter=0)(image, label)
    assert not torch.allclose(jittered, plain) and torch.equal(out_label, label)


def test_eval_transform_resizes_the_image_only():
    image, label = _stripes()
    out_image, out_label = eval_transforms(size=(20, 48))(image, label)
    assert out_image.shape == (3, 20, 48) and out_image.dtype == torch.float32
    assert torch.equal(out_label, label)
    same, _ = eval_transforms()(image, label)
    assert same.shape == image.shape


def test_unlabelled_images_pass_with_none():
    image, _ = _stripes()
    out_image, out_label = train_transforms(crop=(16, 32))(image, None)
    assert out_image.shape == (3, 16, 32) and out_label is None


@pytest.mark.parametrize("kwargs, match", [({"scale": (2.0, 1.0)}, "scale"), ({"crop": (0, 10)}, "crop"),
                                           ({"std": (1, 0, 1)}, "std"), ({"color_jitter": -1}, "color_jitter")])
def test_bad_options_are_rtseg_errors(kwargs, match):
    with pytest.raises(RtsegError, match=match):
        train_transforms(**kwargs)
