"""Reading images and label maps, writing PNGs: the one implementation every module calls.

* ``read_image(path)`` -> ``HxWx3`` uint8 RGB array, whatever the file's mode;
* ``read_label_png(path)`` -> the single-channel integers as stored (8- or 16-bit; a palette
  PNG gives its indices, which is what Pascal-VOC-style label files mean);
* ``write_png(path, array)`` -> an RGB(A), grey or 16-bit PNG, written atomically; ``write_jpeg``
  and ``write_palette_png`` (ids as a palette PNG's indices) likewise;
* ``list_images(source)`` -> every image file of a file or a folder (recursively).

Decoding: 8-bit RGB PNGs (every Cityscapes and CamVid image) and 8-bit greyscale label PNGs go
to libspng (``pyspng``), which inflates about 2x faster than libpng: on 1024x2048 images the
decode is most of a training sample's CPU time. Other images go to OpenCV (libpng,
libjpeg-turbo) where it gives what Pillow gives: 8-bit images as RGB, EXIF orientation ignored
as Pillow does, and 16-bit greyscale label PNGs; about 1.3x faster than Pillow. Palette
PNGs (their indices are the ids) and every other case go to Pillow, and so does a file OpenCV
cannot decode: Pillow's exception then becomes the one line naming the file (OpenCV only
returns None). Encoding is OpenCV's, about 3x faster than Pillow's for the synthetic
dataset's thousands of PNGs.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from rtseg.atomic import atomic_open
from rtseg.errors import RtsegError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".webp")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _read_bytes(path: str | os.PathLike, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError as exc:
        raise RtsegError(f"{what} {path} does not exist") from exc
    except OSError as exc:
        raise RtsegError(f"cannot read {what} {path}: {_first_line(exc)}") from exc


def _png_kind(data: bytes) -> tuple[int, int] | None:
    """``(bit depth, colour type)`` from a PNG's IHDR (bytes 24 and 25), None for another format."""
    return (data[24], data[25]) if data[:8] == _PNG_SIGNATURE and len(data) > 25 else None


def _png_grey(data: bytes) -> bool:
    """A PNG of 8- or 16-bit single-channel ids (colour type 0)."""
    kind = _png_kind(data)
    return kind is not None and kind[0] in (8, 16) and kind[1] == 0


def _decode_spng(data: bytes, rgb: bool) -> np.ndarray | None:
    """libspng for what it decodes exactly as Pillow does: 8-bit RGB (colour type 2) and 8-bit grey (0).

    (The pyspng build returns 16-bit greyscale as two channels, so those stay with OpenCV.)
    None when pyspng is missing or the file is another kind (or broken: the callers' decoders
    then name the problem)."""
    try:
        import pyspng
    except ImportError:  # an optional speed-up: the other decoders give the same pixels
        return None
    if _png_kind(data) != ((8, 2) if rgb else (8, 0)):
        return None
    try:
        return pyspng.load(data, format="RGB" if rgb else "L")
    except RuntimeError:
        return None


def _decode_cv2(data: bytes, flags: int) -> np.ndarray | None:
    import cv2

    return cv2.imdecode(np.frombuffer(data, np.uint8), flags)


def _open(path: str | os.PathLike, what: str, rgb: bool) -> np.ndarray:
    import cv2

    data = _read_bytes(path, what)
    fast = _decode_spng(data, rgb)
    if fast is not None:
        return fast
    if rgb:
        image = _decode_cv2(data, cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION)
        if image is not None and image.dtype == np.uint8:
            return image
    elif _png_grey(data):
        ids = _decode_cv2(data, cv2.IMREAD_UNCHANGED)
        if ids is not None and ids.ndim == 2:
            return ids
    return _open_pillow(io.BytesIO(data), path, what, rgb)


def _open_pillow(source, path: str | os.PathLike, what: str, rgb: bool) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(source) as image:
            if rgb and image.mode != "RGB":
                image = image.convert("RGB")
            return np.array(image)
    except FileNotFoundError as exc:
        raise RtsegError(f"{what} {path} does not exist") from exc
    except (OSError, ValueError, SyntaxError) as exc:  # UnidentifiedImageError is an OSError
        raise RtsegError(f"cannot read {what} {path}: {_first_line(exc)}") from exc


def read_image(path: str | os.PathLike, what: str = "image") -> np.ndarray:
    """``HxWx3`` uint8 RGB pixels of an image file; one-line ``RtsegError`` naming a bad file."""
    return _open(path, what, rgb=True)


def read_label_png(path: str | os.PathLike, what: str = "label file") -> np.ndarray:
    """A single-channel id PNG as its stored integers (uint8 or uint16, palette indices as stored)."""
    ids = _open(path, what, rgb=False)
    if ids.ndim != 2:
        raise RtsegError(f"{what} {path} has {ids.shape[2]} channels: not a single-channel id PNG "
                         "(one integer id per pixel, not colours: is it a _color.png?)")
    if ids.dtype.kind not in "iu":
        raise RtsegError(f"{what} {path} holds {ids.dtype} pixels; expected integer ids (8- or 16-bit PNG)")
    return ids


def write_png(path: str | os.PathLike, array: np.ndarray) -> Path:
    """Write an RGB(A) uint8, grey uint8 or uint16 array as a PNG, atomically (temporary file, rename)."""
    import cv2

    path = Path(path)
    array = np.ascontiguousarray(array)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if array.ndim == 3:
        if array.shape[2] not in (3, 4):
            raise ValueError(f"cannot write a {array.shape[2]}-channel image as PNG ({path})")
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR if array.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    ok, data = cv2.imencode(".png", array)
    if not ok:  # pragma: no cover - OpenCV encodes every uint8/uint16 array
        raise RtsegError(f"could not encode {path} as PNG ({array.dtype}, shape {array.shape})")
    with atomic_open(path, "wb") as handle:
        handle.write(data.tobytes())
    return path


def write_jpeg(path: str | os.PathLike, rgb: np.ndarray, quality: int = 95) -> Path:
    """Write an ``HxWx3`` uint8 RGB array as a JPEG (OpenCV's libjpeg-turbo), atomically."""
    import cv2

    path = Path(path)
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover - OpenCV encodes every HxWx3 uint8 array
        raise RtsegError(f"could not encode {path} as JPEG (shape {rgb.shape})")
    with atomic_open(path, "wb") as handle:
        handle.write(data.tobytes())
    return path


def write_palette_png(path: str | os.PathLike, ids: np.ndarray, palette: np.ndarray) -> Path:
    """Write ``HxW`` uint8 ids as a palette-mode PNG (the stored indices are the ids, as Pascal
    VOC's labels; ``palette``: up to 256 RGB colours), atomically. Pillow: OpenCV writes no palettes."""
    from PIL import Image

    path = Path(path)
    image = Image.fromarray(np.ascontiguousarray(ids, dtype=np.uint8), mode="P")
    image.putpalette(np.asarray(palette, np.uint8).reshape(-1).tolist())
    with atomic_open(path, "wb") as handle:
        image.save(handle, format="PNG")
    return path


def list_images(source: str | os.PathLike) -> list[tuple[Path, Path]]:
    """``(image path, path relative to the input)`` for a file, or every image under a folder, sorted."""
    source = Path(source)
    if source.is_file():
        return [(source, Path(source.name))]
    if not source.is_dir():
        raise RtsegError(f"input {source} does not exist")
    images = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise RtsegError(f"input folder {source} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return [(p, p.relative_to(source)) for p in images]
