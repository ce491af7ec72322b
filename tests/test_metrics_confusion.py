"""Scores of any class set (``ConfusionMetrics``) against an independent computation written here
with a numpy confusion matrix, and ``rtseg score`` / ``rtseg evaluate`` on CamVid and folder datasets."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from rtseg.cli import main
from rtseg.data.layouts import open_dataset
from rtseg.data.synthetic import generate_synthetic
from rtseg.errors import RtsegError
from rtseg.metrics import format_table
from rtseg.metrics.confusion import ConfusionMetrics

SINGLE_THREAD = True
NAMES = ("a", "b", "c", "d", "e", "f")


def independent_scores(preds, gts, classes: int) -> dict:
    """mmsegmentation's definitions, from scratch: pixels with ground truth 255 dropped."""
    matrix = np.zeros((classes, classes), np.int64)
    for pred, gt in zip(preds, gts):
        keep = gt != 255
        matrix += np.bincount(gt[keep].astype(np.int64) * classes + pred[keep], minlength=classes * classes
                              ).reshape(classes, classes)
    iou, accuracy = [], []
    for c in range(classes):
        tp, fn, fp = matrix[c, c], matrix[c].sum() - matrix[c, c], matrix[:, c].sum() - matrix[c, c]
        iou.append(tp / (tp + fp + fn) if tp + fp + fn else None)
        accuracy.append(tp / (tp + fn) if tp + fn else None)
    defined = [v for v in iou if v is not None]
    present = [v for v in accuracy if v is not None]
    return {"miou": sum(defined) / len(defined), "pixel_accuracy": np.trace(matrix) / matrix.sum(),
            "mean_accuracy": sum(present) / len(present), "iou": iou}


def random_pairs(seed: int, count: int = 4):
    rng = np.random.default_rng(seed)
    preds, gts = [], []
    for _ in range(count):
        shape = tuple(rng.integers(5, 40, 2))
        gt = rng.choice([0, 1, 2, 4, 255], size=shape, p=[0.3, 0.2, 0.2, 0.2, 0.1]).astype(np.uint8)  # 3 never in gt
        pred = np.where(rng.random(shape) < 0.6, np.where(gt == 255, 0, gt), rng.integers(0, 4, shape)).astype(np.uint8)
        preds.append(pred)
        gts.append(gt)
    return preds, gts


@pytest.mark.parametrize("seed", range(3))
def test_scores_equal_an_independent_confusion_matrix(seed):
    preds, gts = random_pairs(seed)
    metrics = ConfusionMetrics(NAMES)
    for pred, gt in zip(preds, gts):
        metrics.update(pred, gt)
    ours, theirs = metrics.compute(), independent_scores(preds, gts, len(NAMES))
    for key in ("miou", "pixel_accuracy", "mean_accuracy"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-12)
    assert list(ours["class_iou"]) == list(NAMES)
    for name, value in zip(NAMES, theirs["iou"]):
        assert (ours["class_iou"][name] is None) == (value is None)
        if value is not None:
            assert ours["class_iou"][name] == pytest.approx(value, abs=1e-12)
    assert ours["class_iou"]["f"] is None  # never in the ground truth, never predicted: undefined
    assert ours["class_iou"]["d"] == 0.0 and ours["class_accuracy"]["d"] is None  # predicted only: IoU 0


def test_batched_torch_and_per_image_numpy_agree_and_state_adds():
    preds, gts = random_pairs(7, count=3)
    same = [(p[:5, :5], g[:5, :5]) for p, g in zip(preds, gts)]
    batched = ConfusionMetrics(NAMES)
    batched.update(torch.from_numpy(np.stack([p for p, _ in same])), torch.from_numpy(np.stack([g for _, g in same])))
    split = [ConfusionMetrics(NAMES) for _ in same]
    for metric, (p, g) in zip(split, same):
        metric.update(p, g)
    total = ConfusionMetrics(NAMES)
    for metric in split:
        total.add_state(metric.state())
    assert batched.compute() == total.compute() and int(total.images) == 3


@pytest.mark.parametrize("pred, gt, message", [
    (np.full((2, 2), 6), np.zeros((2, 2)), "prediction holds class id 6, outside 0..5"),
    (np.zeros((2, 2)), np.full((2, 2), 7), "ground truth holds class id 7, outside 0..5 and 255"),
    (np.zeros((2, 3)), np.zeros((2, 2)), "differs from ground truth shape"),
])
def test_bad_input_names_the_value(pred, gt, message):
    with pytest.raises(RtsegError, match=message):
        ConfusionMetrics(NAMES).update(pred.astype(np.int64), gt.astype(np.int64))


# --------------------------------------------------------------------------- rtseg score
@pytest.fixture(scope="module", params=["camvid", "folder"])
def scored(request, tmp_path_factory):
    """A dataset and class-id predictions named by the label's stem, with their independent scores."""
    root = tmp_path_factory.mktemp(request.param)
    generate_synthetic(root, layout=request.param, train=1, val=3, test=0, size=(64, 128), seed=4, progress=False)
    layout = open_dataset(root)
    rng = np.random.default_rng(1)
    preds, gts = [], []
    (root / "pred").mkdir()
    for sample in layout.samples("val"):
        gt = layout.read_label(sample.label)
        pred = np.where(rng.random(gt.shape) < 0.7, np.where(gt == 255, 0, gt),
                        rng.integers(0, layout.info.num_classes, gt.shape)).astype(np.uint8)
        Image.fromarray(pred).save(root / "pred" / f"{sample.name}.png")
        preds.append(pred)
        gts.append(gt)
    return root, layout, independent_scores(preds, gts, layout.info.num_classes)


@pytest.mark.parametrize("workers", ["0", "2"])
def test_score_command_on_any_dataset(scored, capsys, workers):
    root, layout, theirs = scored
    assert main(["score", str(root / "pred"), "--gt", str(root), "--json", "--workers", workers]) == 0
    ours = json.loads(capsys.readouterr().out)
    assert set(ours) == {"images", "dataset", "miou", "class_iou", "pixel_accuracy", "mean_accuracy"}
    assert ours["images"] == 3 and ours["dataset"] == layout.info.name
    for key in ("miou", "pixel_accuracy", "mean_accuracy"):
        assert ours[key] == pytest.approx(theirs[key], abs=1e-9)
    assert list(ours["class_iou"]) == list(layout.info.class_names)
    for name, value in zip(layout.info.class_names, theirs["iou"]):
        assert ours["class_iou"][name] == (None if value is None else pytest.approx(value, abs=1e-9))
    assert main(["score", str(root / "pred"), "--gt", str(root), "--workers", "0"]) == 0
    table = capsys.readouterr().out
    assert "pixel accuracy" in table and layout.info.class_names[-1] in table


@pytest.mark.parametrize("how, message", [
    ("size", "is 10x8 but its label"),
    ("class id", "holds class id 60, outside 0.."),
    ("missing", "no prediction for label"),
])
def test_score_bad_predictions_are_one_line(scored, tmp_path, capsys, how, message):
    root, layout, _ = scored
    pred_dir = tmp_path / "pred"
    shutil.copytree(root / "pred", pred_dir)
    name = layout.samples("val")[1].name
    culprit = pred_dir / f"{name}.png"
    if how == "size":
        Image.fromarray(np.zeros((8, 10), np.uint8)).save(culprit)
    elif how == "class id":
        Image.fromarray(np.full((64, 128) if layout.kind == "camvid" else (48, 96), 60, np.uint8)).save(culprit)
    else:
        culprit.unlink()
    assert main(["score", str(pred_dir), "--gt", str(root), "--json", "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and str(culprit) in err


def test_table_of_any_dataset_shows_its_scores():
    metrics = ConfusionMetrics(("road", "sky"))
    metrics.update(np.array([[0, 1], [1, 1]]), np.array([[0, 1], [0, 255]]))
    table = format_table(metrics.compute())
    assert "mIoU" in table and "pixel accuracy" in table and "mean accuracy" in table and "sky" in table
    assert "iIoU" not in table
