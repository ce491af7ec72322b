"""Checks every zoo network's tests share: sizes, gradients, eval-only parameters, official
key layouts (recorded in tests/fixtures/zoo/*.json), ONNX export."""

from __future__ import annotations

import json
from pathlib import Path

import torch

import rtseg
from rtseg.export import compare_with_torch, export_onnx, onnx_input_size, require_agreement
from rtseg.models.zoo.training_only import inference_param_count

FIXTURES = Path(__file__).parent / "fixtures" / "zoo"
SIZES = ((360, 640), (257, 513))


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def state_with_layout(keys: dict[str, list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with exactly the recorded keys and shapes (BN statistics kept valid)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in keys.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.1
    return state


def official_key(key: str, renames: dict[str, str], prefix: str = "") -> str:
    """Our key -> the release's: the official module name for a renamed one, the wrapper's prefix."""
    for official, ours in renames.items():
        if key.startswith(ours):
            return prefix + official + key[len(ours):]
    return prefix + key


def assert_loaded_from(model: torch.nn.Module, release: dict[str, torch.Tensor], renames: dict[str, str],
                       prefix: str = "") -> set[str]:
    """Every network key holds the release's value; returns the release keys nothing used."""
    used = set()
    for key, value in model.state_dict().items():
        source = official_key(key, renames, prefix)
        assert torch.equal(value, release[source]), key
        used.add(source)
    return set(release) - used


def assert_imagenet_file_loads(name: str, keys: dict[str, list[int]], path: Path, classifier: tuple[str, ...]):
    """A file with the recorded ImageNet layout loads with ``pretrained=``: the classifier's keys
    are dropped, every other key lands. Returns the network's state and the file's."""
    imagenet = state_with_layout(keys, seed=1)
    torch.save({"state_dict": imagenet}, path)
    own = rtseg.create_model(name, pretrained=path).state_dict()
    dropped = {k for k in keys if k.split(".")[0] in classifier}
    assert dropped and not dropped & set(own)
    assert all(torch.equal(own[k], imagenet[k]) for k in keys if k not in dropped)
    return own, imagenet


def output_shapes(model: torch.nn.Module, batch: int, size: tuple[int, int]) -> dict[str, tuple[int, ...]]:
    out = model(torch.zeros(batch, 3, *size))
    return {k: tuple(v.shape) for k, v in out.items()} if isinstance(out, dict) else {"eval": tuple(out.shape)}


def assert_any_size(name: str, training_outputs: dict[str, int], num_classes: int = 7) -> None:
    """Eval: logits at the input size; training: each named output (channels) at the input size."""
    with torch.device("meta"):  # shapes only: no memory, no compute
        model = rtseg.create_model(name, num_classes=num_classes)
        for size in SIZES:
            model.eval()
            assert output_shapes(model, 2, size) == {"eval": (2, num_classes, *size)}
            model.train()
            assert output_shapes(model, 2, size) == {k: (2, c, *size) for k, c in training_outputs.items()}


def assert_gradients_everywhere(model: torch.nn.Module, size: tuple[int, int], constant_shifts: tuple[str, ...] = ()):
    """The training outputs together reach every parameter, with a non-zero gradient except for
    ``constant_shifts``: biases whose shift the next batch norm removes in training mode (their
    gradient is then exactly zero, though connected)."""
    model.train()
    outputs = model(torch.randn(2, 3, *size))
    assert all(torch.isfinite(v).all() for v in outputs.values())
    sum(v.square().mean() for v in outputs.values()).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    no_grad = [n for n, p in model.named_parameters() if not p.grad.abs().sum() > 0]
    assert no_grad == list(constant_shifts)


def assert_training_only_heads_are_exactly_the_unused_ones(model: torch.nn.Module, size: tuple[int, int]) -> None:
    """``inference_param_count`` counts exactly the parameters an eval output reaches."""
    model.eval()
    model.zero_grad()
    model(torch.randn(1, 3, *size)).sum().backward()
    reached = sum(p.numel() for p in model.parameters() if p.grad is not None)
    assert reached == inference_param_count(model) < sum(p.numel() for p in model.parameters())


def assert_exports(model: torch.nn.Module, tmp_path: Path, size: tuple[int, int], other: tuple[int, int] | None = None):
    """Static export at ``size`` agrees with PyTorch; with ``other``, a dynamic-size export runs at
    both sizes and agrees at the other one too."""
    model.eval()
    path = export_onnx(model, tmp_path / f"{model.name}.onnx", size, dynamic=other is not None)
    sizes = [size] + ([other] if other else [])
    if other:
        assert onnx_input_size(path)[2:] == (None, None)
    for height, width in sizes:
        agreement = compare_with_torch(model, path, [torch.randn(1, 3, height, width)])
        require_agreement(agreement, f"{model.name} at {height}x{width}")
    return path
