"""ONNX export of a network: one graph, ``image`` in, ``logits`` and ``labels`` out, checked by onnx.checker.

The exported graph takes ``image`` (``[N,3,H,W]`` float32, normalised with the model's mean
and std) and has two outputs: ``logits`` (``[N,C,H,W]``) and ``labels`` (``[N,H,W]`` int64
train ids, the argmax), so a deployment needs no post-processing of its own. Transposed
convolutions are written as sub-pixel convolutions (``rtseg.inference.subpixel``: the same
function, much faster in ONNX Runtime). The exporter is ``torch.onnx.export(dynamo=True)``.
``rtseg.export`` builds the checked workflow (agreement with PyTorch, int8, mIoU) on this.
"""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path

import torch
from torch import nn

from rtseg.atomic import atomic_path
from rtseg.errors import RtsegError
from rtseg.inference.onnx_rewrite import argmax_before_depth_to_space, is_rewritten, pointwise_before_depth_to_space
from rtseg.inference.subpixel import rewrite_conv_transpose

INPUT_NAME = "image"
OUTPUT_NAMES = ("logits", "labels")


class LogitsAndLabels(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(image)
        return logits, logits.argmax(1)


def export_onnx(model: nn.Module, path: str | Path, size: tuple[int, int], batch: int = 1, *,
                dynamic: bool = False, opset: int | None = None, subpixel: bool = True,
                argmax_first: bool = True, pointwise_first: bool = True) -> Path:
    """Write ``model`` as ONNX to ``path`` (atomically) and check it with ``onnx.checker``.

    ``dynamic`` leaves the batch free, and height and width too when the model allows it
    (``onnx_input_size`` tells which axes are free). ``opset`` None lets the exporter choose.
    ``argmax_first`` computes ``labels`` before the final pixel shuffle
    (``rtseg.inference.onnx_rewrite``; static shapes only); leave it off for a graph that is
    going to be quantized, and rewrite the quantized one. ``pointwise_first`` moves per-pixel
    layers after the last pixel shuffle before it (``rtseg.inference.onnx_rewrite``; exact).
    """
    path = Path(path)
    if path.suffix != ".onnx":
        raise RtsegError(f"output file {path} must end in .onnx")
    if path.is_dir():
        raise RtsegError(f"output {path} is a folder; give a file name ending in .onnx")
    path.parent.mkdir(parents=True, exist_ok=True)
    module = copy.deepcopy(model).eval().to("cpu").float()
    if subpixel:
        rewrite_conv_transpose(module)
    program = _export_program(LogitsAndLabels(module).eval(), size, batch, dynamic,
                              getattr(model, "name", type(model).__name__))
    with atomic_path(path) as tmp:
        log = io.StringIO()
        try:
            # The exporter narrates each step on stdout; keep it for the error message only.
            with contextlib.redirect_stdout(log):
                torch.onnx.export(program, f=str(tmp), dynamo=True, verbose=False, input_names=[INPUT_NAME],
                                  output_names=list(OUTPUT_NAMES), opset_version=opset, external_data=False)
        except Exception as exc:
            raise RtsegError(f"ONNX export of {getattr(model, 'name', type(model).__name__)} failed: "
                             f"{type(exc).__name__}: {exc}".splitlines()[0]) from exc
        rewrite_graph(tmp, *([pointwise_before_depth_to_space] if pointwise_first else []),
                      *([argmax_before_depth_to_space] if argmax_first else []))
        check_onnx(tmp)
    return path


def _export_program(module: nn.Module, size: tuple[int, int], batch: int, dynamic: bool, name: str):
    """``torch.export`` the module; with ``dynamic``, batch, height and width free where the model allows.

    ``Dim.AUTO`` lets ``torch.export`` keep an axis symbolic unless the code pins it (our
    decoders crop feature maps to sizes read as Python ints, which pins height and width);
    ``onnx_input_size`` then tells which axes stayed free. The batch is traced at 2 at least,
    since a batch of 1 would be specialised.
    """
    from torch.export import Dim

    def trace(free_axes: tuple[int, ...]):
        shapes = {"image": {axis: Dim.AUTO for axis in free_axes}} if free_axes else None
        example = torch.randn(max(batch, 2) if free_axes else batch, 3, *size)
        with torch.no_grad():
            return torch.export.export(module, (example,), dynamic_shapes=shapes, strict=False)

    try:
        if not dynamic:
            return trace(())
        program = trace((0, 2, 3))
        if _pinned_axes(program) & {2, 3}:
            program = trace((0,))  # declare only what really is free
        return program
    except Exception as exc:
        raise RtsegError(f"ONNX export of {name} failed in torch.export: {type(exc).__name__}: {exc}"
                         .splitlines()[0]) from exc


def _pinned_axes(program) -> set[int]:
    """Input axes that tracing turned into constants although they were marked ``Dim.AUTO``.

    A pinned axis still carries a symbol in the exported input, which ONNX would declare free
    while the graph inside only works at the traced size; its recorded value says the truth.
    """
    node = next(n for n in program.graph.nodes if n.op == "placeholder" and n.name == "image")
    pinned = set()
    for axis, dim in enumerate(node.meta["val"].shape):
        if not isinstance(dim, torch.SymInt) or not dim.node.expr.free_symbols:
            pinned.add(axis)
    return pinned


def rewrite_graph(path: str | Path, *rewrites) -> bool:
    """Apply ``rewrites`` (``model -> (model, changed)``, ``rtseg.inference.onnx_rewrite``) in turn
    to the ONNX file in place, loading and saving it once; True if any changed it."""
    import onnx

    if not rewrites:
        return False
    model, changed = onnx.load(str(path)), False
    for rewrite in rewrites:
        model, done = rewrite(model)
        changed = changed or done
    if changed:
        onnx.save(model, str(path))
    return changed


def rewrite_labels(path: str | Path) -> bool:
    """Apply ``argmax_before_depth_to_space`` to the ONNX file in place; True if it changed."""
    return rewrite_graph(path, argmax_before_depth_to_space)


def check_onnx(path: str | Path) -> None:
    """``onnx.checker.check_model`` with full shape inference; one-line error on failure."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise RtsegError(f"{path} fails onnx.checker: {exc}".splitlines()[0]) from exc


def onnx_input_size(path: str | Path) -> tuple[int | None, ...]:
    """The ``image`` input's shape, None for a free axis."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)


def has_argmax_first(model_path: str | Path) -> bool:
    """Whether the graph's ``labels`` take the argmax before the last pixel shuffle."""
    import onnx

    return is_rewritten(onnx.load(str(model_path)))


def sub_graph(model_path: str | Path, output: str) -> bytes:
    """The part of an ONNX graph that computes ``output`` alone, serialised."""
    import onnx
    from onnx.utils import Extractor

    model = onnx.load(str(model_path))
    inputs = [i.name for i in model.graph.input]
    return Extractor(model).extract_model(inputs, [output]).SerializeToString()


def name_unnamed_nodes(model) -> int:
    """Give every unnamed node of an ONNX model a unique name (in place); how many were named.

    Node names are how ``nodes_to_exclude`` and ONNX Runtime's profiler refer to nodes."""
    taken = {node.name for node in model.graph.node if node.name}
    unnamed = [node for node in model.graph.node if not node.name]
    for number, node in enumerate(unnamed):
        name = f"{node.op_type}_rtseg_{number}"
        while name in taken:
            name += "_"
        node.name = name
        taken.add(name)
    return len(unnamed)
