"""Train, evaluate, predict, score, benchmark and report on a folder dataset and on CamVid: the
dataset's classes, colours and ids everywhere, num_classes never typed, scores that agree."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from PIL import Image

from rtseg.benchmark import BenchmarkSettings, QuickSchedule, run_benchmark
from rtseg.benchmark.selection import Entry
from rtseg.checkpoint import load_checkpoint
from rtseg.cli import main
from rtseg.data.camvid import CLASS_NAMES as CAMVID_CLASSES
from rtseg.data.synthetic import FOLDER_SPEC, generate_synthetic
from rtseg.profiling.speed import TimingProtocol

SINGLE_THREAD = True
TRAIN = ["--set", "model.pretrained=null", "--set", "model.options={width: 0.25}", "--set", "data.crop=[48, 96]",
         "--set", "data.val_size=null", "--set", "data.workers=0", "--set", "train.batch_size=2",
         "--set", "train.iterations=2", "--set", "train.progress=false", "--set", "data.scale=[0.5, 2.0]",
         "--set", "data.color_jitter=0.2"]


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory):
    """``rtseg train`` on a synthetic folder dataset (reduce_zero_label, JPEGs, two sizes)."""
    out = tmp_path_factory.mktemp("run")
    synthetic = "data.synthetic={train: 4, val: 2, size: [64, 128], layout: folder}"
    assert main(["train", *TRAIN, "--set", "data.root=null", "--set", synthetic, "--out", str(out)]) == 0
    return out / "synthetic", out / "best.pt"


def test_the_checkpoint_carries_the_dataset(folder_run):
    _, checkpoint = folder_run
    state = load_checkpoint(checkpoint)
    assert state["num_classes"] == len(FOLDER_SPEC.classes)
    assert state["dataset"]["class_names"] == list(FOLDER_SPEC.classes)
    assert state["config"]["model"]["num_classes"] is None  # never typed: the dataset set it
    metrics = (checkpoint.parent / "metrics.csv").read_text().splitlines()[0]
    assert metrics.split(",")[4:7] == ["miou", "pixel_accuracy", "mean_accuracy"]


def test_predicted_class_ids_scored_equal_evaluate(folder_run, tmp_path, capsys):
    root, checkpoint = folder_run
    preds = tmp_path / "preds"
    assert main(["predict", "--checkpoint", str(checkpoint), "--input", str(root / "images" / "val"),
                 "--output", str(preds), "--device", "cpu"]) == 0
    assert "classids PNGs (synthetic-streets)" in capsys.readouterr().out
    assert sorted(p.name for p in preds.iterdir()) == ["street.000000.png", "street.000001.png"]
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(root), "--device", "cpu",
                 "--workers", "0", "--json"]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert main(["score", str(preds), "--gt", str(root), "--workers", "0", "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    assert evaluated["dataset"] == scored["dataset"] == FOLDER_SPEC.name and evaluated["images"] == 2
    for key in ("miou", "pixel_accuracy", "mean_accuracy", "class_iou"):
        assert evaluated[key] == scored[key]


def test_predict_formats_use_the_dataset_ids_and_colours(folder_run, tmp_path):
    root, checkpoint = folder_run
    image = root / "images" / "val" / "street.000001.jpg"
    outputs = {}
    for fmt in ("classids", "labelids", "color"):
        assert main(["predict", "--checkpoint", str(checkpoint), "--input", str(image), "--output",
                     str(tmp_path / fmt), "--format", fmt, "--device", "cpu"]) == 0
        outputs[fmt] = np.asarray(Image.open(tmp_path / fmt / "street.000001.png"))
    classes = outputs["classids"]
    assert classes.shape == (48, 96) and classes.max() < len(FOLDER_SPEC.classes)
    np.testing.assert_array_equal(outputs["labelids"], classes + 1)  # reduce_zero_label: stored = class + 1
    np.testing.assert_array_equal(outputs["color"], np.asarray(FOLDER_SPEC.palette, np.uint8)[classes])


def test_evaluating_on_a_dataset_of_other_classes_is_refused(folder_run, tmp_path, capsys):
    _, checkpoint = folder_run
    camvid = tmp_path / "camvid"
    generate_synthetic(camvid, layout="camvid", train=1, val=1, test=0, size=(32, 64), progress=False)
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(camvid), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "predicts 8 classes (synthetic-streets)" in err and "camvid with 11 classes" in err


def test_benchmark_and_report_on_camvid(tmp_path):
    root = tmp_path / "camvid"
    generate_synthetic(root, layout="camvid", train=4, val=2, test=1, size=(32, 64), progress=False)
    schedule = QuickSchedule(iterations=2, batch_size=2, real_size=(32, 64), real_val_limit=2, speed_size=(32, 64))
    result = run_benchmark([Entry("skipnet-mobilenet_v1", options={"width": 0.25})], tmp_path / "out",
                           BenchmarkSettings(data=root, quick=True, schedule=schedule, progress=False, device="cpu",
                                             protocol=TimingProtocol(runs=2, max_warmup=2, measure_peak=False)))
    assert result.failures == []
    model = result.results["models"][0]
    assert list(model["evaluate"]["class_iou"]) == list(CAMVID_CLASSES)
    assert model["cost"]["params"] > 0 and result.results["settings"]["dataset"]["name"] == "camvid"
    markdown = (tmp_path / "out" / "report.md").read_text()
    assert f"Data: camvid at {root}" in markdown and "| Model | mIoU | Pixel accuracy | Mean accuracy | Sky |" in markdown
    assert "published" not in markdown.replace("published figures are Cityscapes'", "")
    assert not re.search(r"Table [13]", markdown)
    header = (tmp_path / "out" / "results.csv").read_text().splitlines()[0]
    assert "iou_Bicyclist" in header and "pixel_accuracy" in header and "miiou" not in header
    assert (tmp_path / "out" / "images" / "qualitative.png").is_file()
