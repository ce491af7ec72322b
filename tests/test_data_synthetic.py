"""The synthetic Cityscapes: exact official layout and file formats, instance encoding,
determinism, and acceptance by the official cityscapesscripts evaluation."""

import glob
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from cityscapesscripts.helpers.labels import id2label
from PIL import Image

from rtseg.cli import main
from rtseg.data.synthetic import CITYSCAPES_CITIES, generate_synthetic_cityscapes
from rtseg.errors import RtsegError

SIZE = (128, 256)
NAME = re.compile(r"^(?P<city>[a-z-]+)_(?P<seq>\d{6})_(?P<frame>\d{6})_leftImg8bit\.png$")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    written = generate_synthetic_cityscapes(root, train=4, val=2, test=2, train_extra=1, coarse=True,
                                            size=SIZE, seed=7, cities=2, progress=False)
    return root, written


def _ids(path):
    return np.array(Image.open(path))


def test_layout_and_naming_match_the_official_dataset(synth):
    root, written = synth
    assert {k: len(v) for k, v in written.items()} == {"train": 4, "val": 2, "test": 2, "train_extra": 1}
    for split, paths in written.items():
        assert sorted(map(str, paths)) == sorted(glob.glob(f"{root}/leftImg8bit/{split}/*/*"))
        for path in paths:
            match = NAME.match(path.name)
            assert match, path.name
            assert path.parent.name == match["city"] and match["city"] in CITYSCAPES_CITIES[split]
            assert match["frame"] == "000019"
            stem = path.name[: -len("_leftImg8bit.png")]
            fine = [root / "gtFine" / split / match["city"] / f"{stem}_gtFine_{k}.png"
                    for k in ("labelIds", "instanceIds", "color")]
            coarse = [root / "gtCoarse" / split / match["city"] / f"{stem}_gtCoarse_{k}.png"
                      for k in ("labelIds", "instanceIds", "color")]
            # real Cityscapes: gtFine for train/val/test, gtCoarse for train/val/train_extra only
            assert all(p.is_file() for p in fine) == (split != "train_extra")
            assert all(p.is_file() for p in coarse) == (split != "test")
    # two cities per split, sequences numbered per city
    assert sorted(p.name for p in (root / "leftImg8bit" / "train").iterdir()) == ["aachen", "bochum"]
    assert (root / "leftImg8bit/train/aachen/aachen_000001_000019_leftImg8bit.png").is_file()
    assert not list(root.rglob("*.tmp"))


def test_file_formats_are_the_official_ones(synth):
    root, written = synth
    image = Image.open(written["train"][0])
    assert image.mode == "RGB" and image.size == (SIZE[1], SIZE[0])
    stem = str(written["train"][0]).replace("leftImg8bit/", "gtFine/").replace("_leftImg8bit.png", "_gtFine_")
    assert Image.open(stem + "labelIds.png").mode == "L"
    assert Image.open(stem + "instanceIds.png").mode in ("I;16", "I")  # 16-bit like the official files
    color = Image.open(stem + "color.png")
    assert color.mode == "RGBA"
    # colours from the official table of cityscapesscripts
    ids = _ids(stem + "labelIds.png")
    rgba = np.array(color)
    expected = np.array([id2label[int(i)].color for i in range(34)], np.uint8)[ids]
    np.testing.assert_array_equal(rgba[..., :3], expected)
    assert (rgba[..., 3] == 255).all()


def test_instances_are_encoded_as_id_times_1000_plus_k_with_crowds(synth):
    root, _ = synth
    seen_instance_classes, crowd_pixels = set(), 0
    for label_path in glob.glob(f"{root}/gtFine/[tv][ra]*/*/*_labelIds.png"):
        labels = _ids(label_path).astype(np.int64)
        inst = _ids(label_path.replace("labelIds", "instanceIds")).astype(np.int64)
        big = inst >= 1000
        np.testing.assert_array_equal(inst[big] // 1000, labels[big])
        np.testing.assert_array_equal(inst[~big], labels[~big])
        assert all(id2label[int(v)].hasInstances for v in np.unique(labels[big]))
        seen_instance_classes |= {id2label[int(v)].name for v in np.unique(labels[big])}
        crowd_pixels += int(np.isin(inst[~big], [i for i in range(34) if id2label[i].hasInstances]).sum())
        for value in np.unique(inst[big]):
            assert value % 1000 < 1000
    assert {"person", "car"} <= seen_instance_classes
    assert crowd_pixels > 0  # crowd regions carry the plain class id


def test_every_evaluator_rule_is_exercised(synth):
    root, _ = synth
    ids = set()
    for path in glob.glob(f"{root}/gtFine/train/*/*_labelIds.png") + glob.glob(f"{root}/gtFine/val/*/*_labelIds.png"):
        ids |= set(np.unique(_ids(path)).tolist())
    names = {id2label[i].name for i in ids}
    assert {"ego vehicle", "rectification border", "road", "sidewalk", "building", "pole", "vegetation",
            "sky", "person", "car"} <= names
    assert any(id2label[i].ignoreInEval for i in ids if i > 3)  # static, parking, caravan, ...
    assert sum(not id2label[i].ignoreInEval for i in ids) >= 15


def test_test_split_has_dummy_labels_like_the_official_one(synth):
    root, _ = synth
    for path in glob.glob(f"{root}/gtFine/test/*/*_labelIds.png"):
        assert set(np.unique(_ids(path)).tolist()) <= {0, 1, 2, 3}
        assert set(np.unique(_ids(path.replace("labelIds", "instanceIds"))).tolist()) <= {0, 1, 2, 3}


def test_coarse_labels_are_a_shrunk_subset_of_the_fine_ones(synth):
    root, _ = synth
    for fine_path in glob.glob(f"{root}/gtFine/train/*/*_labelIds.png"):
        fine = _ids(fine_path)
        coarse = _ids(fine_path.replace("gtFine", "gtCoarse"))
        labelled = coarse > 0
        np.testing.assert_array_equal(coarse[labelled], fine[labelled])
        assert 0.3 * fine.size < labelled.sum() < (fine > 0).sum()


def test_same_seed_gives_identical_files_and_prefixes_are_stable(synth, tmp_path):
    root, _ = synth
    a = generate_synthetic_cityscapes(tmp_path / "a", train=2, val=1, test=0, size=SIZE, seed=7, cities=2,
                                      progress=False, workers=2)
    # workers and count change nothing: same bytes as the fixture's first images
    for split in ("train", "val"):
        for path in a[split]:
            rel = path.relative_to(tmp_path / "a")
            assert path.read_bytes() == (root / rel).read_bytes()
            gt = str(rel).replace("leftImg8bit", "gtFine", 1).replace("_leftImg8bit", "_gtFine_instanceIds")
            assert (tmp_path / "a" / gt).read_bytes() == (root / gt).read_bytes()
    b = generate_synthetic_cityscapes(tmp_path / "b", train=1, val=0, test=0, size=SIZE, seed=8, cities=2,
                                      progress=False)
    assert b["train"][0].read_bytes() != a["train"][0].read_bytes()


def test_official_evaluation_accepts_the_ground_truth(synth, tmp_path, monkeypatch, official_evaluator):
    official = official_evaluator
    root, _ = synth
    predictions = tmp_path / "pred"
    predictions.mkdir()
    for path in glob.glob(f"{root}/gtFine/[tv][ra]*/*/*_gtFine_labelIds.png"):
        shutil.copy(path, predictions / Path(path).name.replace("_gtFine_labelIds", "_pred"))
    args = official.args
    for name, value in {"groundTruthSearch": f"{root}/gtFine/*/*/*_gtFine_labelIds.png",
                        "predictionPath": str(predictions), "predictionWalk": None, "evalInstLevelScore": True,
                        "evalPixelAccuracy": False, "quiet": True, "JSONOutput": False}.items():
        monkeypatch.setattr(args, name, value, raising=False)
    ground_truth = [p for p in sorted(glob.glob(args.groundTruthSearch)) if "/test/" not in p]
    assert len(ground_truth) == 6
    result = official.evaluateImgLists([official.getPrediction(args, gt) for gt in ground_truth], ground_truth, args)
    assert result["averageScoreClasses"] == pytest.approx(1.0)
    assert result["averageScoreInstClasses"] == pytest.approx(1.0)
    assert result["averageScoreCategories"] == pytest.approx(1.0)
    assert result["averageScoreInstCategories"] == pytest.approx(1.0)
    scored = [name for name, v in result["classScores"].items() if not np.isnan(v)]
    assert len(scored) >= 15


def test_command_writes_the_dataset_and_reports_bad_options(tmp_path, capsys):
    assert main(["synth", str(tmp_path / "out"), "--train", "1", "--val", "1", "--test", "0",
                 "--size", "32x64", "--seed", "3"]) == 0
    assert len(list((tmp_path / "out" / "leftImg8bit").rglob("*.png"))) == 2
    assert "wrote 2 images" in capsys.readouterr().out
    assert main(["synth", str(tmp_path / "small"), "--size", "16x16"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rtseg synth: error:") and "16x16" in err and "\n" not in err
    with pytest.raises(RtsegError, match="train=-1"):
        generate_synthetic_cityscapes(tmp_path / "x", train=-1, progress=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(RtsegError, match="not a folder"):
        generate_synthetic_cityscapes(tmp_path / "file", train=1, progress=False)


def test_preview_grid_shows_images_beside_their_colour_labels(synth, tmp_path):
    from rtseg.data.labels import TRAIN_COLORS
    from rtseg.data.preview import save_preview

    root, _ = synth
    out = save_preview(root, tmp_path / "grid.png", count=4, columns=2, height=32)
    grid = np.array(Image.open(out).convert("RGB"))
    pair = 64 + 4 + 64
    assert grid.shape == (2 * 32 + 6, 2 * pair + 12, 3)
    # the right half of each pair holds only Cityscapes train-id colours (and black for ignore)
    labels = grid[:32, 68:132].reshape(-1, 3)
    palette = {tuple(c) for c in TRAIN_COLORS[list(range(19)) + [255]].tolist()}
    assert {tuple(c) for c in np.unique(labels, axis=0).tolist()} <= palette
