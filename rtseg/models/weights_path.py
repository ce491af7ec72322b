"""Where local weights files live: ``${VARIABLE}`` and ``${VARIABLE:-default}`` in their paths.

Weights that no library downloads (Megvii's ShuffleNet v1, a converted release) are files the
user fetches once. Configs name them as ``${RTSEG_WEIGHTS:-weights}/<file>``: the folder given
by the environment variable ``RTSEG_WEIGHTS``, else ``weights/`` under the working directory.
``os.path.expandvars`` is not enough: it has no defaults and leaves an unset variable in the
path silently, so a config would name a file ``$RTSEG_WEIGHTS/...`` that can never exist.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Mapping

from rtseg.errors import RtsegError

WEIGHTS_DIR_VARIABLE = "RTSEG_WEIGHTS"
DEFAULT_WEIGHTS_DIR = "weights"
# How a config names a file in that folder.
WEIGHTS_DIR = f"${{{WEIGHTS_DIR_VARIABLE}:-{DEFAULT_WEIGHTS_DIR}}}"

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_weights_path(value: str | os.PathLike, environ: Mapping[str, str] | None = None) -> Path:
    """``"${RTSEG_WEIGHTS:-weights}/x.pth"`` -> ``Path("/data/w/x.pth")`` when RTSEG_WEIGHTS=/data/w.

    ``${NAME}`` takes the variable (an error if it is unset or empty), ``${NAME:-default}``
    the default when it is unset or empty; ``~`` expands to the home folder. Anything else in
    the text is kept as written, so a plain path comes back unchanged.
    """
    environ = os.environ if environ is None else environ
    text = os.fspath(value)

    def substitute(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        found = environ.get(name) or default
        if found is None:
            raise RtsegError(f"weights path {text!r} names ${{{name}}}, which is not set: set it to the folder "
                             f"that holds the file, or write ${{{name}:-FOLDER}} to give a default")
        return found

    return Path(os.path.expanduser(_VARIABLE.sub(substitute, text)))
