"""What the papers of today's real-time networks published, with the conditions they measured under.

Each network file defines its ``PUBLISHED`` records; the report shows them beside rtseg's own
figures, marked "published", so that a reader sees why the papers' FPS do not compare (six
GPUs, TensorRT or not, fp16 or fp32, 512x1024 or 1024x2048).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class PublishedRecord:
    model: str  # the rtseg name, e.g. "pidnet_s"
    source: str  # paper (and table), or the official repository's README
    val_miou: float | None = None  # Cityscapes val mIoU, percent
    test_miou: float | None = None  # Cityscapes test mIoU, percent
    fps: float | None = None
    gpu: str | None = None  # e.g. "RTX 3090"
    resolution: str | None = None  # HxW the FPS (and mIoU) were measured at, e.g. "1024x2048"
    runtime: str | None = None  # e.g. "PyTorch fp32", "TensorRT fp16"
    params_m: float | None = None  # millions of parameters, as published
    gflops: float | None = None  # as published, converted to 2 x multiply-adds (see ``flops_note``)
    flops_note: str | None = None  # how the paper counted ("FLOPs" that are multiply-adds, ...)
    note: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)
