"""PaddlePaddle ``.pdparams`` files (PaddleSeg's released weights), read without PaddlePaddle
and without running anything the file names.

``paddle.save(layer.state_dict(), path)`` (``paddle/framework/io.py``, ``_build_saved_state_dict``
and ``_pickle_save``) writes a pickle, protocol 2 to 4, of ``{structured name: numpy.ndarray}``
plus ``"StructuredToParameterName@@"``, a dict of strings (names inside Paddle's program).
No library reads that format safely: ``torch.load(weights_only=True)`` expects PyTorch's own
container, and ``pickle.load`` would import and call whatever the file names. So this module
unpickles with an allowlist, the way the ``pickle`` documentation's "Restricting Globals"
recipe and ``torch.load(weights_only=True)`` do it: the only globals a file may name are
numpy's array reconstructor, ``numpy.ndarray`` and ``numpy.dtype`` (and, for protocol 2,
``_codecs.encode`` to latin-1, how it spells bytes); anything else is refused
before it is imported. Object arrays (whose elements would be arbitrary pickles) are refused
too, so what comes back is plain numeric arrays, turned into tensors.

The alternative, refusing ``.pdparams`` with a one-line error that says to convert it with
PaddlePaddle first, would make every PaddleSeg user install PaddlePaddle for a file that holds
nothing but arrays.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import torch

from rtseg.errors import RtsegError

_NAME_TABLE = "StructuredToParameterName@@"
_RECONSTRUCT = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's _reconstruct, wherever this numpy keeps it


def _latin1(text: str, encoding: str) -> bytes:
    # Protocol 2 writes a bytes object (an array's raw data) as _codecs.encode(text, "latin1").
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,  # files written with numpy 1.x
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,  # numpy 2.x
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1,
}


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are allowed") from None


def read_pdparams(path: str | Path) -> dict[str, torch.Tensor]:
    """``{structured name: tensor}`` from a ``paddle.save``'d state dict."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            saved = _ArraysOnlyUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise RtsegError(f"cannot read PaddlePaddle weights {path}: {type(exc).__name__}: {exc}"
                         .splitlines()[0]) from exc
    if not isinstance(saved, dict):
        raise RtsegError(f"{path} holds a {type(saved).__name__}, not a paddle.save'd state dict")
    state = {}
    for key, value in saved.items():
        if key == _NAME_TABLE:
            continue
        if not isinstance(value, np.ndarray) or value.dtype.hasobject:
            raise RtsegError(f"{path}: entry {key!r} is a {type(value).__name__}, not a numeric array "
                             "(a file split by paddle.save's protocol 2/3 for >4 GB tensors is not supported)")
        state[str(key)] = torch.from_numpy(np.ascontiguousarray(value))
    if not state:
        raise RtsegError(f"{path} holds no arrays")
    return state
