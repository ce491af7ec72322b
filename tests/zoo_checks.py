"""Checks every zoo network's tests share: registration, any input size, gradients, eval-only
parameters, the official key layouts (recorded in tests/fixtures/zoo/<family>.json), ONNX export."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch.nn import functional as F

import rtseg
from rtseg.export import compare_with_torch, export_onnx, onnx_input_size, require_agreement
from rtseg.models.zoo.eval_parameters import eval_parameter_names
from rtseg.models.zoo.published import published_records

FIXTURES = Path(__file__).parent / "fixtures" / "zoo"
SIZES = ((360, 640), (257, 513))  # the sizes: one even, one odd everywhere


def official_layout(family: str, layout: str) -> dict[str, list[int]]:
    """Key -> shape of an official state dict, as recorded in ``tests/fixtures/zoo/<family>.json``."""
    return json.loads((FIXTURES / f"{family}.json").read_text())["layouts"][layout]["keys"]


def random_state(layout: dict[str, list[int]], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random tensors with exactly ``layout``'s keys and shapes (variances positive, counters integer)."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(1000)
        elif key.endswith(("running_var", "_variance")):
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
    imagenet = random_state(keys, seed=1)
    torch.save({"state_dict": imagenet}, path)
    own = rtseg.create_model(name, pretrained=path).state_dict()
    dropped = {k for k in keys if k.split(".")[0] in classifier}
    assert dropped and not dropped & set(own)
    assert all(torch.equal(own[k], imagenet[k]) for k in keys if k not in dropped)
    return own, imagenet


def on_meta(name: str, **options) -> torch.nn.Module:
    """The network built on the meta device: for counting parameters and FLOPs, no init, no memory."""
    with torch.device("meta"):
        return rtseg.create_model(name, **options)


def assert_registered(names, mean, std) -> None:
    """Each name builds with its authors' normalisation and has a published record."""
    for name in names:
        model = rtseg.create_model(name, num_classes=7)
        assert (model.name, model.num_classes, model.mean, model.std) == (name, 7, tuple(mean), tuple(std))
        assert published_records(name), name


def output_shapes(model: torch.nn.Module, batch: int, size: tuple[int, int]) -> dict[str, tuple[int, ...]]:
    with torch.no_grad():
        out = model(torch.zeros(batch, 3, *size))
    return {k: tuple(v.shape) for k, v in out.items()} if isinstance(out, dict) else {"eval": tuple(out.shape)}


def assert_any_size(name: str, training_outputs: dict[str, int], num_classes: int = 7) -> None:
    """Eval: logits at the input size (batches of 1 and 2); training: each named output
    (channels) at the input size. Training batches are 2: batch norm on 1x1 attention maps
    needs two images, as in the official code."""
    with torch.device("meta"):  # shapes only: no memory, no compute
        model = rtseg.create_model(name, num_classes=num_classes)
        for batch, size in zip((1, 2), SIZES):
            model.eval()
            assert output_shapes(model, batch, size) == {"eval": (batch, num_classes, *size)}
            model.train()
            assert output_shapes(model, 2, size) == {k: (2, c, *size) for k, c in training_outputs.items()}


def assert_gradients_everywhere(model: torch.nn.Module, size: tuple[int, int] = (37, 53),
                                constant_shifts: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
    """A real training step at an odd size: the training outputs together reach every parameter,
    with a non-zero gradient except for ``constant_shifts``: biases whose shift the next batch norm
    removes in training mode (their gradient is then exactly zero, though connected). Returns the
    training outputs."""
    model.train()
    outputs = model(torch.randn(2, 3, *size))
    assert all(torch.isfinite(v).all() for v in outputs.values())
    sum(v.square().mean() for v in outputs.values()).backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    no_grad = [n for n, p in model.named_parameters() if not p.grad.abs().sum() > 0]
    assert no_grad == list(constant_shifts)
    return outputs


def assert_eval_parameters_are_those_an_eval_pass_reaches(model: torch.nn.Module, size: tuple[int, int]) -> None:
    """``eval_parameter_names`` (a meta copy's backward) names exactly the parameters a real
    eval-mode backward reaches, and leaves some out (the training-only heads)."""
    model.eval()
    model.zero_grad()
    model(torch.randn(1, 3, *size)).sum().backward()
    reached = {n for n, p in model.named_parameters() if p.grad is not None}
    assert eval_parameter_names(model, size) == reached
    assert reached < {n for n, _ in model.named_parameters()}


def assert_exports(model: torch.nn.Module, tmp_path: Path, size: tuple[int, int], other: tuple[int, int]) -> Path:
    """A dynamic-size ONNX export traced at ``size`` agrees with PyTorch there and at ``other``:
    the same argmax (``require_agreement``) and logits equal to 1e-5 of their largest magnitude.

    Batch-norm statistics are made non-trivial, and the images smooth like real ones. Trace
    where no map the graph resizes onto is 1 pixel high or wide: ``torch.export`` fixes a size
    that is 1 at the traced input (docs/zoo.md, "Export at any size")."""
    model.eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_var.uniform_(0.5, 1.5)
                module.running_mean.normal_(0, 0.1)
    path = export_onnx(model, tmp_path / f"{model.name}.onnx", size, dynamic=True)
    assert onnx_input_size(path) == (None, 3, None, None)
    mean, std = torch.tensor(model.mean).view(1, 3, 1, 1), torch.tensor(model.std).view(1, 3, 1, 1)
    for check_size in (size, other):
        images = F.avg_pool2d(torch.rand(2, 3, *check_size), 5, 1, 2)
        images = (images - mean) / std
        agreement = compare_with_torch(model, path, [images])
        require_agreement(agreement, f"{model.name} at {check_size}")
        with torch.no_grad():
            scale = float(model(images).abs().max())
        assert agreement.max_abs_diff < 1e-5 * scale, (check_size, scale, agreement)
    return path
