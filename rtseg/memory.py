"""How the process's memory allocator treats freed memory while a figure is timed.

PyTorch on the CPU has no caching allocator: every intermediate tensor is a ``malloc`` and a
``free``. glibc serves a block of 32 MiB or more (at 512x1024, a 32-channel fp32 feature map is
64 MiB) with a fresh ``mmap`` and gives it back with ``munmap``, and below that it returns free
memory at the top of the heap to the system; the next run then touches new pages, and the
kernel zeroes each one on a page fault. Measured for SkipNet-MobileNet in plain eager fp32 at
512x1024 on 2 cores (AMD EPYC, Zen 2): about 100,000 page faults (400 MB of zeroed pages) per
frame, and 2.8 instead of 3.9 FPS. How many a process gets depends on its heap's history
(glibc raises its mmap threshold after each large free), which is why the same model timed in
a long benchmark process and in a fresh one gave figures 14 % apart.

ONNX Runtime keeps its own arena, so it never paid this; PyTorch deployments get the same with
jemalloc or tcmalloc (``LD_PRELOAD``) or with two glibc settings, which is what rtseg applies:

- ``reuse`` (the default for speed figures): glibc's ``mallopt`` with ``M_MMAP_MAX=0`` (no block
  from ``mmap``, so none goes back with ``munmap``) and ``M_TRIM_THRESHOLD`` 2 GiB (free memory
  stays in the heap), for the block being timed. A deployed program gets the same with the
  environment ``ENVIRONMENT`` (``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2147483647``).
  The price is memory: glibc's free lists settle after about ten runs, holding a few times the
  largest tensor (about 500 MB more for 64 MiB blocks), which the block returns when it ends.
- ``system``: the allocator as the process has it, for comparison. "As the process has it"
  depends on its past: a free chunk that a ``reuse`` block left inside the heap (``malloc_trim``
  gives back its pages, not its place) or a raised mmap threshold can serve a large tensor
  without a fresh mapping, so only a fresh process shows glibc's defaults for certain
  (tests/test_memory.py compares the two policies in a child process for that reason).

Where glibc's ``mallopt`` is missing (macOS, musl) or jemalloc/tcmalloc is preloaded, ``reuse``
changes nothing and the record says so. ``FaultCounter`` lets the protocol report the
faults per timed run, so a figure paid for in zeroed pages is visible, not guessed at.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
from dataclasses import asdict, dataclass
from typing import Callable, Iterator, Sequence

try:
    import resource  # Unix only: the kernel's count of page faults
except ImportError:  # Windows
    resource = None

from rtseg.errors import RtsegError
from rtseg.options import ALLOCATORS, check_name

# glibc's mallopt parameters (malloc.h) and the values it starts with.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_DEFAULT_TRIM_THRESHOLD, _DEFAULT_MMAP_MAX = 128 * 1024, 65536
KEEP_TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: 2 GiB of free heap kept before any is returned

ENVIRONMENT = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(KEEP_TRIM_THRESHOLD)}


@dataclass(frozen=True)
class AllocatorRecord:
    """What was in effect while a figure was timed."""

    policy: str  # reuse | system
    applied: bool  # True when rtseg changed the allocator's settings for the block
    how: str  # in words, for the record

    def as_dict(self) -> dict:
        return asdict(self)


def preloaded_allocator() -> str | None:
    """``jemalloc`` or ``tcmalloc`` when one is preloaded into this process (``LD_PRELOAD``)."""
    preload = os.environ.get("LD_PRELOAD", "")
    for name in ("jemalloc", "tcmalloc"):
        if name in preload:
            return name
    return None


def _glibc():
    """glibc's ``(mallopt, malloc_trim)``, or None where the C library has none (macOS, musl)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt, malloc_trim = libc.mallopt, libc.malloc_trim
        # gnu_get_libc_version exists only in glibc: musl has a mallopt that ignores its arguments.
        libc.gnu_get_libc_version  # noqa: B018
    except (OSError, AttributeError):
        return None
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    malloc_trim.argtypes, malloc_trim.restype = (ctypes.c_size_t,), ctypes.c_int
    return mallopt, malloc_trim


@contextlib.contextmanager
def allocator(policy: str = "reuse") -> Iterator[AllocatorRecord]:
    """Run a block with the allocator ``policy`` (see the module docstring); afterwards glibc's
    settings are set back to its defaults and the free memory the block kept is returned to the
    system (``malloc_trim``). glibc's mmap threshold, which adapts to large frees, stays where it
    was: setting a trim threshold fixes it, and glibc has no call that would let it adapt again."""
    check_name(policy, ALLOCATORS, "allocator")
    preloaded = preloaded_allocator()
    if policy == "system":
        yield AllocatorRecord("system", False, f"the process's allocator as it is ({preloaded or 'not changed'})")
        return
    if preloaded is not None:
        yield AllocatorRecord("reuse", False, f"{preloaded} (preloaded) keeps freed memory itself")
        return
    functions = _glibc()
    if functions is None:
        yield AllocatorRecord("reuse", False, "no glibc mallopt here: the system allocator as it is")
        return
    if all(os.environ.get(name) == value for name, value in ENVIRONMENT.items()):
        # glibc read them at start: the process keeps freed memory already, and must go on doing so
        yield AllocatorRecord("reuse", False, "the environment keeps freed memory (" + " ".join(
            f"{name}={value}" for name, value in ENVIRONMENT.items()) + ")")
        return
    mallopt, malloc_trim = functions
    if not (mallopt(_M_MMAP_MAX, 0) and mallopt(_M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD)):
        raise RtsegError("glibc's mallopt refused M_MMAP_MAX=0 / M_TRIM_THRESHOLD; use --allocator system")
    try:
        yield AllocatorRecord("reuse", True, "glibc mallopt: M_MMAP_MAX=0, M_TRIM_THRESHOLD=2 GiB")
    finally:
        # back to what the process started with (its environment's values, else glibc's defaults),
        # not to glibc's defaults: a block timed while a runner is built must not undo a deployment's
        mallopt(_M_MMAP_MAX, _startup_value("MALLOC_MMAP_MAX_", _DEFAULT_MMAP_MAX))
        mallopt(_M_TRIM_THRESHOLD, _startup_value("MALLOC_TRIM_THRESHOLD_", _DEFAULT_TRIM_THRESHOLD))
        malloc_trim(0)  # what the block kept goes back to the system, as it would have without it


def _startup_value(name: str, default: int) -> int:
    """The glibc malloc setting the environment gave the process at start, else glibc's default."""
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        return default


def minor_page_faults() -> int | None:
    """This process's minor page faults so far (pages the kernel had to map, zeroed, on first
    touch); None where the system does not count them (Windows)."""
    if resource is None:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


class FaultCounter:
    """A timing step (``() -> seconds``) that also counts the page faults of its calls. The count
    is read outside the step, so the timed interval is the step's own."""

    def __init__(self, step: Callable[[], float]):
        self.step, self.calls, self.faults = step, 0, 0 if resource is not None else None

    def __call__(self) -> float:
        before = minor_page_faults()
        seconds = self.step()
        if before is not None:
            self.faults += minor_page_faults() - before
        self.calls += 1
        return seconds


def faults_record(record: AllocatorRecord, counters: Sequence[FaultCounter]) -> dict:
    """``record`` with the page faults per call of ``counters`` (None where they are not counted)."""
    calls = sum(c.calls for c in counters)
    counted = calls and all(c.faults is not None for c in counters)
    per_run = round(sum(c.faults for c in counters) / calls, 1) if counted else None
    return {**record.as_dict(), "page_faults_per_run": per_run}
