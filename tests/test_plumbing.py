"""The shared steps every path goes through: image in, labels out, files, settings, errors, threads."""

from __future__ import annotations

import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import rtseg
from rtseg.cli import main
from rtseg.data.io import list_images, read_image, read_label_png, write_png
from rtseg.data.processing import image_to_input, logits_to_labels
from rtseg.data.transforms import eval_transforms
from rtseg.errors import RtsegError
from rtseg.inference import Backend, Predictor
from rtseg.profiling.speed import TimingProtocol
from rtseg.runtime import autocast, resolve_device, torch_threads

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def test_image_to_input_is_what_the_datasets_evaluation_transforms_give():
    from torchvision import tv_tensors

    image = np.random.default_rng(0).integers(0, 256, (37, 61, 3), dtype=np.uint8)
    for size in (None, (24, 40)):
        got = image_to_input(image, MEAN, STD, size)
        chw = tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1).contiguous())
        expected, _ = eval_transforms(size, MEAN, STD)(chw, None)
        assert got.shape == (1, 3, *(size or image.shape[:2]))
        torch.testing.assert_close(got[0], expected.as_subclass(torch.Tensor), rtol=0, atol=1e-6)


def test_image_to_input_reads_paths_and_refuses_other_things(tmp_path):
    image = np.random.default_rng(1).integers(0, 256, (8, 12, 3), dtype=np.uint8)
    path = write_png(tmp_path / "a.png", image)
    torch.testing.assert_close(image_to_input(path, MEAN, STD), image_to_input(image, MEAN, STD))
    with pytest.raises(RtsegError, match="HxWx3 uint8"):
        image_to_input(image.astype(np.float32), MEAN, STD)


def test_logits_to_labels_upsamples_before_the_argmax_and_maps_ids():
    logits = torch.randn(2, 5, 6, 10)
    expected = F.interpolate(logits, size=(12, 20), mode="bilinear", align_corners=False).argmax(1)
    assert torch.equal(logits_to_labels(logits, (12, 20)), expected)
    assert torch.equal(logits_to_labels(logits), logits.argmax(1))
    table = np.array([7, 8, 11, 12, 13], np.uint8)
    assert torch.equal(logits_to_labels(logits, None, table), torch.from_numpy(table).long()[logits.argmax(1)])
    half = logits.to(torch.float16)  # reduced-precision logits are compared in float32
    assert torch.equal(logits_to_labels(half, (12, 20)),
                       F.interpolate(half.float(), size=(12, 20), mode="bilinear").argmax(1))


def test_png_round_trip_and_one_line_errors(tmp_path):
    rgb = np.random.default_rng(2).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    ids16 = np.arange(35, dtype=np.uint16).reshape(5, 7) * 1000
    assert np.array_equal(read_image(write_png(tmp_path / "rgb.png", rgb)), rgb)
    assert np.array_equal(read_label_png(write_png(tmp_path / "ids.png", ids16)), ids16)
    with pytest.raises(RtsegError, match="3 channels"):
        read_label_png(tmp_path / "rgb.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(RtsegError, match="cannot read image .*broken.png"):
        read_image(tmp_path / "broken.png")
    with pytest.raises(RtsegError, match="does not exist"):
        read_image(tmp_path / "missing.png")
    assert [rel.as_posix() for _, rel in list_images(tmp_path)] == ["broken.png", "ids.png", "rgb.png"]
    assert not list(tmp_path.glob(".*"))  # no temporary file left by the atomic writes


def test_backend_checks_and_names_the_alternative():
    assert Backend().check() == Backend("eager", "fp32", "cpu")
    with pytest.raises(RtsegError, match="onnxruntime"):
        Backend("eager", "int8").check()
    with pytest.raises(RtsegError, match="engine 'tensorrt' is not one of"):
        Backend("tensorrt").check()
    with pytest.raises(RtsegError, match="threads must be positive"):
        Backend(threads=0).check()
    assert Backend("onnxruntime", "int8").label == "onnxruntime int8"
    assert TimingProtocol().runs == 20


def test_torch_threads_sets_for_the_block_and_restores():
    before = torch.get_num_threads()
    with torch_threads(1) as inside:
        assert inside == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(1):
        raise RuntimeError("restored on errors too")
    assert torch.get_num_threads() == before


def test_predictor_leaves_the_callers_thread_count_alone():
    model = rtseg.create_model("skipnet-mobilenet_v1", width=0.25).eval()
    before = torch.get_num_threads()
    image = np.zeros((32, 64, 3), np.uint8)
    labels = Predictor(model, Backend(threads=1))(image)
    assert labels.shape == (32, 64) and torch.get_num_threads() == before


def test_runtime_devices_and_autocast():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(RtsegError, match="not a device"):
        resolve_device("gpu0")
    with autocast("bf16", "cpu"):
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.bfloat16
    with autocast("fp32", "cpu"):
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.float32


def test_checkpoints_carry_the_normalisation(tmp_path):
    from rtseg.checkpoint import FORMAT, VERSION, save_atomic
    from rtseg.models import load_model

    model = rtseg.create_model("enet", num_classes=3)
    save_atomic({"format": FORMAT, "version": VERSION, "model_name": "enet", "num_classes": 3, "model_options": {},
                 "mean": list(MEAN), "std": list(STD), "model": model.state_dict()}, tmp_path / "c.pt")
    loaded, _ = load_model(tmp_path / "c.pt")
    assert (loaded.mean, loaded.std) == (MEAN, STD)


def test_the_old_engine_package_still_imports_with_a_warning():
    sys.modules.pop("rtseg.engine", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import rtseg.engine  # noqa: F401
        import rtseg.engine.trainer as old_trainer
    import rtseg.training.trainer as new_trainer

    assert old_trainer is new_trainer
    assert any(issubclass(w.category, DeprecationWarning) and "rtseg.training" in str(w.message) for w in caught)


def test_errors_are_one_line_unless_a_traceback_is_asked_for(tmp_path, capsys, monkeypatch):
    args = ["evaluate", "--checkpoint", str(tmp_path / "missing.pt"), "--data", str(tmp_path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err
    assert main(["--traceback", *args]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "RtsegError" in err
    monkeypatch.setenv("RTSEG_TRACEBACK", "1")
    assert main(args) == 2
    assert "Traceback" in capsys.readouterr().err


def test_internal_failures_keep_their_cause(tmp_path):
    from rtseg.models.weights import read_state_dict

    (tmp_path / "w.pth").write_bytes(b"not a torch file")
    with pytest.raises(RtsegError) as info:
        read_state_dict(tmp_path / "w.pth")
    assert info.value.__cause__ is not None  # --traceback can show what really went wrong


def test_the_command_list_loads_without_torch():
    code = ("import sys, rtseg.cli; rtseg.cli.build_parser(); "
            "print(sorted(m for m in ('torch', 'timm', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_fast_png_decoder_gives_pillows_pixels(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(3)
    cases = {"rgb.png": rng.integers(0, 256, (9, 13, 3), dtype=np.uint8),   # libspng
             "grey8.png": rng.integers(0, 34, (9, 13), dtype=np.uint8),     # libspng
             "grey16.png": rng.integers(0, 34000, (9, 13), dtype=np.uint16),  # OpenCV (pyspng's 16-bit is wrong)
             "rgba.png": rng.integers(0, 256, (9, 13, 4), dtype=np.uint8)}  # OpenCV, alpha dropped
    for name, array in cases.items():
        path = write_png(tmp_path / name, array)
        with Image.open(path) as image:
            reference = np.array(image.convert("RGB") if array.ndim == 3 else image)
        got = read_image(path) if array.ndim == 3 else read_label_png(path)
        assert got.dtype == reference.dtype and np.array_equal(got, reference), name
    broken = tmp_path / "truncated.png"
    broken.write_bytes((tmp_path / "rgb.png").read_bytes()[:60])
    with pytest.raises(RtsegError, match="cannot read image .*truncated.png"):
        read_image(broken)


@pytest.mark.parametrize("layout", ["cityscapes", "camvid", "folder"])
def test_int8_calibration_reads_a_datasets_images_never_its_labels(tmp_path, layout):
    from rtseg.data.synthetic import generate_synthetic
    from rtseg.inference.calibration import find_images

    generate_synthetic(tmp_path, layout=layout, train=2, val=1, test=0, size=(32, 64), progress=False)
    found = find_images(tmp_path)
    assert len(found) == 2  # the train split's two images
    assert all("annot" not in p.parent.name and "gtFine" not in p.parts and "labels" not in p.parts for p in found)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("layout", [torch.contiguous_format, torch.channels_last])
def test_class_indices_is_argmax_exactly_with_ties_and_nan(dtype, layout):
    from rtseg.data.processing import class_indices

    torch.manual_seed(0)
    scores = torch.randint(0, 3, (2, 19, 16, 24)).to(dtype)  # three values over 19 classes: ties everywhere
    scores[0, 7, 1, 1] = float("nan")
    scores[1, 3:, 2, 2] = float("nan")
    scores = scores.contiguous(memory_format=layout)
    assert torch.equal(class_indices(scores), scores.argmax(1))
    assert class_indices(scores)[0, 1, 1] == 7 and class_indices(scores)[1, 2, 2] == 3  # NaN wins, first one
