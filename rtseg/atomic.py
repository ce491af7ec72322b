"""Writing files so that nothing is ever half written: a temporary file beside the target,
renamed onto it only when complete (``os.replace`` is atomic on one file system).

Every file rtseg writes (checkpoints, logs, configs, predictions, reports, ONNX graphs,
videos) goes through here, so the rule and its details live in one place: the temporary
file keeps the target's suffix (writers such as FFmpeg pick the format from it), is removed
on any error, and gets the permissions a plain ``open`` would give (mkstemp's are 0600).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator


def _default_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write to; it replaces ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, _default_mode())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb", fsync: bool = False, **kwargs) -> Iterator[IO]:
    """``open(path, mode)`` that only replaces ``path`` once the block ends without error.

    ``fsync`` flushes the data to disk before the rename (checkpoints: a crash of the
    machine, not only of the process, must leave the previous file or the whole new one).
    """
    with atomic_path(path) as tmp:
        with open(tmp, mode, **kwargs) as handle:
            yield handle
            if fsync:
                handle.flush()
                os.fsync(handle.fileno())
