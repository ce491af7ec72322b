"""The plainest deployed programs, as a check on the protocol: one session or one model, one loop.

``plain_session_seconds`` writes a graph and an input to a temporary folder and times them in
a fresh Python process that does nothing else: it creates one ``InferenceSession`` with the
given intra-op threads and ONNX Runtime's defaults otherwise (spinning on), runs it
``warmup`` times, then times ``runs`` calls back to back with ``time.perf_counter``. No
thread pool of rtseg, PyTorch or another session exists in that process, so its figure is
what a user's program gets. ``plain_torch_seconds`` does the same for PyTorch: as a user
writes it (``create_model(name).eval()``, ``torch.inference_mode()``, ``model(x).argmax(1)`` in
a loop), or an engine's end-to-end runner (eager with folding, compile, bf16) called in a plain
loop, in a process of its own. With ``allocator="reuse"`` (the protocol's default) the process
starts with glibc's environment for keeping freed memory (``rtseg.memory.ENVIRONMENT``), which
is how a deployment sets it and a check on rtseg's in-process ``mallopt``; ``"system"`` without.
``benchmarks/bench_speed.py`` prints each beside the protocol's end-to-end figure for the same
network and setting, which must agree within 10 %.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from rtseg.memory import ENVIRONMENT, preloaded_allocator

# Kept free of rtseg and torch on purpose: this is the whole program.
_PROGRAM = """
import json, sys, time
import numpy as np
import onnxruntime as ort

graph, data, threads, warmup, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
options = ort.SessionOptions()
options.intra_op_num_threads = threads
options.log_severity_level = 3
session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
feed = {session.get_inputs()[0].name: np.load(data)}
for _ in range(warmup):
    session.run(None, feed)
seconds = []
for _ in range(runs):
    began = time.perf_counter()
    session.run(None, feed)
    seconds.append(time.perf_counter() - began)
print(json.dumps(seconds))
"""


# PyTorch as a user runs it. Without settings: create_model(name).eval() and model(x).argmax(1);
# with them: the engine's end-to-end runner (rtseg.inference.build_runners), called in a plain loop.
_TORCH_PROGRAM = """
import json, sys, time
import torch
import rtseg

name, data, threads, warmup, runs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
settings = json.loads(sys.argv[6])
torch.set_num_threads(threads)
model = rtseg.create_model(name).eval()
x = torch.load(data, weights_only=True)
if settings is None:
    def step():
        return model(x).argmax(1)
else:
    from rtseg.inference import Backend, build_runners
    _, step_runner = build_runners(model, tuple(x.shape[-2:]), Backend(threads=threads, **settings))
    def step():
        return step_runner(x)
seconds = []
with torch.inference_mode():
    for _ in range(warmup):
        step()
    for _ in range(runs):
        began = time.perf_counter()
        step()
        seconds.append(time.perf_counter() - began)
print(json.dumps(seconds))
"""


def plain_torch_seconds(model_name: str, x, threads: int, settings: dict | None = None, *, warmup: int = 5,
                        runs: int = 20, timeout: float = 900.0, allocator: str = "reuse",
                        environment: dict[str, str] | None = None) -> list[float]:
    """Seconds of each of ``runs`` timed end-to-end calls in a process of its own: with ``settings``
    None ``create_model(model_name).eval()`` and ``model(x).argmax(1)``, as a user writes it;
    otherwise the end-to-end runner of ``Backend(**settings)`` in a plain loop (random weights:
    the speed of these engines does not depend on them). ``environment`` adds variables to the
    process's (a deployment setting read when torch loads, such as ``THP_MEM_ALLOC_ENABLE``)."""
    import torch

    with tempfile.TemporaryDirectory(prefix="rtseg-plain-") as work:
        data_path = Path(work) / "input.pt"
        torch.save(torch.as_tensor(x, dtype=torch.float32).contiguous(), data_path)
        return _run(_TORCH_PROGRAM, [model_name, str(data_path), str(threads), str(warmup), str(runs),
                                     json.dumps(settings)], timeout, "PyTorch", allocator, environment)


def program_environment(allocator: str) -> dict[str, str]:
    """The plain program's environment: with ``reuse``, glibc told to keep freed memory the way a
    deployment does it, from the start (``rtseg.memory.ENVIRONMENT``), not with rtseg's ``mallopt``."""
    environment = dict(os.environ)
    for name in ENVIRONMENT:
        environment.pop(name, None)
    if allocator == "reuse" and preloaded_allocator() is None:
        environment.update(ENVIRONMENT)
    return environment


def _run(program: str, arguments: list[str], timeout: float, what: str, allocator: str,
         environment: dict[str, str] | None = None) -> list[float]:
    done = subprocess.run([sys.executable, "-c", program, *arguments], capture_output=True, text=True,
                          timeout=timeout, check=False, env={**program_environment(allocator), **(environment or {})})
    if done.returncode != 0:
        raise RuntimeError(f"the plain {what} program failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def plain_session_seconds(graph: bytes, x: np.ndarray, threads: int, *, warmup: int = 10, runs: int = 30,
                          timeout: float = 600.0, allocator: str = "reuse") -> list[float]:
    """Seconds of each of ``runs`` timed calls of ``graph`` on ``x`` in a process of its own."""
    with tempfile.TemporaryDirectory(prefix="rtseg-plain-") as work:
        graph_path, data_path = Path(work) / "model.onnx", Path(work) / "input.npy"
        graph_path.write_bytes(graph)
        np.save(data_path, np.ascontiguousarray(x, dtype=np.float32))
        return _run(_PROGRAM, [str(graph_path), str(data_path), str(threads), str(warmup), str(runs)], timeout,
                    "ONNX Runtime", allocator)
