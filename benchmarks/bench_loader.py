"""Images per second of the training data loader: PNG decode + train transforms (random scale
0.5-2.0, 512x1024 crop, flip, colour jitter, normalise) from full-size 1024x2048 images, for
DataLoader worker counts 0, 1 and 2. Tells whether loading can keep a GPU fed.

    python benchmarks/bench_loader.py                  # renders 16 synthetic 1024x2048 images first
    python benchmarks/bench_loader.py --data /data/cityscapes --workers 0 4 8
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import shutil
import sys
import tempfile
import time


def parse_args(argv=None) -> argparse.Namespace:
    from rtseg.commands.arguments import size_argument

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="a Cityscapes root (default: render a synthetic one in a temp folder)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--images", type=int, default=16, help="synthetic images to render (default 16)")
    parser.add_argument("--size", type=size_argument, default=(1024, 2048), help="synthetic image size")
    parser.add_argument("--crop", type=size_argument, default=(512, 1024), help="training crop (default 512x1024)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="worker counts (default 0 1 2)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--threads", type=int, help="torch intra-op threads of the main process (default: "
                                                    "torch's choice; workers always use 1)")
    parser.add_argument("--epochs", type=int, default=3, help="passes over the data per worker count")
    return parser.parse_args(argv)


def _cpu_seconds() -> float:
    """CPU time of this process and of its finished children (the loader workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(dataset, workers: int, batch_size: int, epochs: int) -> tuple[float, float, float]:
    """(images/s after the first batch, seconds to the first batch, CPU ms per image in all
    processes). The CPU figure does not depend on how busy the machine is: on an idle machine
    images/s is about cores x 1000 / (CPU ms per image) until the workers are out of cores."""
    import torch
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers, drop_last=False,
                        persistent_workers=workers > 0, generator=torch.Generator().manual_seed(0))
    cpu = _cpu_seconds()
    start = time.perf_counter()
    first, images, total = None, 0, 0
    for _ in range(epochs):
        for batch in loader:
            total += batch["image"].shape[0]
            if first is None:
                first = time.perf_counter()
                continue
            images += batch["image"].shape[0]
    end = time.perf_counter()
    del loader  # joins the workers, so their CPU time is counted
    gc.collect()
    cpu_ms = (_cpu_seconds() - cpu) * 1000 / max(total, 1)
    return images / max(end - first, 1e-9), first - start, cpu_ms


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from rtseg.data.cityscapes import CityscapesDataset
    from rtseg.data.synthetic import generate_synthetic_cityscapes
    from rtseg.data.transforms import train_transforms

    root, temp = args.data, None
    if root is None:
        temp = tempfile.mkdtemp(prefix="rtseg_bench_loader_")
        root = temp
        print(f"rendering {args.images} synthetic {args.size[0]}x{args.size[1]} images into {root} ...")
        generate_synthetic_cityscapes(root, train=args.images, val=0, test=0, size=args.size, seed=0,
                                      workers=min(4, os.cpu_count() or 1))
    try:
        dataset = CityscapesDataset(root, args.split, transforms=train_transforms(crop=args.crop))
        print(f"\n{len(dataset)} images, {args.crop[0]}x{args.crop[1]} crops, batch {args.batch_size}, "
              f"{args.epochs} passes; torch threads in the main process: {torch.get_num_threads()}, "
              f"CPU cores: {os.cpu_count()}\n")
        print("| workers | images/s | wall ms/image | CPU ms/image | first batch (s) |")
        print("|--------:|---------:|--------------:|-------------:|----------------:|")
        for workers in args.workers:
            rate, startup, cpu_ms = measure(dataset, workers, args.batch_size, args.epochs)
            print(f"| {workers:7d} | {rate:8.1f} | {1000 / rate:13.1f} | {cpu_ms:12.1f} | {startup:15.2f} |",
                  flush=True)
        print(f"\nload average during the run: {os.getloadavg()[0]:.1f} (on {os.cpu_count()} cores)")
    finally:
        if temp:
            shutil.rmtree(temp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
