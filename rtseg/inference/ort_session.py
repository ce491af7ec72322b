"""ONNX Runtime sessions as rtseg runs them: every graph optimisation on, ``threads`` intra-op threads.

Sessions keep ONNX Runtime's default of spinning intra-op threads (what a deployed program
gets, and faster than not spinning on a quiet machine); the speed protocol makes sure that no
other session's spinning threads run while one is timed (``rtseg.profiling.timing``).
"""

from __future__ import annotations

from pathlib import Path

from rtseg.errors import RtsegError


def providers_for(device: str) -> list[str]:
    import onnxruntime as ort

    if device == "cuda":
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise RtsegError("engine onnxruntime on cuda needs the onnxruntime-gpu package "
                             f"(this one offers {', '.join(ort.get_available_providers())})")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def create_session(model: str | Path | bytes, device: str = "cpu", threads: int | None = None, *,
                   profile_prefix: str | Path | None = None, optimized_path: str | Path | None = None):
    """An ``InferenceSession`` with every graph optimisation on and ``threads`` intra-op threads.

    ``profile_prefix``: turn on ONNX Runtime's profiler (its JSON file starts with this);
    ``optimized_path``: write the graph as optimised for this machine there (node names match
    the profile's)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)
    if optimized_path is not None:
        options.optimized_model_filepath = str(optimized_path)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: the int8 graph's benign warnings would drown the output
    if threads:
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
    source = model if isinstance(model, bytes) else str(model)
    try:
        return ort.InferenceSession(source, options, providers=providers_for(device))
    except RtsegError:
        raise
    except Exception as exc:  # onnxruntime raises its own exception types, all worth one line
        where = "the graph" if isinstance(model, bytes) else str(model)
        raise RtsegError(f"ONNX Runtime cannot load {where}: {exc}".splitlines()[0]) from exc
