"""The checked export: ONNX (optionally int8) that provably computes what the PyTorch network does.

    from rtseg.export import ExportOptions, export_model
    report = export_model(model, "model.onnx", ExportOptions(size=(512, 1024), int8=True,
                                                             calibration_data="data/cityscapes"))
    report.fp32.argmax_agreement, report.int8.argmax_agreement, report.miou

Steps: ``rtseg.inference.onnx_export.export_onnx`` writes the graph (``image`` in, ``logits``
and ``labels`` out, onnx.checker passed); ONNX Runtime runs it beside PyTorch on the same
inputs (real images when a dataset is given, smooth random ones otherwise) and the export
fails when the argmax agrees on fewer than 99.9 % of pixels; with ``int8`` the graph is
quantized (static, QDQ, calibrated on the dataset's images) and, when the dataset has
labelled val images, the mIoU of both graphs is measured with ``rtseg.training.evaluate``.
``rtseg export`` only parses its options into ``ExportOptions`` and prints the report.
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from rtseg.data.cityscapes import IMAGE_DIR
from rtseg.errors import RtsegError
from rtseg.inference.calibration import images_from_root, random_inputs
from rtseg.inference.onnx_export import (INPUT_NAME, OUTPUT_NAMES, check_onnx, export_onnx, onnx_input_size,
                                         rewrite_labels)
from rtseg.inference.ort_session import create_session
from rtseg.inference.int8_layers import build_int8_graph
from rtseg.normalisation import model_normalisation
from rtseg.training.evaluator import build_eval_dataset, evaluate

__all__ = ["Agreement", "ExportOptions", "ExportReport", "MIN_AGREEMENT", "check_images", "check_onnx",
           "compare_with_torch", "evaluate_onnx", "export_model", "export_onnx", "onnx_input_size",
           "require_agreement", "rewrite_labels"]

MIN_AGREEMENT = 0.999  # argmax agreement below this fails the export


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


@dataclass(frozen=True)
class ExportOptions:
    size: tuple[int, int] = (512, 1024)
    batch: int = 1
    dynamic: bool = False  # free batch axis (and height/width where the network allows it)
    opset: int | None = None  # None: the exporter's choice
    int8: bool = False  # static int8 quantization (needs calibration_data)
    calibration_data: str | Path | None = None  # dataset root or image folder
    calibration_images: int = 32
    eval_images: int = 50  # labelled val images for the int8 mIoU change
    # int8: layer kinds kept in float (rtseg.inference.int8_layers.KINDS); None: chosen by timing here
    int8_float: tuple[str, ...] | None = None
    threads: int | None = None  # ONNX Runtime threads of that timing (None: its default)

    def check(self) -> "ExportOptions":
        if self.batch < 1:
            raise RtsegError(f"batch must be positive, got {self.batch}")
        if self.int8 and self.calibration_data is None:
            raise RtsegError("int8 needs calibration data (static quantization calibrates on real images)")
        if self.calibration_data is not None and not self.int8:
            raise RtsegError("calibration data is for int8")
        return self


@dataclass
class ExportReport:
    model: str
    output: Path
    size: tuple[int, int]
    batch: int
    input_shape: tuple  # None for a free axis
    fp32: Agreement
    int8: Agreement | None = None
    calibration_images: int | None = None
    miou: dict | None = None  # {"fp32", "int8", "change", "images"} when measured
    int8_plan: dict | None = None  # which layers stayed in float, and the timings it was chosen on
    log: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        data = {"model": self.model, "output": str(self.output), "size": f"{self.size[0]}x{self.size[1]}",
                "batch": self.batch, "input_shape": ["?" if d is None else d for d in self.input_shape],
                "fp32": self.fp32.as_dict()}
        if self.int8 is not None:
            data.update(int8=self.int8.as_dict(), calibration_images=self.calibration_images, miou=self.miou,
                        int8_plan=self.int8_plan)
        return data


def export_model(model: nn.Module, output: str | Path, options: ExportOptions = ExportOptions(),
                 log: Callable[[str], None] | None = None) -> ExportReport:
    """Export ``model`` to ``output`` and check it; see the module docstring. ``log`` gets each step's line."""
    options = options.check()
    output = Path(output)
    if output.suffix != ".onnx":
        raise RtsegError(f"output {output} must end in .onnx")
    model = model.eval()
    lines: list[str] = []

    def say(message: str) -> None:
        lines.append(message)
        if log is not None:
            log(message)

    name = getattr(model, "name", type(model).__name__)
    # Real images, when there are some, show agreement where it matters; random ones otherwise.
    inputs = check_images(model, options.size, options.batch, count=2, root=options.calibration_data)
    if options.dynamic:  # the free batch axis must really be free
        inputs += check_images(model, options.size, options.batch + 1, count=1)
    with tempfile.TemporaryDirectory(prefix="rtseg-export-") as work:
        fp32_path = Path(work) / "model.onnx" if options.int8 else output
        export_onnx(model, fp32_path, options.size, options.batch, dynamic=options.dynamic, opset=options.opset,
                    argmax_first=not options.int8)  # a quantized graph is rewritten after quantization
        shape = onnx_input_size(fp32_path)
        say(f"exported {name} -> {'fp32 graph' if options.int8 else fp32_path}: input image "
            f"{['?' if d is None else d for d in shape]}, outputs logits and labels; onnx.checker passed")
        if shape[2] is None and shape[3] is None:
            # Free height and width must really be free: torch.export can fix a size inside the
            # network (an axis that is 1 at the traced size) while the input stays symbolic.
            other = (options.size[0] + 32, options.size[1] + 64)
            inputs += check_images(model, other, options.batch, count=1)
        fp32 = compare_with_torch(model, fp32_path, inputs)
        say(f"fp32 ONNX Runtime vs PyTorch on {fp32.images} images: max abs logit diff {fp32.max_abs_diff:.3g}, "
            f"argmax agreement {100 * fp32.argmax_agreement:.4f}%")
        require_agreement(fp32, "fp32 export")
        report = ExportReport(name, output, tuple(options.size), options.batch, shape, fp32, log=lines)
        if options.int8:
            mean, std = model_normalisation(model)
            calibration = images_from_root(options.calibration_data, options.size, options.calibration_images,
                                           mean, std, options.batch)
            _, plan = build_int8_graph(fp32_path, output, calibration, calibration[0].numpy(),
                                       threads=options.threads, float_kinds=options.int8_float)
            report.int8_plan = plan.as_dict()
            say(f"int8 layers: {plan.label}" + (f" (timed here: {_timings_text(plan.timings_ms)})"
                                                 if plan.timings_ms else ""))
            report.int8 = compare_with_torch(model, output, inputs)
            report.calibration_images = len(calibration) * options.batch
            say(f"int8 (QDQ, calibrated on {report.calibration_images} images) vs PyTorch fp32: max abs logit diff "
                f"{report.int8.max_abs_diff:.3g}, argmax agreement {100 * report.int8.argmax_agreement:.3f}%")
            report.miou = _miou_change(fp32_path, output, options, mean, std)
            if report.miou:
                m = report.miou
                say(f"mIoU on {m['images']} val images: fp32 {100 * m['fp32']:.2f}, int8 {100 * m['int8']:.2f} "
                    f"({100 * m['change']:+.2f} points)")
            else:
                say("no labelled val images under the calibration root: mIoU change not measured")
    say(f"wrote {output}")
    return report


def _timings_text(timings: dict) -> str:
    return ", ".join(f"{name} {ms:.1f} ms" for name, ms in timings.items())


def compare_with_torch(model: nn.Module, onnx_path: str | Path, inputs: Iterable[torch.Tensor],
                       threads: int | None = None) -> Agreement:
    """Run both on each normalised batch in ``inputs``; logits differences and argmax agreement."""
    session = create_session(onnx_path, "cpu", threads)
    model = model.eval().to("cpu")
    max_diff, diff_sum, same, pixels, images, classes = 0.0, 0.0, 0, 0, 0, 1
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
        classes = expected.shape[1]
    if not pixels:
        raise RtsegError("no input to compare the ONNX graph on")
    return Agreement(max_diff, diff_sum / (pixels * classes), same / pixels, pixels, images)


def require_agreement(agreement: Agreement, what: str, minimum: float = MIN_AGREEMENT) -> None:
    if agreement.argmax_agreement < minimum:
        raise RtsegError(f"{what}: ONNX Runtime's argmax agrees with PyTorch on only "
                         f"{100 * agreement.argmax_agreement:.3f}% of pixels (at least {100 * minimum:.1f}% "
                         f"required; max abs logit diff {agreement.max_abs_diff:.3g})")


def check_images(model: nn.Module, size: tuple[int, int], batch: int = 1, count: int = 2,
                 root: str | Path | None = None) -> list[torch.Tensor]:
    """Inputs to compare on: real images from ``root`` when given, else smooth random images."""
    if root is not None:
        mean, std = model_normalisation(model)
        return images_from_root(root, size, count * batch, mean, std, batch=batch)
    return list(random_inputs(model, size, count * batch, seed=1).split(batch))


def evaluate_onnx(onnx_path: str | Path, root: str | Path, size: tuple[int, int], mean, std, limit: int = 50,
                  threads: int | None = None) -> dict | None:
    """mIoU of an ONNX graph on ``root``'s labelled val split, or None when it has none.

    The images are resized to the graph's ``size`` and the logits up-sampled to the label's
    size before the argmax, exactly as ``rtseg evaluate`` scores a network (it is the same code).
    """
    root = Path(root)
    if not ((root / IMAGE_DIR / "val").is_dir() and (root / "gtFine" / "val").is_dir()):
        return None
    session = create_session(onnx_path, "cpu", threads)

    def logits(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run(["logits"], {INPUT_NAME: x.float().numpy()})[0])

    dataset = build_eval_dataset(root, "val", size, mean, std)
    scores = evaluate(logits, dataset, "cpu", limit=limit, progress=False)
    return {"miou": scores["miou"], "images": scores["images"]}


def _miou_change(fp32_path: Path, int8_path: Path, options: ExportOptions, mean, std) -> dict | None:
    if options.batch != 1 and not options.dynamic:
        return None  # the val images go one by one
    fp32 = evaluate_onnx(fp32_path, options.calibration_data, options.size, mean, std, options.eval_images)
    if fp32 is None or fp32["miou"] is None:
        return None
    int8 = evaluate_onnx(int8_path, options.calibration_data, options.size, mean, std, options.eval_images)
    return {"fp32": fp32["miou"], "int8": int8["miou"], "change": int8["miou"] - fp32["miou"],
            "images": fp32["images"]}
