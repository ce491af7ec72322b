"""``rtseg train``, ``rtseg evaluate`` and ``rtseg predict`` from the command line.

``rtseg predict --format labelids`` writes what the Cityscapes test server reads; scoring those
files with the official ``cityscapesscripts`` evaluator must give what ``rtseg evaluate``
prints, which checks the file names, the label ids and the evaluation path at once.
"""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rtseg.cli import main

TRAIN = ["--set", "model.pretrained=null", "--set", "model.options={width: 0.25}",
         "--set", "data.crop=[64, 128]", "--set", "data.val_size=[32, 64]", "--set", "data.workers=0",
         "--set", "train.batch_size=4", "--set", "train.iterations=4", "--set", "train.progress=false",
         "--set", "optim.lr=3e-3"]


SINGLE_THREAD = True  # tiny models (see conftest.py)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A synthetic dataset (train, val, test) and a checkpoint trained on it by ``rtseg train``."""
    from rtseg.data.synthetic import generate_synthetic_cityscapes

    root = tmp_path_factory.mktemp("data")
    generate_synthetic_cityscapes(root, train=8, val=2, test=2, size=(64, 128), seed=1, progress=False)
    out = tmp_path_factory.mktemp("run")
    assert main(["train", *TRAIN, "--set", f"data.root={root}", "--out", str(out)]) == 0
    return root, out / "best.pt"


def _official_scores(pred_dir: Path, gt_root: Path, monkeypatch, official) -> dict:
    """Score labelId PNGs with cityscapesscripts' own evaluator (found by its own file matching)."""
    for key, value in (("predictionPath", str(pred_dir)), ("predictionWalk", None), ("quiet", True),
                       ("JSONOutput", False), ("evalInstLevelScore", True), ("evalPixelAccuracy", False)):
        monkeypatch.setattr(official.args, key, value, raising=False)
    gts = sorted(str(p) for p in (gt_root / "gtFine" / "val").glob("*/*_gtFine_labelIds.png"))
    preds = [official.getPrediction(official.args, gt) for gt in gts]
    return official.evaluateImgLists(preds, gts, official.args)


def _same(ours, theirs) -> bool:
    if ours is None:
        return theirs is None or math.isnan(theirs)
    return abs(ours - theirs) <= 1e-6


def test_predict_labelids_scored_officially_equal_rtseg_evaluate(run, tmp_path, capsys, monkeypatch,
                                                                 official_evaluator):
    root, checkpoint = run
    preds = tmp_path / "preds"
    assert main(["predict", "--checkpoint", str(checkpoint), "--input", str(root / "leftImg8bit" / "val"),
                 "--output", str(preds), "--device", "cpu"]) == 0
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(root), "--device", "cpu",
                 "--workers", "0", "--json"]) == 0
    ours = json.loads(capsys.readouterr().out.split("\n", 1)[1])  # after predict's summary line
    for key in ("miou", "miiou", "category_miou", "category_miiou", "class_iou", "class_iiou",
                "category_iou", "category_iiou"):
        assert key in ours
    assert ours["input_size"] == "32x64" and ours["images"] == 2  # the run's data.val_size by default

    theirs = _official_scores(preds, root, monkeypatch, official_evaluator)
    assert _same(ours["miou"], theirs["averageScoreClasses"])
    assert _same(ours["miiou"], theirs["averageScoreInstClasses"])
    assert _same(ours["category_miou"], theirs["averageScoreCategories"])
    assert _same(ours["category_miiou"], theirs["averageScoreInstCategories"])
    for name, value in ours["class_iou"].items():
        assert _same(value, theirs["classScores"][name]), name


def test_predict_formats_and_zip(run, tmp_path):
    root, checkpoint = run
    test_dir = root / "leftImg8bit" / "test"
    inputs = sorted(test_dir.glob("*/*_leftImg8bit.png"))
    assert main(["predict", "--checkpoint", str(checkpoint), "--input", str(test_dir), "--output",
                 str(tmp_path / "submit"), "--zip", "--size", "native", "--device", "cpu"]) == 0
    written = sorted((tmp_path / "submit").rglob("*.png"))
    # official names, in the input's city folders, at the input's size, official label ids
    assert [p.relative_to(tmp_path / "submit") for p in written] == [p.relative_to(test_dir) for p in inputs]
    evaluated_ids = {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33}
    for path, source in zip(written, inputs):
        labels = np.asarray(Image.open(path))
        assert labels.dtype == np.uint8 and labels.shape == Image.open(source).size[::-1]
        assert set(np.unique(labels)) <= evaluated_ids
    with zipfile.ZipFile(tmp_path / "submit" / "predictions.zip") as archive:
        assert sorted(archive.namelist()) == [p.relative_to(tmp_path / "submit").as_posix() for p in written]

    one = inputs[0]
    for fmt in ("color", "overlay", "trainids"):
        assert main(["predict", "--checkpoint", str(checkpoint), "--input", str(one), "--output",
                     str(tmp_path / fmt), "--format", fmt, "--device", "cpu"]) == 0
        picture = np.asarray(Image.open(tmp_path / fmt / one.name))
        assert picture.shape[:2] == Image.open(one).size[::-1]
        assert picture.ndim == (2 if fmt == "trainids" else 3)
    train_ids = np.asarray(Image.open(tmp_path / "trainids" / one.name))
    from rtseg.data.labels import colorize

    assert np.array_equal(np.asarray(Image.open(tmp_path / "color" / one.name)), colorize(train_ids))


def test_evaluate_prints_the_table(run, capsys):
    root, checkpoint = run
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--data", str(root), "--size", "native",
                 "--device", "cpu", "--workers", "0"]) == 0
    out = capsys.readouterr().out
    for text in ("class IoU", "class iIoU", "category IoU", "category iIoU", "road", "vehicle", "input native"):
        assert text in out


@pytest.mark.parametrize("argv, needle", [
    (["evaluate", "--checkpoint", "missing.pt", "--data", "."], "missing.pt"),
    (["predict", "--checkpoint", "{ckpt}", "--input", "nowhere", "--output", "{tmp}/o"], "nowhere"),
    (["train", "--set", "optim.learningrate=1", "--out", "{tmp}/r"], "optim.learningrate"),
    (["train", "{tmp}/absent.yaml"], "absent.yaml"),
    (["train", "--resume", "--out", "{tmp}/empty"], "last.pt"),
])
def test_user_mistakes_are_one_line_errors(run, tmp_path, capsys, argv, needle):
    argv = [a.format(ckpt=run[1], tmp=tmp_path) for a in argv]
    if argv[0] == "train" and not argv[1].endswith(".yaml") and argv[1] != "--resume":
        argv.insert(1, str(Path(__file__).resolve().parents[1] / "configs" / "synthetic_quick.yaml"))
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"rtseg {argv[0]}: error: ") and needle in err and "\n" not in err


def test_predict_with_onnxruntime_equals_eager(run, tmp_path):
    root, checkpoint = run
    images = root / "leftImg8bit" / "val"
    for engine in ("eager", "onnxruntime"):
        assert main(["predict", "--checkpoint", str(checkpoint), "--input", str(images),
                     "--output", str(tmp_path / engine), "--format", "trainids", "--engine", engine,
                     "--size", "native"]) == 0
    eager = sorted((tmp_path / "eager").rglob("*.png"))
    assert eager
    for path in eager:
        ours = np.asarray(Image.open(path))
        theirs = np.asarray(Image.open(tmp_path / "onnxruntime" / path.relative_to(tmp_path / "eager")))
        assert (ours == theirs).mean() >= 0.999


def test_predict_a_video_writes_the_overlay_video(run, tmp_path, capsys):
    import av

    _, checkpoint = run
    source, target = tmp_path / "drive.mp4", tmp_path / "out" / "overlay.mp4"
    with av.open(str(source), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.height, stream.width, stream.pix_fmt = 64, 128, "yuv420p"
        for i in range(4):
            frame = np.full((64, 128, 3), 30 + 40 * i, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    assert main(["predict", "--checkpoint", str(checkpoint), "--input", str(source), "--output", str(target)]) == 0
    assert "wrote 4 frames" in capsys.readouterr().out
    with av.open(str(target)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 4
    assert main(["predict", "--checkpoint", str(checkpoint), "--input", str(source),
                 "--output", str(tmp_path / "frames")]) == 2
    assert "give --output a video file name" in capsys.readouterr().err
