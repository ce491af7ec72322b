"""The Cityscapes reader on a tiny synthetic set: fine and coarse, train ids, eval targets,
the test split, DataLoader batches, and one clear RtsegError line for each user mistake."""

import shutil
import zipfile

import numpy as np
import pytest
import torch
from cityscapesscripts.helpers.labels import id2label
from PIL import Image
from torch.utils.data import DataLoader

from rtseg.data.cityscapes import CityscapesDataset, find_split_files
from rtseg.data.synthetic import generate_synthetic_cityscapes
from rtseg.data.transforms import eval_transforms, train_transforms
from rtseg.errors import RtsegError

SIZE = (64, 128)
# train ids from the official cityscapesscripts table (255 and -1 -> ignore)
OFFICIAL_TRAIN = np.array([id2label[i].trainId if id2label[i].trainId not in (-1, 255) else 255
                           for i in range(34)], np.int64)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    path = tmp_path_factory.mktemp("cityscapes")
    generate_synthetic_cityscapes(path, train=3, val=2, test=2, train_extra=2, coarse=True, size=SIZE, seed=1,
                                  cities=2, progress=False)
    return path


@pytest.fixture
def small(tmp_path):
    """A one-image dataset the test may damage."""
    generate_synthetic_cityscapes(tmp_path / "cs", train=1, val=0, test=0, size=(32, 64), seed=2, progress=False)
    return tmp_path / "cs"


def _png(path):
    return np.array(Image.open(path))


def test_reads_fine_train_with_official_train_ids(root):
    ds = CityscapesDataset(root, "train")
    assert len(ds) == 3 and len(ds.files) == 3 and ds.files == sorted(ds.files)
    item = ds[0]
    assert set(item) == {"image", "label", "name", "path"}
    assert item["name"] == "aachen_000000_000019" and item["path"] == ds.files[0]
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, *SIZE)
    assert 0.0 <= item["image"].min() and item["image"].max() <= 1.0
    np.testing.assert_allclose(item["image"].permute(1, 2, 0).numpy() * 255, _png(item["path"]), atol=1e-3)
    label_ids = _png(ds.label_files[0])
    assert item["label"].dtype == torch.int64 and item["label"].shape == SIZE
    np.testing.assert_array_equal(item["label"].numpy(), OFFICIAL_TRAIN[label_ids])
    assert set(item["label"].unique().tolist()) <= set(range(19)) | {255}


def test_eval_targets_are_the_raw_ids_and_are_not_resized(root):
    ds = CityscapesDataset(root, "val", transforms=eval_transforms(size=(32, 64)), eval_targets=True)
    item = ds[1]
    assert item["image"].shape == (3, 32, 64)
    assert item["label"].shape == SIZE and item["label_ids"].shape == SIZE and item["instance_ids"].shape == SIZE
    np.testing.assert_array_equal(item["label_ids"].numpy(), _png(ds.label_files[1]))
    np.testing.assert_array_equal(item["instance_ids"].numpy(), _png(ds.instance_files[1]).astype(np.int64))
    assert item["instance_ids"].dtype == torch.int64 and int(item["instance_ids"].max()) >= 1000


def test_test_split_yields_images_and_names_only(root):
    ds = CityscapesDataset(root, "test", transforms=eval_transforms(), eval_targets=True)
    assert len(ds) == 2 and ds.label_files is None
    item = ds[0]
    assert set(item) == {"image", "name", "path"} and item["image"].shape == (3, *SIZE)


def test_coarse_annotations_including_train_extra(root):
    extra = CityscapesDataset(root, "train_extra", annotation="coarse")
    assert len(extra) == 2 and all("/gtCoarse/train_extra/" in p for p in extra.label_files)
    coarse = CityscapesDataset(root, "train", annotation="coarse")
    fine = CityscapesDataset(root, "train")
    a, b = coarse[0]["label"], fine[0]["label"]
    labelled = a != 255
    assert (a[labelled] == b[labelled]).all() and labelled.sum() < (b != 255).sum()
    with pytest.raises(RtsegError, match="'train_extra' does not exist for fine"):
        CityscapesDataset(root, "train_extra", annotation="fine")
    with pytest.raises(RtsegError, match="annotation 'medium'"):
        CityscapesDataset(root, "train", annotation="medium")


def test_find_split_files_pairs_images_with_labels(root):
    files = find_split_files(root, "val", "fine")
    assert [f.name for f in files] == ["frankfurt_000000_000019", "lindau_000000_000019"]
    assert files[0].label_ids.endswith("gtFine/val/frankfurt/frankfurt_000000_000019_gtFine_labelIds.png")
    assert files[0].instance_ids.endswith("_gtFine_instanceIds.png")
    assert find_split_files(root, "test")[0].label_ids is None


def test_dataloader_batches_crops(root):
    ds = CityscapesDataset(root, "train", transforms=train_transforms(crop=(48, 96), scale=(0.5, 2.0)))
    batch = next(iter(DataLoader(ds, batch_size=3, shuffle=False)))
    assert batch["image"].shape == (3, 3, 48, 96) and batch["label"].shape == (3, 48, 96)
    assert len(batch["name"]) == 3


# ------------------------------------------------------------------------------------ errors
def _error(root, **kwargs):
    with pytest.raises(RtsegError) as info:
        CityscapesDataset(root, **kwargs)[0]
    message = str(info.value)
    assert "\n" not in message
    return message


def test_error_root_does_not_exist(tmp_path):
    message = _error(tmp_path / "nowhere")
    assert "nowhere does not exist" in message and "leftImg8bit/ and gtFine/" in message


@pytest.mark.parametrize("inner", ["leftImg8bit", "gtFine", "leftImg8bit/train"])
def test_error_root_points_too_deep(root, inner):
    message = _error(root / inner)
    assert "too deep" in message and f"point at {root}," in message


def test_error_root_is_a_zip_file(tmp_path):
    archive = tmp_path / "leftImg8bit_trainvaltest.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("README", "x")
    message = _error(archive)
    assert "is a zip file" in message and "unzip" in message and "leftImg8bit/ and gtFine/" in message


def test_error_root_without_dataset(tmp_path, small):
    message = _error(small.parent)
    assert f"{small} has" in message  # points one level too high: names the folder that has it
    (tmp_path / "empty").mkdir()
    assert "empty has no leftImg8bit/ folder; point at" in _error(tmp_path / "empty")


def test_error_image_without_label(small):
    label = next(small.rglob("*_gtFine_labelIds.png"))
    label.unlink()
    message = _error(small)
    assert "has no label file" in message and str(label) in message and "_leftImg8bit.png" in message


def test_error_missing_annotation_folder(small):
    message = _error(small, annotation="coarse")
    assert "no gtCoarse/ folder" in message


def test_error_corrupt_image_is_raised_when_read(small):
    image = next(small.rglob("*_leftImg8bit.png"))
    image.write_bytes(image.read_bytes()[:200])
    ds = CityscapesDataset(small)  # listing works: the file is only read on access
    with pytest.raises(RtsegError) as info:
        ds[0]
    assert str(image) in str(info.value) and "cannot read image" in str(info.value)
    assert "\n" not in str(info.value)


def test_error_corrupt_label(small):
    label = next(small.rglob("*_gtFine_labelIds.png"))
    label.write_bytes(b"not a png at all")
    message = _error(small)
    assert "cannot read label file" in message and str(label) in message


def test_error_label_ids_out_of_range(small):
    label = next(small.rglob("*_gtFine_labelIds.png"))
    ids = _png(label)
    ids[0, 0] = 40
    Image.fromarray(ids).save(label)
    message = _error(small)
    assert str(label) in message and "40" in message and "0..33" in message


def test_error_colour_png_as_label(small):
    label = next(small.rglob("*_gtFine_labelIds.png"))
    shutil.copy(str(label).replace("labelIds", "color"), label)
    assert "channels" in _error(small)


def test_error_empty_split(small):
    (small / "leftImg8bit" / "val").mkdir()
    message = _error(small, split="val")
    assert "split 'val' is empty" in message and str(small / "leftImg8bit" / "val") in message
    message = _error(small, split="test")
    assert "split 'test' is empty" in message and "missing" in message
    assert "use one of train, val, test" in _error(small, split="training")
