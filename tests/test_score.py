"""``rtseg score``: official file matching and scores (against cityscapesscripts), and its one-line errors."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rtseg.cli import main
from test_metrics import MEAN_KEYS, OFFICIAL_KEYS, make_pair, official_results

CITIES = ("frankfurt", "lindau")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A Cityscapes root (gtFine/val/<city>/) and predictions under pred/, named as methods name them."""
    root = tmp_path_factory.mktemp("cityscapes")
    rng = np.random.default_rng(11)
    sizes = [(64, 128), (37, 53), (48, 96), (64, 128)]
    for index, (height, width) in enumerate(sizes):
        city = CITIES[index % 2]
        name = f"{city}_{index:06d}_{index * 19:06d}"
        pred, labels, instance_ids = make_pair(rng, height, width)
        gt_dir = root / "gtFine" / "val" / city
        gt_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(labels).save(gt_dir / f"{name}_gtFine_labelIds.png")
        Image.fromarray(instance_ids).save(gt_dir / f"{name}_gtFine_instanceIds.png")
        # predictions: nested at any depth, with or without a suffix after the frame name
        pred_dir = root / "pred" / ("nested/deeper" if index % 2 else city)
        pred_dir.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pred).save(pred_dir / (f"{name}_leftImg8bit.png" if index % 3 else f"{name}.png"))
    (root / "gtFine" / "train").mkdir()  # another split: never read when scoring val
    return root


def copy_dataset(dataset: Path, tmp_path: Path) -> Path:
    shutil.copytree(dataset, tmp_path / "data")
    return tmp_path / "data"


def score(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["score", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def score_json(capsys, *argv: str) -> dict:
    code, out, err = score(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def official_on_folder(official, dataset: Path) -> dict:
    """The official evaluator, finding each prediction with its own ``getPrediction``."""
    ground_truth = sorted(str(p) for p in (dataset / "gtFine" / "val").glob("*/*_gtFine_labelIds.png"))
    args = official.CArgs()
    args.predictionPath, args.predictionWalk = str(dataset / "pred"), None
    predictions = [official.getPrediction(args, gt) for gt in ground_truth]
    return official_results(official, predictions, ground_truth)


def assert_json_matches_official(ours: dict, theirs: dict) -> None:
    for key, official_key in OFFICIAL_KEYS.items():
        for name, value in ours[key].items():
            reference = theirs[official_key][name]
            assert value is None if math.isnan(reference) else value == pytest.approx(reference, abs=1e-6), (key, name)
    for key, official_key in MEAN_KEYS.items():
        assert ours[key] == pytest.approx(theirs[official_key], abs=1e-6)


@pytest.mark.parametrize("workers", ["0", "2"])
def test_scores_equal_the_official_evaluator(dataset, official_evaluator, capsys, workers):
    official = official_evaluator
    ours = score_json(capsys, str(dataset / "pred"), "--gt", str(dataset), "--workers", workers)
    assert ours["images"] == 4
    assert set(ours) == {"images", "miou", "miiou", "category_miou", "category_miiou", *OFFICIAL_KEYS}
    assert_json_matches_official(ours, official_on_folder(official, dataset))


def test_ground_truth_given_as_root_split_gtfine_or_plain_folder(dataset, capsys):
    pred = str(dataset / "pred")
    expected = score_json(capsys, pred, "--gt", str(dataset), "--workers", "0")
    for gt in (["--gt", str(dataset), "--split", "val"], ["--gt", str(dataset / "gtFine")],
               ["--gt", str(dataset / "gtFine" / "val")], ["--gt", str(dataset / "gtFine" / "val" / "lindau")]):
        result = score_json(capsys, pred, *gt, "--workers", "0")
        if gt[-1].endswith("lindau"):
            assert result["images"] == 2 and result["miou"] != expected["miou"]  # a subset: other scores
        else:
            assert result == expected


def test_table_output_names_every_class(dataset, capsys):
    code, out, err = score(capsys, str(dataset / "pred"), "--gt", str(dataset), "--workers", "0")
    assert code == 0 and "4 images" in out
    for name in ("road", "bicycle", "human", "vehicle", "class iIoU", "category iIoU"):
        assert name in out
    assert "score" in err  # the progress bar goes to stderr


def test_without_instance_files_iiou_is_null(dataset, tmp_path, capsys):
    data = copy_dataset(dataset, tmp_path)
    for instance in data.rglob("*_gtFine_instanceIds.png"):
        instance.unlink()
    code, out, err = score(capsys, str(data / "pred"), "--gt", str(data), "--json", "--workers", "0")
    result = json.loads(out)
    assert code == 0 and result["miiou"] is None and result["miou"] is not None
    assert "iIoU scores are undefined" in err


def _break(data: Path, how: str) -> str:
    """Damages a copy of the dataset; returns the path the error message must name."""
    gt = data / "gtFine" / "val" / "lindau" / "lindau_000001_000019_gtFine_labelIds.png"
    pred = next((data / "pred").rglob("lindau_000001_000019*.png"))
    if how == "prediction id":
        pixels = np.array(Image.open(pred))
        pixels[0, 0] = 40
        Image.fromarray(pixels).save(pred)
        return str(pred)
    if how == "size":
        Image.fromarray(np.zeros((10, 12), np.uint8)).save(pred)
        return str(pred)
    if how == "missing":
        pred.unlink()
        return str(gt)
    if how == "unreadable":
        pred.write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
        return str(pred)
    if how == "colour":
        Image.fromarray(np.zeros((37, 53, 3), np.uint8)).save(pred)
        return str(pred)
    if how == "duplicate":
        shutil.copy(pred, data / "pred" / "lindau_000001_000019_color.png")
        return str(gt)
    if how == "ground-truth id":
        pixels = np.array(Image.open(gt))
        pixels[-1, -1] = 200
        Image.fromarray(pixels).save(gt)
        return str(gt)
    if how == "one instance file missing":
        gt.with_name("lindau_000001_000019_gtFine_instanceIds.png").unlink()
        return str(gt)
    raise ValueError(how)


@pytest.mark.parametrize("how, message", [
    ("prediction id", "holds id 40, not a Cityscapes label id"),
    ("size", "is 12x10 but its ground truth"),
    ("missing", "no prediction for ground truth"),
    ("unreadable", "cannot read prediction"),
    ("colour", "not a single-channel id PNG"),
    ("duplicate", "2 predictions for ground truth"),
    ("ground-truth id", "holds id 200"),
    ("one instance file missing", "has no instance file"),
])
def test_bad_files_give_one_line_naming_the_file(dataset, tmp_path, capsys, how, message):
    data = copy_dataset(dataset, tmp_path)
    culprit = _break(data, how)
    code, out, err = score(capsys, str(data / "pred"), "--gt", str(data), "--json", "--workers", "0")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("rtseg score: error: ")
    assert message in err and culprit in err


def test_worker_errors_surface_the_same_way(dataset, tmp_path, capsys):
    data = copy_dataset(dataset, tmp_path)
    culprit = _break(data, "prediction id")
    code, _, err = score(capsys, str(data / "pred"), "--gt", str(data), "--json", "--workers", "2")
    assert code == 2 and err.count("\n") == 1 and culprit in err and "holds id 40" in err


@pytest.mark.parametrize("setup, message", [
    ("empty", "no *_gtFine_labelIds.png files under"),
    ("no such folder", "does not exist"),
    ("split of a plain folder", "needs a Cityscapes root with gtFine/"),
    ("unknown split", "has no split folder"),
    ("prediction folder missing", "prediction folder"),
])
def test_bad_folders_are_refused(dataset, tmp_path, capsys, setup, message):
    pred, gt, extra = str(dataset / "pred"), str(dataset), []
    if setup == "empty":
        (tmp_path / "gtFine" / "val").mkdir(parents=True)
        gt = str(tmp_path)
    elif setup == "no such folder":
        gt = str(tmp_path / "nowhere")
    elif setup == "split of a plain folder":
        gt, extra = str(dataset / "gtFine" / "val"), ["--split", "val"]
    elif setup == "unknown split":
        extra = ["--split", "test"]
    elif setup == "prediction folder missing":
        pred = str(tmp_path / "no-predictions")
    code, out, err = score(capsys, pred, "--gt", gt, *extra, "--json")
    assert code == 2 and out == "" and err.count("\n") == 1 and message in err
