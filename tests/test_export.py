"""ONNX export (checked against PyTorch), int8 export with calibration and mIoU, video round trip."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import pytest
import torch

import rtseg
from rtseg.cli import main
from rtseg.errors import RtsegError
from rtseg.export import Agreement, onnx_input_size, require_agreement
from rtseg.models import SegmentationNetwork

SIZE = "32x64"
TINY = ["--model", "skipnet-mobilenet_v1", "-O", "width=0.25"]


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory):
    from rtseg.data.synthetic import generate_synthetic_cityscapes

    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic_cityscapes(root, train=2, val=2, test=0, size=(32, 64), progress=False)
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A checkpoint in the trainer's format, with non-trivial batch-norm statistics."""
    from rtseg.checkpoint import FORMAT, VERSION, save_atomic

    torch.manual_seed(0)
    model = rtseg.create_model("skipnet-mobilenet_v1", width=0.25)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_var.uniform_(0.5, 1.5)
            module.running_mean.normal_(0, 0.1)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_atomic({"format": FORMAT, "version": VERSION, "model_name": "skipnet-mobilenet_v1", "num_classes": 19,
                 "model_options": {"width": 0.25}, "model": model.state_dict()}, path)
    return path


def test_export_command_checks_and_agrees(tmp_path):
    output = tmp_path / "model.onnx"
    code, out, err = run_cli("export", *TINY, "--size", SIZE, "--output", str(output), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert output.is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]  # no temp left
    assert onnx_input_size(output) == (1, 3, 32, 64) and report["input_shape"] == [1, 3, 32, 64]
    fp32 = report["fp32"]
    assert fp32["argmax_agreement"] >= 0.999 and fp32["max_abs_diff"] < 1e-3 and fp32["images"] == 2

    import onnx
    import onnxruntime as ort

    graph = onnx.load(str(output)).graph
    assert [o.name for o in graph.output] == ["logits", "labels"]
    assert not any(node.op_type == "ConvTranspose" for node in graph.node)  # written as sub-pixel convs
    session = ort.InferenceSession(str(output), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, 32, 64)).astype(np.float32)
    logits, labels = session.run(None, {"image": x})
    assert logits.shape == (1, 19, 32, 64) and labels.shape == (1, 32, 64)
    np.testing.assert_array_equal(labels, logits.argmax(1))


class TinyNet(SegmentationNetwork):
    """Down, class scores, up; ``pin`` crops with Python ints as rtseg's decoders do."""

    def __init__(self, pin: bool = False):
        super().__init__("tiny", 19)
        self.pin = pin
        self.down = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU())
        self.score = torch.nn.Conv2d(8, 19, 1)
        self.up = torch.nn.ConvTranspose2d(19, 19, 4, stride=2, padding=1)

    def forward(self, x):
        y = self.up(self.score(self.down(x)))
        if self.pin:
            y = y[..., :int(x.shape[-2]), :int(x.shape[-1])]
        return y


@pytest.mark.parametrize("pin,free", [(False, (None, 3, None, None)), (True, (None, 3, 32, 48))])
def test_dynamic_export_declares_only_the_axes_that_stay_free(tmp_path, pin, free):
    from rtseg.export import check_images, compare_with_torch, export_onnx

    torch.manual_seed(0)
    model = TinyNet(pin).eval()
    path = export_onnx(model, tmp_path / "m.onnx", (32, 48), dynamic=True)
    assert onnx_input_size(path) == free
    other = (64, 80) if pin is False else (32, 48)
    agreement = compare_with_torch(model, path, check_images(model, other, batch=3, count=1))
    assert agreement.images == 3 and agreement.argmax_agreement == 1.0 and agreement.max_abs_diff < 1e-4


def test_int8_export_from_a_checkpoint_reports_agreement_and_miou(tmp_path, checkpoint, synthetic_root):
    output = tmp_path / "int8.onnx"
    code, out, err = run_cli("export", "--checkpoint", str(checkpoint), "--size", SIZE, "--output", str(output),
                             "--int8", "--calibration-data", str(synthetic_root), "--calibration-images", "2",
                             "--int8-float", "none", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["int8_plan"]["float_kinds"] == [] and not report["int8_plan"]["timings_ms"]
    assert report["model"] == "skipnet-mobilenet_v1" and report["calibration_images"] == 2
    assert report["fp32"]["argmax_agreement"] >= 0.999
    assert 0 < report["int8"]["argmax_agreement"] <= 1 and report["int8"]["max_abs_diff"] > 0
    miou = report["miou"]
    assert miou["images"] == 2 and miou["change"] == pytest.approx(miou["int8"] - miou["fp32"])

    import onnx

    ops = {node.op_type for node in onnx.load(str(output)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ format
    assert sorted(p.name for p in tmp_path.iterdir()) == ["int8.onnx"]


def test_int8_export_measures_which_layers_stay_in_float(tmp_path, checkpoint, synthetic_root):
    code, out, err = run_cli("export", "--checkpoint", str(checkpoint), "--size", SIZE, "--output",
                             str(tmp_path / "int8.onnx"), "--int8", "--calibration-data", str(synthetic_root),
                             "--calibration-images", "2", "--threads", "1")
    assert code == 0, err
    assert "int8 layers: " in out and "timed here: all int8 " in out and "all float " in out


@pytest.mark.parametrize("argv,message", [
    (["--output", "model.txt"], "must end in .onnx"),
    (["--output", "m.onnx", "--int8"], "--int8 needs --calibration-data"),
    (["--output", "m.onnx", "--calibration-data", "x"], "--calibration-data is for --int8"),
    (["--output", "m.onnx", "--checkpoint", "c.pt"], "either --checkpoint or a model name"),
    (["--output", "m.onnx", "--int8-float", "fast conv"], "is not a layer kind"),
])
def test_export_errors_are_one_line(tmp_path, argv, message):
    argv = [str(tmp_path / a) if a.endswith((".onnx", ".txt")) else a for a in argv]
    code, _, err = run_cli("export", *TINY, "--size", SIZE, *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_require_agreement_fails_below_the_threshold():
    require_agreement(Agreement(0.0, 0.0, 0.9995, 1000, 1), "ok")
    with pytest.raises(RtsegError, match="99.800% of pixels"):
        require_agreement(Agreement(0.5, 0.1, 0.998, 1000, 1), "fp32 export")


# --- video --------------------------------------------------------------------------------

def _write_video(path: Path, frames: int, size=(48, 80)) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            image = np.full((*size, 3), 40 + 20 * i, np.uint8)
            image[8:24, 4 + 6 * i:20 + 6 * i] = (255, 0, 0)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())


def test_video_round_trip(tmp_path):
    import av

    from rtseg.inference import Predictor, segment_video

    source, target = tmp_path / "drive.mp4", tmp_path / "out" / "overlay.mp4"
    _write_video(source, frames=6)
    seen = []

    predictor = Predictor(TinyNet().eval())

    def recording_predictor(image):
        seen.append(image.shape)
        return predictor(image)

    stats = segment_video(source, target, recording_predictor, progress=False)
    assert stats["frames"] == 6 and seen == [(48, 80, 3)] * 6 and stats["predict_fps"] > 0
    with av.open(str(target)) as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    assert len(frames) == 6 and frames[0].shape == (48, 80, 3)
    assert sorted(p.name for p in target.parent.iterdir()) == ["overlay.mp4"]  # written atomically

    with pytest.raises(RtsegError, match="must end in one of"):
        segment_video(source, tmp_path / "out.gif", predictor, progress=False)
    with pytest.raises(RtsegError, match="does not exist"):
        segment_video(tmp_path / "missing.mp4", target, predictor, progress=False)


def test_overlay_blends_the_cityscapes_colours():
    from rtseg.data.labels import TRAIN_COLORS
    from rtseg.data.labels import overlay

    image = np.full((2, 3, 3), 100, np.uint8)
    ids = np.array([[0, 1, 2], [10, 11, 18]], np.uint8)
    np.testing.assert_array_equal(overlay(image, ids, alpha=1.0), TRAIN_COLORS[ids])
    np.testing.assert_array_equal(overlay(image, ids, alpha=0.0), image)
    half = overlay(image, ids, alpha=0.5).astype(int)
    assert np.abs(half - (100 + TRAIN_COLORS[ids].astype(int)) / 2).max() <= 0.5


def test_argmax_first_rewrite_gives_the_same_labels(tmp_path):
    """The labels output computed before the last pixel shuffle equals the argmax of the logits."""
    import onnx
    import onnxruntime as ort

    from rtseg.export import export_onnx

    torch.manual_seed(0)
    model = TinyNet().eval()
    path = export_onnx(model, tmp_path / "m.onnx", (40, 72), batch=2)
    graph = onnx.load(str(path)).graph
    producer = {o: n for n in graph.node for o in n.output}
    assert producer["labels"].op_type == "Cast"  # int64 index map, moved as uint8
    argmax = next(n for n in graph.node if n.op_type == "ArgMax")
    assert producer[argmax.input[0]].op_type == "Reshape"  # taken on the conv output, before DepthToSpace
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((2, 3, 40, 72)).astype(np.float32) * 3
    logits, labels = session.run(None, {"image": x})
    assert labels.dtype == np.int64 and labels.shape == (2, 40, 72)
    np.testing.assert_array_equal(labels, logits.argmax(1))


class TinyUNetTail(SegmentationNetwork):
    """UNet's end: an up-sampling, batch norm and ReLU at full resolution, a crop, a 1x1 classifier."""

    def __init__(self, reuse: bool = False):
        super().__init__("tiny-unet", 5)
        self.reuse = reuse
        self.down = torch.nn.Conv2d(3, 6, 3, stride=2, padding=1)
        self.up = torch.nn.ConvTranspose2d(6, 4, 4, stride=2, padding=1)
        self.norm = torch.nn.BatchNorm2d(4)
        self.classify = torch.nn.Conv2d(4, 5, 1)
        with torch.no_grad():  # eval-mode statistics that are not the identity
            self.norm.running_mean.uniform_(-1, 1)
            self.norm.running_var.uniform_(0.5, 2)
            self.norm.weight.uniform_(0.5, 2)
            self.norm.bias.uniform_(-1, 1)

    def forward(self, x):
        y = torch.relu(self.norm(self.up(self.down(x))))[..., :int(x.shape[-2]) - 1, :int(x.shape[-1]) - 2]
        logits = self.classify(y)
        return logits + y.mean(1, keepdim=True) if self.reuse else logits


def test_per_pixel_layers_after_the_last_shuffle_move_before_it(tmp_path):
    """Batch norm, ReLU and the 1x1 classifier run on the phases of the low-resolution map, one
    group per phase, and the argmax is taken before the shuffle: logits and labels unchanged."""
    import onnx
    import onnxruntime as ort

    from rtseg.export import export_onnx

    torch.manual_seed(0)
    model = TinyUNetTail().eval()
    path = export_onnx(model, tmp_path / "m.onnx", (20, 30), batch=2)
    nodes = onnx.load(str(path)).graph.node
    kinds = [n.op_type for n in nodes]
    shuffle = kinds.index("DepthToSpace")
    assert not {"BatchNormalization", "Relu", "Conv"} & set(kinds[shuffle:])  # nothing per-pixel after it
    grouped = [n for n in nodes if n.op_type == "Conv" and any(a.name == "group" and a.i == 4 for a in n.attribute)]
    assert len(grouped) == 1  # the classifier: one group per phase of the x2 up-sampling
    producer = {o: n for n in nodes for o in n.output}
    argmax = next(n for n in nodes if n.op_type == "ArgMax")
    view = producer[argmax.input[0]]  # the classifier's phases, viewed as [N, s*s, C, H, W] (DCR)
    assert view.op_type == "Reshape" and producer[view.input[0]] is grouped[0]
    assert {a.name: a.i for a in argmax.attribute}["axis"] == 2
    x = torch.randn(2, 3, 20, 30)
    logits, labels = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x.numpy()})
    with torch.no_grad():
        expected = model(x)
    np.testing.assert_allclose(logits, expected.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(labels, logits.argmax(1))


def test_a_shuffled_map_read_by_another_layer_stays_where_it_is(tmp_path):
    import onnx

    from rtseg.export import export_onnx

    path = export_onnx(TinyUNetTail(reuse=True).eval(), tmp_path / "m.onnx", (20, 30))
    kinds = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert "BatchNormalization" in kinds[kinds.index("DepthToSpace"):]  # left at full resolution


def test_export_model_is_a_python_workflow_returning_its_report(tmp_path):
    from rtseg.export import ExportOptions, export_model

    lines = []
    report = export_model(TinyNet().eval(), tmp_path / "tiny.onnx", ExportOptions(size=(32, 48)), log=lines.append)
    assert (tmp_path / "tiny.onnx").is_file() and report.output == tmp_path / "tiny.onnx"
    assert report.fp32.argmax_agreement >= 0.999 and report.int8 is None
    assert report.as_dict()["input_shape"] == [1, 3, 32, 48]
    assert lines == report.log and lines[-1] == f"wrote {tmp_path / 'tiny.onnx'}"
    with pytest.raises(RtsegError, match="int8 needs calibration data"):
        export_model(TinyNet().eval(), tmp_path / "q.onnx", ExportOptions(size=(32, 48), int8=True))


def test_a_dynamic_export_is_checked_at_another_size_than_it_was_traced_at(tmp_path):
    """torch.export writes adaptive pooling with the traced size's windows while the input stays
    symbolic: the graph claims any size and is wrong at every other one. The check must see it."""
    from torch.nn import functional as F

    from rtseg.export import ExportOptions, export_model

    class Pooled(SegmentationNetwork):
        def __init__(self):
            super().__init__("pooled", 4)
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            y = self.conv(x)
            return y + 3 * F.interpolate(F.adaptive_avg_pool2d(y, (2, 2)), size=y.shape[-2:], mode="nearest")

    torch.manual_seed(0)
    with pytest.raises(RtsegError, match="argmax agrees with PyTorch on only"):
        export_model(Pooled().eval(), tmp_path / "p.onnx", ExportOptions(size=(32, 48), dynamic=True))
    # at the traced size alone the same graph is right: only the second size shows the fault
    report = export_model(Pooled().eval(), tmp_path / "q.onnx", ExportOptions(size=(32, 48)))
    assert report.fp32.argmax_agreement >= 0.999
