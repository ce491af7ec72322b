"""What a speed figure was measured on: CPU, GPU, threads, library versions, machine load.

A frames-per-second number means nothing without these, and the RTSeg paper's lack of them
is why its users could not reproduce its speeds. ``describe`` gathers them for the record.
"""

from __future__ import annotations

import os
import platform
from importlib import metadata

# CPU features that decide which kernels run (AVX-512, VNNI for int8, AMX for bf16/int8).
_INTERESTING_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512_fp16",
                      "amx_tile", "amx_bf16", "amx_int8", "amx_fp16", "asimd", "sve", "bf16")


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    present = set(value.split())
                    return [flag for flag in _INTERESTING_FLAGS if flag in present]
    except OSError:
        pass
    return []


# CPU flags of native bfloat16 arithmetic (x86 AVX512-BF16 / AMX, Arm's BF16 extension).
BF16_FLAGS = ("avx512_bf16", "amx_bf16", "bf16")


def has_native_bf16(flags: list[str] | None = None) -> bool:
    """Whether the CPU computes in bfloat16; without it oneDNN emulates bf16, far slower than fp32."""
    return any(flag in (cpu_flags() if flags is None else flags) for flag in BF16_FLAGS)


def usable_cores() -> int:
    """Cores this process may run on (cgroup/affinity aware), not the machine's total."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def library_versions() -> dict[str, str | None]:
    versions = {}
    for name in ("torch", "onnxruntime", "onnx", "numpy", "torchao"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    versions["python"] = platform.python_version()
    return versions


def describe(device: str = "cpu", threads: int | None = None) -> dict:
    """Hardware and software of this run, as plain JSON-able values."""
    import torch

    info = {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cores": os.cpu_count(),
        "usable_cores": usable_cores(),
        "threads": threads if threads is not None else torch.get_num_threads(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "os": f"{platform.system()} {platform.release()}",
        "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "gpu": None,
        "versions": library_versions(),
    }
    if device == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["versions"]["cuda"] = torch.version.cuda
        info["versions"]["cudnn"] = torch.backends.cudnn.version()
    return info
