"""ONNX export, checked: the file passes ``onnx.checker`` and ONNX Runtime agrees with PyTorch.

The exported graph takes ``image`` (``[N,3,H,W]`` float32, normalised with the model's mean
and std) and has two outputs: ``logits`` (``[N,C,H,W]``) and ``labels`` (``[N,H,W]`` int64
train ids, the argmax), so a deployment needs no post-processing of its own. Transposed
convolutions are written as sub-pixel convolutions (``rtseg.inference.subpixel``: the same
function, much faster in ONNX Runtime). The exporter is ``torch.onnx.export(dynamo=True)``.
"""

from __future__ import annotations

import contextlib
import copy
import io
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from rtseg.errors import RtsegError
from rtseg.atomic import atomic_path

INPUT_NAME = "image"
OUTPUT_NAMES = ("logits", "labels")
MIN_AGREEMENT = 0.999  # argmax agreement below this fails the export


class LogitsAndLabels(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.model(image)
        return logits, logits.argmax(1)


def export_onnx(model: nn.Module, path: str | Path, size: tuple[int, int], batch: int = 1, *,
                dynamic: bool = False, opset: int | None = None, subpixel: bool = True,
                argmax_first: bool = True) -> Path:
    """Write ``model`` as ONNX to ``path`` (atomically) and check it with ``onnx.checker``.

    ``dynamic`` leaves the batch free, and height and width too when the model allows it
    (``onnx_input_size`` tells which axes are free). ``opset`` None lets the exporter choose.
    ``argmax_first`` computes ``labels`` before the final pixel shuffle
    (``rtseg.inference.onnx_rewrite``; static shapes only); leave it off for a graph that is
    going to be quantized, and rewrite the quantized one.
    """
    from rtseg.inference.subpixel import rewrite_conv_transpose

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
                             f"{type(exc).__name__}: {exc}".splitlines()[0]) from None
        if argmax_first:
            rewrite_labels(tmp)
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
                         .splitlines()[0]) from None


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


def rewrite_labels(path: str | Path) -> bool:
    """Apply ``argmax_before_depth_to_space`` to the ONNX file in place; True if it changed."""
    import onnx

    from rtseg.inference.onnx_rewrite import argmax_before_depth_to_space

    model, changed = argmax_before_depth_to_space(onnx.load(str(path)))
    if changed:
        onnx.save(model, str(path))
    return changed


def check_onnx(path: str | Path) -> None:
    """``onnx.checker.check_model`` with full shape inference; one-line error on failure."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise RtsegError(f"{path} fails onnx.checker: {exc}".splitlines()[0]) from None


@dataclass(frozen=True)
class Agreement:
    """ONNX Runtime against PyTorch fp32 on the same inputs."""

    max_abs_diff: float  # largest logit difference
    mean_abs_diff: float
    argmax_agreement: float  # share of pixels with the same class, 0..1
    pixels: int
    images: int

    def as_dict(self) -> dict:
        return asdict(self)


def compare_with_torch(model: nn.Module, onnx_path: str | Path, inputs: Iterable[torch.Tensor],
                       threads: int | None = None) -> Agreement:
    """Run both on each normalised batch in ``inputs``; logits differences and argmax agreement."""
    from rtseg.inference.onnx_runtime import create_session

    session = create_session(onnx_path, "cpu", threads)
    model = model.eval().to("cpu")
    max_diff, diff_sum, same, pixels, images = 0.0, 0.0, 0, 0, 0
    for x in inputs:
        with torch.no_grad():
            expected = model(x.float()).numpy()
        logits, labels = session.run(list(OUTPUT_NAMES), {INPUT_NAME: x.float().numpy()})
        if logits.shape != expected.shape:
            raise RtsegError(f"{onnx_path} returns logits of shape {logits.shape} for input "
                             f"{tuple(x.shape)}, PyTorch {expected.shape}")
        diff = np.abs(logits.astype(np.float64) - expected)
        max_diff = max(max_diff, float(diff.max()))
        diff_sum += float(diff.sum())
        same += int((labels == expected.argmax(1)).sum())
        pixels += labels.size
        images += x.shape[0]
    if not pixels:
        raise RtsegError("no input to compare the ONNX graph on")
    return Agreement(max_diff, diff_sum / (pixels * expected.shape[1]), same / pixels, pixels, images)


def require_agreement(agreement: Agreement, what: str, minimum: float = MIN_AGREEMENT) -> None:
    if agreement.argmax_agreement < minimum:
        raise RtsegError(f"{what}: ONNX Runtime's argmax agrees with PyTorch on only "
                         f"{100 * agreement.argmax_agreement:.3f}% of pixels (at least {100 * minimum:.1f}% "
                         f"required; max abs logit diff {agreement.max_abs_diff:.3g})")


def load_model_for_export(checkpoint: str | Path) -> tuple[nn.Module, dict]:
    """A trained model from an ``rtseg train`` checkpoint (``torch.load(weights_only=True)``)."""
    from rtseg.engine.checkpoint import load_model

    return load_model(checkpoint, "cpu")


def check_images(model: nn.Module, size: tuple[int, int], batch: int = 1, count: int = 2,
                 root: str | Path | None = None) -> list[torch.Tensor]:
    """Inputs to compare on: real images from ``root`` when given, else smooth random images."""
    from rtseg.inference.calibration import images_from_root, model_normalisation, normalise, random_images

    mean, std = model_normalisation(model)
    if root is not None:
        return images_from_root(root, size, count * batch, mean, std, batch=batch)
    return list(normalise(random_images(count * batch, size, seed=1), mean, std).split(batch))


def onnx_input_size(path: str | Path) -> tuple[int | None, ...]:
    """The ``image`` input's shape, None for a free axis."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)


def evaluate_onnx(onnx_path: str | Path, root: str | Path, size: tuple[int, int], mean: Sequence[float],
                  std: Sequence[float], limit: int = 50, threads: int | None = None) -> dict | None:
    """mIoU of an ONNX graph on ``root``'s val split (Cityscapes layout), or None without labels.

    Each image is resized to the graph's ``size``; the logits are up-sampled bilinearly back
    to the label's size before the argmax (as ``rtseg evaluate`` does) and scored with
    ``rtseg.metrics.CityscapesMetrics`` (official semantics).
    """
    from torch.nn import functional as F

    from rtseg.data.labels import train_to_label_ids
    from rtseg.inference.calibration import normalise, read_image
    from rtseg.inference.onnx_runtime import create_session

    pairs = _val_pairs(Path(root))[:limit]
    if not pairs:
        return None
    from rtseg.metrics import CityscapesMetrics

    session = create_session(onnx_path, "cpu", threads)
    metrics = CityscapesMetrics()
    for image_path, label_path in pairs:
        image = read_image(image_path)
        x = normalise(read_image(image_path, size), mean, std).unsqueeze(0)
        logits = torch.from_numpy(session.run(["logits"], {INPUT_NAME: x.numpy()})[0])
        if tuple(logits.shape[-2:]) != tuple(image.shape[-2:]):
            logits = F.interpolate(logits, size=tuple(image.shape[-2:]), mode="bilinear", align_corners=False)
        prediction = train_to_label_ids(logits.argmax(1)[0].to(torch.uint8).numpy())
        label = np.asarray(_read_label(label_path))
        metrics.update(torch.from_numpy(np.asarray(prediction).astype(np.int64)),
                       torch.from_numpy(label.astype(np.int64)))
    result = metrics.compute()
    return {"miou": result["miou"], "images": len(pairs)}


def _val_pairs(root: Path) -> list[tuple[Path, Path]]:
    pairs = []
    for image in sorted((root / "leftImg8bit" / "val").glob("*/*_leftImg8bit.png")):
        label = root / "gtFine" / "val" / image.parent.name / image.name.replace("_leftImg8bit.png",
                                                                                 "_gtFine_labelIds.png")
        if label.is_file():
            pairs.append((image, label))
    return pairs


def _read_label(path: Path):
    from PIL import Image

    with Image.open(path) as label:
        return np.array(label)
