"""Class weights: the ENet and median-frequency formulas on a hand-made label set, dataset
input, and the cache that recomputes when label files change."""

import json
import math
import os

import numpy as np
import pytest
import torch
from PIL import Image

import rtseg.data.class_weights as cw
from rtseg.data.cityscapes import CityscapesDataset
from rtseg.data.class_weights import class_weights
from rtseg.data.synthetic import generate_synthetic_cityscapes
from rtseg.errors import RtsegError

ROAD, CAR, SKY, UNLABELED = 7, 26, 23, 0  # label ids -> train ids 0, 13, 10, ignore
TRAIN = {ROAD: 0, CAR: 13, SKY: 10}


@pytest.fixture
def hand_made(tmp_path):
    """Image A: 60 road, 30 car, 10 unlabeled; image B: 50 road, 50 sky."""
    a = np.array([ROAD] * 60 + [CAR] * 30 + [UNLABELED] * 10, np.uint8).reshape(10, 10)
    b = np.array([ROAD] * 50 + [SKY] * 50, np.uint8).reshape(10, 10)
    paths = []
    for name, ids in (("a", a), ("b", b)):
        path = tmp_path / "gt" / f"city_000000_00000{len(paths)}_gtFine_labelIds.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(ids).save(path)
        paths.append(str(path))
    return paths


def test_enet_formula_on_a_hand_made_label_set(hand_made):
    weights = class_weights(hand_made, method="enet", progress=False)
    assert weights.dtype == torch.float32 and weights.shape == (19,)
    counts = {0: 110, 13: 30, 10: 50}  # the 10 unlabeled pixels are not counted
    for train_id in range(19):
        p = counts.get(train_id, 0) / 190
        assert weights[train_id].item() == pytest.approx(1 / math.log(1.02 + p), rel=1e-6)
    assert weights[13] > weights[10] > weights[0]  # rarer classes weigh more


def test_median_frequency_formula(hand_made):
    weights = class_weights(hand_made, method="median", progress=False)
    # f_c = pixels of c / labelled pixels of the images containing c
    freq = {0: 110 / 190, 13: 30 / 90, 10: 50 / 100}
    median = float(np.median(list(freq.values())))
    for train_id in range(19):
        expected = median / freq[train_id] if train_id in freq else 0.0
        assert weights[train_id].item() == pytest.approx(expected, rel=1e-6)


def test_uniform_and_bad_method(hand_made):
    assert torch.equal(class_weights(hand_made, method="uniform", num_classes=5), torch.ones(5))
    with pytest.raises(RtsegError, match="'inverse' is not one of enet, median, uniform"):
        class_weights(hand_made, method="inverse")


def test_train_id_pngs_are_used_as_they_are(tmp_path, hand_made):
    from rtseg.data.labels import LABEL_TO_TRAIN

    train_paths = []
    for path in hand_made:
        out = tmp_path / os.path.basename(path).replace("labelIds", "labelTrainIds")
        Image.fromarray(LABEL_TO_TRAIN[np.array(Image.open(path))]).save(out)
        train_paths.append(str(out))
    torch.testing.assert_close(class_weights(train_paths, progress=False), class_weights(hand_made, progress=False))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("cw")
    generate_synthetic_cityscapes(root, train=3, val=0, test=1, size=(48, 96), seed=4, progress=False)
    return CityscapesDataset(root, "train")


def test_dataset_input_matches_its_label_files_and_workers(dataset):
    from_dataset = class_weights(dataset, progress=False)
    torch.testing.assert_close(from_dataset, class_weights(dataset.label_files, progress=False))
    torch.testing.assert_close(from_dataset, class_weights(dataset, workers=2, progress=False))
    with pytest.raises(RtsegError, match="no label files"):
        class_weights(CityscapesDataset(dataset.root, "test"))


def test_cache_is_used_and_recomputed_when_files_change(tmp_path, monkeypatch):
    generate_synthetic_cityscapes(tmp_path / "data", train=3, val=0, test=0, size=(48, 96), seed=4, progress=False)
    dataset = CityscapesDataset(tmp_path / "data", "train")
    tmp_path = tmp_path / "cache"
    first = class_weights(dataset, cache_dir=tmp_path, progress=False)
    [cache_file] = list(tmp_path.glob("label_counts_train_*.json"))
    cached = json.loads(cache_file.read_text())
    assert cached["split"] == "train" and cached["images"] == 3 and len(cached["pixels"]) == 19

    def no_reading(*args):
        raise AssertionError("labels were read although the cache is valid")

    monkeypatch.setattr(cw, "_count_chunk", no_reading)
    torch.testing.assert_close(class_weights(dataset, cache_dir=tmp_path, method="enet"), first)
    median = class_weights(dataset, cache_dir=tmp_path, method="median")  # same counts serve every method
    assert median.shape == (19,)
    monkeypatch.undo()

    label = dataset.label_files[0]
    ids = np.array(Image.open(label))
    ids[:] = 7  # all road now
    Image.fromarray(ids).save(label)
    os.utime(label, ns=(1, 1))
    changed = class_weights(dataset, cache_dir=tmp_path, progress=False)
    assert not torch.allclose(changed, first)
    assert json.loads(cache_file.read_text())["fingerprint"] != cached["fingerprint"]
