"""The paper's cost figures come out of torch.utils.flop_counter."""

import json

import pytest
import torch

import rtseg
from rtseg.cli import main
from rtseg.profiling.flops import count_flops, measure_cost

# (model, size, published GFLOPs, tolerance): RTSeg Tables 2 and 3 (NOTES.md).
PAPER_GFLOPS = [
    ("skipnet-mobilenet_v1", (512, 1024), 13.8, 0.05),
    ("unet-mobilenet_v1", (512, 1024), 55.9, 0.05),
    ("skipnet-mobilenet_v1", (360, 640), 6.2, 0.05),
    ("skipnet-shufflenet_v1", (360, 640), 2.0, 0.10),
]


@pytest.mark.parametrize("name, size, gflops, tolerance", PAPER_GFLOPS)
def test_paper_gflops_are_reproduced(name, size, gflops, tolerance):
    cost = measure_cost(rtseg.create_model(name), size)
    assert cost.gflops == pytest.approx(gflops, rel=tolerance)
    assert cost.gflops == pytest.approx(2 * cost.gmacs)


def test_counter_counts_a_convolution_exactly():
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    assert count_flops(conv, (10, 20)) == 2 * 3 * 8 * 9 * 10 * 20


def test_counting_leaves_the_model_untouched():
    model = rtseg.create_model("skipnet-resnet18").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    count_flops(model, (64, 64))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_flops_command_prints_json(capsys):
    assert main(["flops", "--decoder", "skipnet", "--encoder", "mobilenet_v1", "--size", "360x640", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert {"params", "gmacs", "gflops"} <= set(result)
    assert result["gflops"] == pytest.approx(2 * result["gmacs"])
    assert result["params"] == sum(p.numel() for p in rtseg.create_model("skipnet-mobilenet_v1").parameters())


def test_model_option_equals_decoder_and_encoder(capsys):
    main(["flops", "--model", "unet-resnet18", "--size", "64x64", "--json"])
    a = json.loads(capsys.readouterr().out)
    main(["flops", "--decoder", "unet", "--encoder", "resnet18", "--size", "64x64", "--json"])
    assert json.loads(capsys.readouterr().out) == a


@pytest.mark.parametrize("argv, message", [
    (["flops", "--model", "nosuch"], "unknown model 'nosuch'"),
    (["flops", "--decoder", "skipnet"], "--decoder and --encoder go together"),
    (["flops", "--model", "unet-resnet18", "-O", "fusion"], "KEY=VALUE"),
])
def test_command_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_bad_size_is_refused(capsys):
    with pytest.raises(SystemExit):
        main(["flops", "--model", "unet-resnet18", "--size", "big"])
    assert "HEIGHTxWIDTH" in capsys.readouterr().err


def test_models_command_prints_the_grid(capsys):
    assert main(["models", "--size", "64x128"]) == 0
    out = capsys.readouterr().out
    assert "skipnet-mobilenet_v1" in out and "GFLOPs 64x128" in out
