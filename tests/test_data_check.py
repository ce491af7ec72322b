"""``rtseg data check`` and the check training starts with: each bad file named with its value,
in file order whatever the workers, class frequencies and weights equal to a count done here."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from PIL import Image

from rtseg.cli import main
from rtseg.data.check import check_dataset, check_split
from rtseg.data.layouts import open_dataset
from rtseg.data.synthetic import generate_synthetic
from rtseg.errors import RtsegError
from rtseg.training import load_config, train

SINGLE_THREAD = True


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    roots = {}
    for layout in ("cityscapes", "camvid", "folder"):
        root = tmp_path_factory.mktemp(layout)
        generate_synthetic(root, layout=layout, train=5, val=2, test=1 if layout != "cityscapes" else 0,
                           size=(64, 128) if layout == "folder" else (32, 64), seed=2, progress=False)
        roots[layout] = root
    return roots


def copy(pristine, layout, tmp_path):
    shutil.copytree(pristine[layout], tmp_path / layout)
    return tmp_path / layout


def test_clean_datasets_pass_with_frequencies_and_weights_of_their_own(pristine):
    for layout, root in pristine.items():
        dataset = open_dataset(root)
        report = check_dataset(dataset, workers=0, progress=False)
        assert report.ok and report.layout == layout
        train = report.splits[0]
        assert train.split == "train" and train.images == train.labels == 5 and train.problems == []
        # an independent count: every label decoded here, 255 dropped
        counts = np.zeros(dataset.info.num_classes, np.int64)
        for sample in dataset.samples("train"):
            ids = dataset.read_label(sample.label)
            counts += np.bincount(ids[ids != 255], minlength=dataset.info.num_classes)
        assert train.pixels == counts.tolist()
        share = counts / counts.sum()
        assert train.weights("enet") == pytest.approx([1 / math.log(1.02 + p) for p in share], rel=1e-5)


def break_files(root, layout):
    """Damages a copy of a dataset: returns (path, text the report must hold) per problem, in file order."""
    dataset = open_dataset(root)
    samples = dataset.samples("train")
    problems = []
    stored = np.array(Image.open(samples[1].label))
    stored[0, 0], stored[1, 1] = 200, 201
    if layout == "folder":  # keep the palette: the indices are the ids
        with Image.open(samples[1].label) as image:
            palette = image.getpalette()
        image = Image.fromarray(stored, mode="P")
        image.putpalette(palette)
        image.save(samples[1].label)
    else:
        Image.fromarray(stored).save(samples[1].label)
    problems.append((samples[1].label, "200, 201"))
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(samples[2].label)
    problems.append((samples[2].label, "is 10x10 but its image"))
    with open(samples[3].image, "r+b") as handle:
        handle.truncate(300)
    problems.append((samples[3].image, "cannot read image"))
    return samples, problems


@pytest.mark.parametrize("layout", ["cityscapes", "camvid", "folder"])
@pytest.mark.parametrize("workers", [0, 2])
def test_every_bad_file_is_named_in_order_whatever_the_workers(pristine, tmp_path, layout, workers):
    root = copy(pristine, layout, tmp_path)
    samples, expected = break_files(root, layout)
    report = check_split(open_dataset(root), "train", workers=workers, progress=False)
    errors = report.errors
    assert [(e.path, needle in e.message) for e, (_, needle) in zip(errors, expected)] == \
        [(path, True) for path, _ in expected]
    assert all("\n" not in e.message and e.path in e.message for e in errors)


def test_unpaired_files(pristine, tmp_path):
    root = copy(pristine, "camvid", tmp_path)
    image = root / "train" / "0001TP_000004.png"
    image.rename(root / "train" / "lonely.png")
    report = check_split(open_dataset(root), "train", workers=0, progress=False)
    messages = {p.severity: p.message for p in report.problems}
    assert "lonely.png has no label file" in messages["error"]
    assert "0001TP_000004.png has no image in split 'train'" in messages["warning"]


def test_command_prints_file_by_file_and_exits_non_zero(pristine, tmp_path, capsys):
    assert main(["data", "check", str(pristine["folder"]), "--workers", "0"]) == 0
    out = capsys.readouterr().out
    assert "0 errors: OK" in out and "vehicle" in out and "enet w" in out and "48x96" in out
    root = copy(pristine, "folder", tmp_path)
    _, expected = break_files(root, "folder")
    assert main(["data", "check", str(root), "--split", "train", "--workers", "2"]) == 1
    out = capsys.readouterr().out
    for path, needle in expected:
        assert any(path in line and needle in line and line.lstrip().startswith("error:") for line in out.splitlines())
    assert main(["data", "check", str(root), "--json", "--workers", "0"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is False and report["splits"][0]["errors"] == 3 and report["layout"] == "folder"
    assert len(report["splits"][0]["class_weights"]["enet"]) == 8
    assert main(["data", "check", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_training_stops_at_the_first_bad_file_in_one_line(pristine, tmp_path):
    root = copy(pristine, "camvid", tmp_path)
    label = root / "trainannot" / "0001TP_000002.png"
    ids = np.array(Image.open(label))
    ids[3, 3] = 77
    Image.fromarray(ids).save(label)
    config = load_config(None, ["model.pretrained=null", "model.options={width: 0.25}", f"data.root={root}",
                                "data.crop=[32, 64]", "data.val_size=null", "data.workers=0", "train.batch_size=2",
                                "train.iterations=1", "train.progress=false"])
    with pytest.raises(RtsegError) as error:
        train(config, tmp_path / "run")
    message = str(error.value)
    assert str(label) in message and "label id 77" in message and "\n" not in message
    config = load_config(None, ["model.num_classes=19", f"data.root={pristine['camvid']}"])
    with pytest.raises(RtsegError, match="model.num_classes is 19 but the camvid dataset .* has 11 classes"):
        train(config, tmp_path / "run2")


def test_a_clean_check_is_cached_and_redone_when_a_file_changes(pristine, tmp_path, monkeypatch):
    import rtseg.data.check as check

    root = copy(pristine, "folder", tmp_path)
    layout = open_dataset(root)
    first = check_split(layout, "train", workers=0, progress=False, cache_dir=tmp_path / "cache")

    def no_reading(*args, **kwargs):
        raise AssertionError("labels were read although the cached check is valid")

    monkeypatch.setattr(check, "check_files", no_reading)
    assert check_split(layout, "train", workers=0, progress=False, cache_dir=tmp_path / "cache").pixels == first.pixels
    monkeypatch.undo()
    label = layout.samples("train")[0].label
    with Image.open(label) as image:
        image.save(label)  # same content, new modification time: checked again
    import os

    os.utime(label, ns=(1, 1))
    monkeypatch.setattr(check, "check_files", no_reading)
    with pytest.raises(AssertionError, match="were read"):
        check_split(layout, "train", workers=0, progress=False, cache_dir=tmp_path / "cache")
