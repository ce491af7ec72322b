"""ONNX Runtime, the fp32 graph with and without the per-pixel layers moved before the last
pixel shuffle (``rtseg.inference.onnx_rewrite.pointwise_before_depth_to_space``), side by side.

    python benchmarks/bench_onnx_rewrites.py                          # the four UNets and a SkipNet
    python benchmarks/bench_onnx_rewrites.py --models unet-shufflenet_v1 --runs 40

Both graphs come from one model (random weights) and take the argmax before the last shuffle;
they differ only in the move. Each is one ONNX Runtime session timed end to end (image tensor
to labels), the sessions in blocks after the threads are idle (as the int8 plan times its
candidates, ``rtseg.inference.int8_layers.time_graphs``). The ratio is unmoved over moved, so
above 1 means the move is faster; a model without per-pixel layers after its last shuffle
(SkipNet) gives the same graph twice, this run's noise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

import rtseg
from rtseg.inference.int8_layers import time_graphs
from rtseg.inference.onnx_export import INPUT_NAME, export_onnx, sub_graph
from rtseg.inference.ort_session import create_session
from rtseg.memory import allocator
from rtseg.profiling.hardware import describe

MODELS = ("unet-shufflenet_v1", "unet-mobilenet_v1", "unet-resnet18", "unet-vgg16", "skipnet-shufflenet_v1")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--size", default="512x1024")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args(argv)
    height, width = (int(v) for v in args.size.split("x"))
    torch.set_num_threads(args.threads)
    hardware = describe("cpu", args.threads)
    print(f"{hardware['cpu']} ({', '.join(hardware['cpu_flags'])}), {args.threads} threads, "
          f"onnxruntime {ort.__version__}, {args.size}, median of {args.runs} runs, freed memory kept\n")
    print("| model | unmoved ms | moved ms | unmoved / moved | labels agree |")
    print("|---|---|---|---|---|")
    x = np.random.default_rng(0).standard_normal((1, 3, height, width)).astype(np.float32)
    for name in args.models.split(","):
        torch.manual_seed(0)
        model = rtseg.create_model(name, num_classes=19).eval()
        with tempfile.TemporaryDirectory(prefix="rtseg-bench-") as work:
            graphs = {kind: sub_graph(export_onnx(model, Path(work) / f"{kind}.onnx", (height, width),
                                                   pointwise_first=kind == "moved"), "labels")
                      for kind in ("unmoved", "moved")}
        unmoved, moved = (create_session(g, "cpu", args.threads).run(None, {INPUT_NAME: x})[0]
                          for g in graphs.values())
        with allocator("reuse"):
            ms = time_graphs(graphs, x, args.threads, runs=args.runs)
        print(f"| {name} | {ms['unmoved']:.1f} | {ms['moved']:.1f} | {ms['unmoved'] / ms['moved']:.2f}x | "
              f"{100 * float((unmoved == moved).mean()):.3f} % |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
