"""int8 for today's networks: PP-LiteSeg's graph defeats ONNX Runtime's symbolic shape inference
(the quantizer's optional pre-processing), and the quantizer goes on without it."""

import numpy as np
import onnx
import pytest
import torch

import rtseg
from rtseg.inference import quantize as quantize_module
from rtseg.inference.onnx_export import export_onnx
from rtseg.inference.onnx_runtime import create_session
from rtseg.inference.quantize import quantize_int8

SINGLE_THREAD = True
SIZE = (64, 128)


def test_pp_liteseg_quantizes_to_int8_and_runs(tmp_path):
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = rtseg.create_model("pp_liteseg_t").eval()
    source = export_onnx(model, tmp_path / "float.onnx", SIZE)
    with pytest.raises(TypeError):  # the failure the fallback exists for; if ONNX Runtime fixes it, drop it
        quant_pre_process(str(source), str(tmp_path / "prepared.onnx"))
    images = [torch.randn(1, 3, *SIZE) for _ in range(2)]
    target = quantize_int8(source, tmp_path / "int8.onnx", images)
    ops = {node.op_type for node in onnx.load(str(target)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    session = create_session(target, threads=1)
    outputs = {o.name: v for o, v in zip(session.get_outputs(), session.run(None, {"image": images[0].numpy()}))}
    labels = outputs["labels"]
    assert labels.shape == (1, *SIZE) and labels.min() >= 0 and labels.max() < model.num_classes
    float_labels = model(images[0]).argmax(1).numpy()
    assert np.mean(labels == float_labels) > 0.5  # int8 is the same network, roughly


def test_quantizer_skips_only_the_symbolic_pass_when_it_fails(tmp_path, monkeypatch):
    from onnxruntime.quantization import shape_inference

    calls = []

    def flaky(source, target, **options):
        calls.append(options)
        if not options.get("skip_symbolic_shape"):
            raise TypeError("'NoneType' object is not iterable")
        real(source, target, **options)

    real = shape_inference.quant_pre_process
    monkeypatch.setattr(shape_inference, "quant_pre_process", flaky)
    model = rtseg.create_model("skipnet-mobilenet_v1", width=0.25).eval()
    source = export_onnx(model, tmp_path / "float.onnx", SIZE)
    quantize_module.Quantizer(source, [torch.randn(1, 3, *SIZE)], tmp_path)
    assert calls == [{}, {"skip_symbolic_shape": True}]
    assert (tmp_path / "prepared.onnx").is_file()
