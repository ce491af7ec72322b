"""Training-loader cost per core, side by side in one run: the pipeline rtseg had (Pillow decode,
torchvision v2 transforms with float normalisation on the CPU) against what the trainer runs now
(libspng decode through ``rtseg.data.io``, ``rtseg.data.augment.TrainAugmentation``: crop before scale on uint8, colour
jitter and normalisation on the device), with and without the decode cache.

Two pipelines on 1024x2048 images with 512x1024 crops: ``paper`` (the paper's recipe: scale
0.5, crop, flip) and ``augmented`` (random scale 0.5-2.0, crop, flip, colour jitter 0.2). Every
variant runs in this process on one thread, interleaved round by round over the same images,
and its CPU time per sample is measured (``time.process_time``): images/s per core is 1000 /
(CPU ms per image), and a GPU that trains at R images/s needs R / (images/s per core) loader
cores. "on the CPU" variants also count the jitter and normalisation that training does on the
GPU, for a machine without one.

    python benchmarks/bench_loader.py                  # renders 16 synthetic 1024x2048 images first
    python benchmarks/bench_loader.py --data /data/cityscapes --images 64 --rounds 5
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time


def parse_args(argv=None) -> argparse.Namespace:
    from rtseg.commands.arguments import size_argument

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="a Cityscapes root (default: render a synthetic one in a temp folder)")
    parser.add_argument("--split", default="train")
    parser.add_argument("--images", type=int, default=16, help="images per round (default 16)")
    parser.add_argument("--size", type=size_argument, default=(1024, 2048), help="synthetic image size")
    parser.add_argument("--crop", type=size_argument, default=(512, 1024), help="training crop (default 512x1024)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    return parser.parse_args(argv)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            info = handle.read()
    except OSError:
        return platform.processor() or "unknown CPU"
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((line for line in info.splitlines() if line.startswith("flags")), "")
    return name + (", AVX-512" if "avx512f" in flags else ", AVX2" if "avx2" in flags else "")


class PillowV2Dataset:
    """The loader as it was before the dataset interface: Pillow decodes, the official label table
    maps label ids, and the torchvision v2 pipeline transforms and normalises on the CPU."""

    def __init__(self, samples, transforms):
        self.samples, self.transforms = samples, transforms

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        import numpy as np
        import torch
        from PIL import Image
        from torchvision import tv_tensors

        from rtseg.data.labels import LABEL_TO_TRAIN

        sample = self.samples[index]
        with Image.open(sample.image) as image:
            pixels = np.array(image.convert("RGB"))
        with Image.open(sample.label) as label:
            ids = np.array(label)
        image = tv_tensors.Image(torch.from_numpy(pixels).permute(2, 0, 1).contiguous())
        mask = tv_tensors.Mask(torch.from_numpy(LABEL_TO_TRAIN[ids]))
        image, mask = self.transforms(image, mask)
        return {"image": image, "label": mask.to(torch.int64)}


def variants(root: str, split: str, crop, cache_dir: str) -> dict:
    """name -> (dataset, whether the device-side steps run on the CPU after it)."""
    from rtseg.data.augment import TrainAugmentation
    from rtseg.data.cityscapes import CityscapesLayout
    from rtseg.data.dataset import SegmentationDataset
    from rtseg.data.transforms import train_transforms

    layout = CityscapesLayout(root)
    samples = layout.samples(split)
    recipes = {"paper": dict(scale=(0.5, 0.5), color_jitter=0.0), "augmented": dict(scale=(0.5, 2.0), color_jitter=0.2)}
    out = {}
    for name, recipe in recipes.items():
        out[f"{name}: before (Pillow + torchvision v2, normalised on the CPU)"] = (
            PillowV2Dataset(samples, train_transforms(crop=crop, **recipe)), False)
        fast = SegmentationDataset(layout, split, transforms=TrainAugmentation(crop=crop, **recipe))
        out[f"{name}: now (libspng + TrainAugmentation; jitter, normalise on the GPU)"] = (fast, False)
        out[f"{name}: now, jitter and normalise on the CPU too"] = (fast, True)
        cached = SegmentationDataset(layout, split, transforms=TrainAugmentation(crop=crop, **recipe), cache=cache_dir)
        out[f"{name}: now + decode cache (epochs after the first)"] = (cached, False)
    return out


def cpu_ms_per_image(dataset, device_steps_on_cpu: bool, count: int) -> float:
    import torch

    from rtseg.data.augment import to_network_input
    from rtseg.normalisation import IMAGENET_MEAN, IMAGENET_STD

    started = time.process_time()
    for index in range(count):
        item = dataset[index % len(dataset)]
        if device_steps_on_cpu:
            batch = {k: v[None] for k, v in item.items() if isinstance(v, torch.Tensor)}
            to_network_input(batch, torch.device("cpu"), IMAGENET_MEAN, IMAGENET_STD)
    return 1000 * (time.process_time() - started) / count


def main(argv=None) -> int:
    args = parse_args(argv)
    import cv2
    import torch

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    from rtseg.data.synthetic import generate_synthetic_cityscapes

    root, temp = args.data, tempfile.mkdtemp(prefix="rtseg_bench_loader_")
    try:
        if root is None:
            root = os.path.join(temp, "data")
            print(f"rendering {args.images} synthetic {args.size[0]}x{args.size[1]} images into {root} ...")
            generate_synthetic_cityscapes(root, train=args.images, val=0, test=0, size=args.size, seed=0,
                                          workers=min(4, os.cpu_count() or 1), progress=False)
        runs = variants(root, args.split, args.crop, os.path.join(temp, "cache"))
        count = min(args.images, len(next(iter(runs.values()))[0]))
        for dataset, _ in runs.values():  # warm-up: page cache, lazy imports, and the decode cache's first epoch
            for index in range(count):
                dataset[index]
        times: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.rounds):
            for name, (dataset, on_cpu) in runs.items():
                times[name].append(cpu_ms_per_image(dataset, on_cpu, count))
        print(f"\n{count} images of {root} ({args.split}), {args.crop[0]}x{args.crop[1]} crops, {args.rounds} "
              f"interleaved rounds, one thread; CPU: {cpu_name()}, {os.cpu_count()} cores, load average "
              f"{os.getloadavg()[0]:.1f}\n")
        print("| pipeline | CPU ms/image | images/s per core | vs before |")
        print("|---|---:|---:|---:|")
        before = None
        for name, samples in times.items():
            ms = statistics.median(samples)
            before = ms if "before" in name else before
            print(f"| {name} | {ms:.1f} | {1000 / ms:.1f} | {before / ms:.2f}x |", flush=True)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
