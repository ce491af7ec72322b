"""The plainest deployed program, as a check on the protocol: one ONNX Runtime session, one loop.

``plain_session_fps`` writes a graph and an input to a temporary folder and times them in a
fresh Python process that does nothing else: it creates one ``InferenceSession`` with the
given intra-op threads and ONNX Runtime's defaults otherwise (spinning on), runs it
``warmup`` times, then times ``runs`` calls back to back with ``time.perf_counter``. No
thread pool of rtseg, PyTorch or another session exists in that process, so its figure is
what a user's program gets; ``benchmarks/bench_speed.py`` prints it beside the protocol's
end-to-end figure for the same graph, which must agree within 10 %.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

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


def plain_session_seconds(graph: bytes, x: np.ndarray, threads: int, *, warmup: int = 10, runs: int = 30,
                          timeout: float = 600.0) -> list[float]:
    """Seconds of each of ``runs`` timed calls of ``graph`` on ``x`` in a process of its own."""
    with tempfile.TemporaryDirectory(prefix="rtseg-plain-") as work:
        graph_path, data_path = Path(work) / "model.onnx", Path(work) / "input.npy"
        graph_path.write_bytes(graph)
        np.save(data_path, np.ascontiguousarray(x, dtype=np.float32))
        done = subprocess.run([sys.executable, "-c", _PROGRAM, str(graph_path), str(data_path), str(threads),
                               str(warmup), str(runs)], capture_output=True, text=True, timeout=timeout,
                              check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the plain ONNX Runtime program failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
