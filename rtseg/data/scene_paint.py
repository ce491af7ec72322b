"""The drawing surface of the synthetic street scenes: camera, colours, and a painter that
writes one shape into the image, the label ids, the instance ids and the depth at once.

Why hand-written: no maintained library draws the same polygon into an image and its
Cityscapes ground truth together; this is a thin layer over ``cv2`` drawing calls.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass

import cv2
import numpy as np

from rtseg.data.labels import LABEL_BY_NAME

# Label ids by name, from the official table (no hand-typed numbers).
ID = {name: label.id for name, label in LABEL_BY_NAME.items()}

_SHIFT = 4  # cv2 fixed-point bits: sub-pixel vertex positions
_ONE = 1 << _SHIFT


@dataclass(frozen=True)
class Camera:
    """A level pinhole camera ``eye_height`` metres above a flat ground (Y up, Z forward)."""

    height: int
    width: int
    focal: float  # pixels
    cx: float  # principal point column
    horizon: float  # row of the horizon
    eye_height: float  # metres

    def project(self, x, y, z):
        """World points (metres) -> pixel coordinates (column, row), as arrays."""
        z = np.asarray(z, dtype=np.float64)
        col = self.cx + self.focal * np.asarray(x, dtype=np.float64) / z
        row = self.horizon + self.focal * (self.eye_height - np.asarray(y, dtype=np.float64)) / z
        return col, row

    def scale(self, z: float) -> float:
        """Pixels per metre at depth ``z``."""
        return self.focal / z


def hsv(h: float, s: float, v: float) -> np.ndarray:
    """Hue in degrees, saturation and value in 0..1 -> RGB float 0..255."""
    return np.array(colorsys.hsv_to_rgb((h % 360) / 360.0, min(max(s, 0), 1), min(max(v, 0), 1))) * 255.0


def jitter(rng: np.random.Generator, color: np.ndarray, amount: float) -> np.ndarray:
    """A colour varied by about ``amount`` (0..255 units) per channel and in brightness."""
    return np.clip(color * rng.uniform(1 - amount / 255, 1 + amount / 255) + rng.normal(0, amount / 3, 3), 0, 255)


class InstanceCounter:
    """``label_id * 1000 + k`` with k counting from 0 per class, as in the official instanceIds."""

    def __init__(self) -> None:
        self._next: dict[int, int] = {}

    def __call__(self, label_id: int) -> int:
        k = self._next.get(label_id, 0)
        self._next[label_id] = k + 1
        return label_id * 1000 + k


class Painter:
    """Draws shapes into four aligned arrays: RGB float image, uint8 label ids, uint16
    instance ids and float depth (for haze). ``label=None`` paints the image only (a window
    on a car stays "car")."""

    def __init__(self, image: np.ndarray, label: np.ndarray, instance: np.ndarray, depth: np.ndarray):
        self.image, self.label, self.instance, self.depth = image, label, instance, depth

    def _draw(self, draw, color, label, instance, depth) -> None:
        draw(self.image, tuple(float(c) for c in color))
        if label is not None:
            draw(self.label, int(label))
            draw(self.instance, int(label if instance is None else instance))
            draw(self.depth, float(depth))

    def polygon(self, points, color, label=None, instance=None, depth=0.0) -> None:
        pts = _fixed(points)
        if pts is None:
            return
        self._draw(lambda a, v: cv2.fillPoly(a, [pts], v, cv2.LINE_8, _SHIFT), color, label, instance, depth)

    def polyline(self, points, thickness: float, color, label=None, instance=None, depth=0.0,
                 closed: bool = False) -> None:
        pts = _fixed(points)
        if pts is None:
            return
        t = max(1, int(round(thickness)))
        self._draw(lambda a, v: cv2.polylines(a, [pts], closed, v, t, cv2.LINE_8, _SHIFT),
                   color, label, instance, depth)

    def circle(self, center, radius: float, color, label=None, instance=None, depth=0.0) -> None:
        c = tuple(int(round(v * _ONE)) for v in center)
        r = max(int(round(radius * _ONE)), _ONE // 2)
        if not all(abs(v) < 2**28 for v in c):
            return
        self._draw(lambda a, v: cv2.circle(a, c, r, v, -1, cv2.LINE_8, _SHIFT), color, label, instance, depth)


def _fixed(points) -> np.ndarray | None:
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if not np.isfinite(pts).all() or np.abs(pts).max() > 1e6:
        return None
    return np.round(pts * _ONE).astype(np.int32).reshape(-1, 1, 2)
