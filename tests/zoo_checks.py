"""Checks every zoo network's tests share: sizes, gradients, official key layouts, ONNX export."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.nn import functional as F

import rtseg
from rtseg.export import compare_with_torch, export_onnx, onnx_input_size

FIXTURES = Path(__file__).parent / "fixtures" / "zoo"
ODD_SIZES = ((360, 640), (257, 513))


def official_layout(fixture: str, layout: str) -> dict[str, list[int]]:
    """Key -> shape of an official state dict, as recorded in ``tests/fixtures/zoo/<fixture>``."""
    return json.loads((FIXTURES / fixture).read_text())["layouts"][layout]["keys"]


def random_state(layout: dict[str, list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with exactly ``layout``'s keys and shapes (variances positive, counters integer)."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith(("running_var", "_variance")):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[key] = torch.randn(shape, generator=gen)
    return state


def assert_registered(names, mean, std) -> None:
    for name in names:
        model = rtseg.create_model(name, num_classes=7)
        assert (model.name, model.num_classes, model.mean, model.std) == (name, 7, tuple(mean), tuple(std))


def assert_output_sizes(name: str, num_classes: int = 5, sizes=ODD_SIZES) -> None:
    """Eval: logits at the input size; training: a dict whose every entry is at the input size."""
    with torch.device("meta"):  # shapes only
        model = rtseg.create_model(name, num_classes=num_classes)
        for batch, size in zip((1, 2), sizes):
            model.eval()
            assert model(torch.zeros(batch, 3, *size)).shape == (batch, num_classes, *size)
            model.train()
            outputs = model(torch.zeros(2, 3, *size))  # batch norm on 1x1 attention maps needs 2
            assert outputs["out"].shape == (2, num_classes, *size)
            for key, value in outputs.items():
                assert value.shape[0] == 2 and value.shape[-2:] == size, key


def assert_gradients_reach_every_parameter(name: str, size=(37, 53), num_classes: int = 3) -> dict:
    """A real training step at an odd size: every parameter gets a non-zero gradient."""
    model = rtseg.create_model(name, num_classes=num_classes).train()
    outputs = model(torch.randn(2, 3, *size))
    assert all(torch.isfinite(v).all() for v in outputs.values())
    sum(v.square().mean() for v in outputs.values()).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == []
    return outputs


def assert_exports(name: str, tmp_path: Path, size=(64, 96), other_size=(71, 45)) -> None:
    """A dynamic-size ONNX export that agrees with PyTorch at the traced size and at another one."""
    model = rtseg.create_model(name, num_classes=4).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_var.uniform_(0.5, 1.5)
                module.running_mean.normal_(0, 0.1)
    path = export_onnx(model, tmp_path / f"{name}.onnx", size, dynamic=True)
    assert onnx_input_size(path) == (None, 3, None, None)
    mean, std = torch.tensor(model.mean).view(1, 3, 1, 1), torch.tensor(model.std).view(1, 3, 1, 1)
    for check_size in (size, other_size):
        images = F.avg_pool2d(torch.rand(2, 3, *check_size), 5, 1, 2)  # smooth, like real images
        agreement = compare_with_torch(model, path, [(images - mean) / std])
        assert agreement.max_abs_diff < 1e-3 and agreement.argmax_agreement > 0.999, (check_size, agreement)


def max_relative_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))
