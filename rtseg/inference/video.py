"""A video in, the segmentation overlay video out, frame by frame, with the FPS in a progress bar.

Decoding and encoding are PyAV's (FFmpeg): H.264 (libx264) for .mp4, .mkv and .mov, Motion
JPEG for .avi. Each frame goes through a ``Predictor`` (any engine) and is blended with the
colours of its classes (the Predictor's dataset's palette; Cityscapes' by default). The file is written beside the target under a temporary
name and moved into place when complete, so an interrupted run leaves no half video.
"""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path
from typing import Callable

import numpy as np

from rtseg.atomic import atomic_path
from rtseg.data.labels import overlay
from rtseg.errors import RtsegError

_CODECS = {".mp4": "libx264", ".mkv": "libx264", ".mov": "libx264", ".avi": "mjpeg"}
_PIXEL_FORMATS = {"libx264": "yuv420p", "mjpeg": "yuvj420p"}


def segment_video(source: str | Path, target: str | Path, predictor: Callable[[np.ndarray], np.ndarray], *,
                  alpha: float = 0.5, max_frames: int | None = None, progress: bool = True,
                  palette: np.ndarray | None = None) -> dict:
    """Run ``predictor`` (uint8 RGB frame -> train ids) on every frame of ``source``; write the overlay to ``target``.

    Returns ``frames``, ``seconds``, ``fps`` (whole loop: decode, predict, encode, the first
    frame included), ``first_frame_s`` (the first prediction, which builds the engine) and
    ``predict_fps`` (the predictor alone, after the first frame unless there is only one). H.264 needs even sizes: an odd last row or column
    is dropped from the output.
    """
    import av
    from tqdm import tqdm

    source, target = Path(source), Path(target)
    if not source.is_file():
        raise RtsegError(f"input video {source} does not exist")
    codec = _CODECS.get(target.suffix.lower())
    if codec is None:
        raise RtsegError(f"output video {target} must end in one of {', '.join(_CODECS)}")
    if palette is None and getattr(predictor, "dataset", None) is not None:
        palette = predictor.dataset.palette()  # a Predictor's classes come in its dataset's colours
    if not 0 <= alpha <= 1:
        raise RtsegError(f"overlay alpha must be in [0, 1], got {alpha}")
    try:
        reader = av.open(str(source))
    except av.error.FFmpegError as exc:
        raise RtsegError(f"cannot read video {source}: {exc}") from exc
    frames, predict_seconds, first_frame_seconds, started = 0, 0.0, 0.0, time.perf_counter()
    with atomic_path(target) as tmp:
        with reader:
            if not reader.streams.video:
                raise RtsegError(f"{source} has no video stream")
            stream = reader.streams.video[0]
            rate = stream.average_rate or stream.base_rate or Fraction(30)
            total = stream.frames or None
            if max_frames is not None:
                total = min(total, max_frames) if total else max_frames
            with av.open(str(tmp), "w") as writer:
                out = None
                bar = tqdm(total=total, unit="frame", desc=f"segmenting {source.name}", disable=not progress)
                for frame in reader.decode(stream):
                    if max_frames is not None and frames >= max_frames:
                        break
                    image = frame.to_ndarray(format="rgb24")
                    height, width = image.shape[0] & ~1, image.shape[1] & ~1
                    if out is None:  # the stream's size is the first frame's
                        out = writer.add_stream(codec, rate=rate)
                        out.pix_fmt = _PIXEL_FORMATS[codec]
                        out.width, out.height = width, height
                    began = time.perf_counter()
                    labels = predictor(image)
                    if frames == 0:  # builds the engine for this size: reported apart
                        first_frame_seconds = time.perf_counter() - began
                    else:
                        predict_seconds += time.perf_counter() - began
                    blended = overlay(image[:height, :width], labels[:height, :width], alpha, palette)
                    writer.mux(out.encode(av.VideoFrame.from_ndarray(blended, format="rgb24")))
                    frames += 1
                    bar.update(1)
                    if predict_seconds:
                        bar.set_postfix(predict_fps=f"{(frames - 1) / predict_seconds:.1f}")
                bar.close()
                if out is not None:
                    writer.mux(out.encode())  # flush the encoder
        if frames == 0:
            raise RtsegError(f"{source} has no frames to decode")
    seconds = time.perf_counter() - started
    return {"output": str(target), "frames": frames, "seconds": round(seconds, 3),
            "fps": round(frames / seconds, 3), "first_frame_s": round(first_frame_seconds, 3),
            # one frame only: its time, engine build included, is all there is
            "predict_fps": round((frames - 1) / predict_seconds if predict_seconds else 1 / first_frame_seconds, 3)}
