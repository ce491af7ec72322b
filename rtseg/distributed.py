"""torch.distributed the torchrun way, and the one answer to "which rank am I, am I the main process".

``torchrun --nproc_per_node=N -m rtseg train ...`` (or several machines through torchrun's
rendezvous) sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
a plain ``rtseg train`` sets none of them and runs as a single process. Every place that
writes files or prints (rank 0's job) asks ``is_main_process()``; nothing else reads the
environment variables.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owned: bool = False  # this call created the process group (and its caller destroys it)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def process_rank() -> int:
    """This process's global rank: the process group's when one is up, else torchrun's ``RANK``, else 0."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's rank on its machine (which GPU it takes)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main_process() -> bool:
    """True for the process that writes files and prints (rank 0, or a single process)."""
    return process_rank() == 0


def init_distributed(device: torch.device, timeout: datetime.timedelta | None = None) -> DistInfo:
    """Join the process group torchrun describes (a single process: no-op), or reuse one that is up.

    The backend follows the device: NCCL for CUDA, gloo for the CPU. ``timeout`` bounds how
    long a collective waits (the benchmark's ranks wait hours for rank 0's evaluation).
    """
    if not launched_by_torchrun():
        return DistInfo()
    owned = not dist.is_initialized()
    if owned:
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        kwargs = {"timeout": timeout} if timeout is not None else {}
        dist.init_process_group(backend=backend, init_method="env://",
                                device_id=device if device.type == "cuda" else None, **kwargs)
    return DistInfo(dist.get_rank(), dist.get_world_size(), local_rank(), owned)


def cleanup_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def broadcast(tensor: torch.Tensor, info: DistInfo, src: int = 0) -> torch.Tensor:
    if info.enabled:
        dist.broadcast(tensor, src=src)
    return tensor


def broadcast_object(obj, info: DistInfo, src: int = 0):
    """Send a small picklable object (an error message, a path) from ``src`` to every rank."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
