"""Side-by-side speed of models x engine/precision settings, interleaved, on this machine.

    python benchmarks/bench_speed.py                       # the issue's goals, 512x1024, 2 threads
    python benchmarks/bench_speed.py --models skipnet-mobilenet_v1 --settings plain,onnxruntime-int8

Every (model, setting) is built and warmed up first (``rtseg.profiling.speed.settle``); then
the timed runs go round robin over all of them (A, B, C, A, B, C, ...), end-to-end then
model-only each time, so a load change on a shared CPU hits every setting alike. Absolute
FPS on a busy machine drift; the ratios between columns of one run are what this reports.

Quality: every setting's label maps are compared with plain fp32 eager on real-looking
images (the synthetic Cityscapes val split, generated into a temporary folder unless
``--data`` gives a root); with ``--checkpoint NAME=CKPT`` (trained weights) and labels in the
data, each setting's mIoU is reported too. int8 settings calibrate on the train split.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

# name -> how the setting is built; "plain" is what a user gets from model.eval() in PyTorch.
SETTINGS = {
    "plain": dict(engine="eager", precision="fp32", fold_bn=False, channels_last=False, subpixel=False),
    "eager-fp32": dict(engine="eager", precision="fp32"),
    "eager-bf16": dict(engine="eager", precision="bf16"),
    "compile-fp32": dict(engine="compile", precision="fp32"),
    "compile-bf16": dict(engine="compile", precision="bf16"),
    "onnxruntime-fp32": dict(engine="onnxruntime", precision="fp32"),
    "onnxruntime-int8": dict(engine="onnxruntime", precision="int8"),
}
DEFAULT_MODELS = ("skipnet-mobilenet_v1", "skipnet-shufflenet_v1", "enet")
DEFAULT_SETTINGS = ("plain", "eager-fp32", "eager-bf16", "compile-fp32", "compile-bf16", "onnxruntime-fp32",
                    "onnxruntime-int8")


def parse_args(argv=None) -> argparse.Namespace:
    from rtseg.commands.arguments import size_argument

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated model names")
    parser.add_argument("--settings", default=",".join(DEFAULT_SETTINGS),
                        help=f"comma-separated, from: {', '.join(SETTINGS)}")
    parser.add_argument("--size", type=size_argument, default=(512, 1024))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=20, help="timed runs of each (model, setting), >= 20")
    parser.add_argument("--data", help="Cityscapes-layout root with train and val images (default: generate "
                                       "a small synthetic one in a temporary folder)")
    parser.add_argument("--images", type=int, default=4, help="val images for the agreement/mIoU check")
    parser.add_argument("--quality-data", help="Cityscapes-layout root for the agreement/mIoU check of models "
                                               "with --checkpoint, at its images' own size (default: --data at "
                                               "--size); use the size the checkpoint was trained at")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=CKPT",
                        help="trained weights for model NAME (repeatable)")
    parser.add_argument("--output", help="write the results as JSON to this file")
    args = parser.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    args.settings = [s for s in args.settings.split(",") if s]
    unknown = [s for s in args.settings if s not in SETTINGS]
    if unknown:
        parser.error(f"unknown setting {unknown[0]!r}; choose from {', '.join(SETTINGS)}")
    if "plain" not in args.settings:
        args.settings.insert(0, "plain")  # the reference for ratios and agreement
    if args.runs < 20:
        parser.error("--runs must be at least 20")
    args.checkpoint = dict(item.split("=", 1) for item in args.checkpoint)
    return args


def load_model(name: str, checkpoints: dict[str, str]):
    if name in checkpoints:
        from rtseg.models import load_model as load

        return load(checkpoints[name], "cpu")[0], True
    import rtseg

    return rtseg.create_model(name).eval(), False


def data_root(args, work: str) -> Path:
    if args.data:
        return Path(args.data)
    from rtseg.data.synthetic import generate_synthetic_cityscapes

    root = Path(work) / "synthetic"
    print(f"generating {args.images} synthetic val and 4 train images at {args.size[0]}x{args.size[1]} ...",
          file=sys.stderr)
    generate_synthetic_cityscapes(root, train=4, val=args.images, test=0, size=args.size, progress=False)
    return root


def val_samples(root: Path, size, count: int, mean, std):
    """``[(normalised 1x3xHxW image, label-id map or None)]`` from the val split."""
    from rtseg.data.cityscapes import split_pairs
    from rtseg.data.io import read_label_png
    from rtseg.data.processing import image_to_input
    from rtseg.inference.calibration import find_images

    pairs = split_pairs(root, "val")[:count] or [(p, None) for p in find_images(root, ("val",))[:count]]
    samples = []
    for image_path, label_path in pairs:
        x = image_to_input(image_path, mean, std, size)
        label = None
        if label_path is not None:
            label = torch.from_numpy(read_label_png(label_path).astype("int64"))
            if tuple(label.shape) != tuple(size):
                label = None  # scored at the network's size only
        samples.append((x, label))
    return samples


def miou(labels_by_image, samples) -> float | None:
    from rtseg.data.labels import train_to_label_ids
    from rtseg.metrics import CityscapesMetrics

    if any(label is None for _, label in samples):
        return None
    metrics = CityscapesMetrics()
    for predicted, (_, label) in zip(labels_by_image, samples):
        metrics.update(train_to_label_ids(predicted[0].to(torch.uint8)).long(), label)
    return metrics.compute()["miou"]


def main(argv=None) -> int:
    args = parse_args(argv)
    from tqdm import tqdm

    from rtseg.data.io import read_image
    from rtseg.inference import Backend, build_runners
    from rtseg.inference.calibration import find_images, images_from_root
    from rtseg.normalisation import model_normalisation
    from rtseg.profiling.hardware import describe
    from rtseg.profiling.timing import TimingStats, settle, stopwatch

    torch.set_num_threads(args.threads)
    command = "python benchmarks/bench_speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    entries = []  # one per (model, setting)
    with tempfile.TemporaryDirectory(prefix="rtseg-bench-") as work:
        root = data_root(args, work)
        for name in args.models:
            model, trained = load_model(name, args.checkpoint)
            mean, std = model_normalisation(model)
            samples = val_samples(root, args.size, args.images, mean, std)
            calibration = images_from_root(root, args.size, 8, mean, std)
            quality = None
            if trained and args.quality_data:
                quality_root = Path(args.quality_data)
                quality_size = tuple(read_image(find_images(quality_root, ("val",))[0]).shape[:2])
                quality = (quality_size, val_samples(quality_root, quality_size, args.images, mean, std),
                           images_from_root(quality_root, quality_size, 8, mean, std))
            for setting in args.settings:
                began = time.perf_counter()
                print(f"building {name} / {setting} ...", file=sys.stderr)
                backend = Backend(threads=args.threads, **SETTINGS[setting])
                runners = build_runners(model, args.size, backend, calibration=calibration)
                entry = {"model": name, "setting": setting, "trained": trained, "runners": runners,
                         "build_s": time.perf_counter() - began, "samples": samples, "quality_size": args.size,
                         "speed_input": samples[0][0],
                         "labels": [runners[1](x).cpu() for x, _ in samples]}
                if quality is not None:  # the same setting built again at the checkpoint's own size
                    quality_runners = build_runners(model, quality[0], backend, calibration=quality[2])
                    entry.update(samples=quality[1], quality_size=quality[0],
                                 labels=[quality_runners[1](x).cpu() for x, _ in quality[1]])
                entries.append(entry)
    steps = []
    for entry in tqdm(entries, desc="warm-up", file=sys.stderr):
        model_only, end_to_end = entry["runners"]
        x = entry["speed_input"]  # a real-looking image at --size
        entry["steps"] = (stopwatch(end_to_end, x), stopwatch(model_only, x))
        entry["warmup"] = [settle(step, max_runs=30, max_seconds=30).runs for step in entry["steps"]]
        steps.append(entry["steps"])
    times = [([], []) for _ in entries]
    for _ in tqdm(range(args.runs), desc="timed rounds", file=sys.stderr):
        for record, (e2e_step, model_step) in zip(times, steps):
            record[0].append(e2e_step())
            record[1].append(model_step())
    results = []
    reference = {}
    for entry, (e2e, model_only) in zip(entries, times):
        row = {"model": entry["model"], "setting": entry["setting"], **{k: v for k, v in SETTINGS[entry["setting"]].items()
                                                                          if k in ("engine", "precision")},
               "end_to_end": TimingStats.from_seconds(e2e).as_dict(),
               "model_only": TimingStats.from_seconds(model_only).as_dict(),
               "warmup_runs": entry["warmup"], "build_s": round(entry["build_s"], 1)}
        if entry["setting"] == "plain":
            reference[entry["model"]] = entry
        plain = reference[entry["model"]]
        same = sum(int((a == b).sum()) for a, b in zip(entry["labels"], plain["labels"]))
        total = sum(a.numel() for a in plain["labels"])
        row["agreement_with_plain"] = round(same / total, 6)
        row["miou"] = miou(entry["labels"], entry["samples"]) if entry["trained"] else None
        row["quality_size"] = "x".join(map(str, entry["quality_size"]))
        results.append(row)
    summary = summarise(results, args)
    report = {"command": command, "size": f"{args.size[0]}x{args.size[1]}", "threads": args.threads,
              "runs": args.runs, "hardware": describe("cpu", args.threads), "results": results, "summary": summary}
    print_report(report)
    if args.output:
        from rtseg.atomic import atomic_open

        with atomic_open(args.output, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2, default=str)
    return 0


def summarise(results, args) -> dict:
    """Best setting per model and its speed-up over plain; ShuffleNet vs ENet per setting."""
    fps = {(r["model"], r["setting"]): r["end_to_end"]["fps_median"] for r in results}
    summary = {"best": {}, "pairs": {}}
    for name in args.models:
        own = {s: fps[(name, s)] for s in args.settings}
        best = max(own, key=own.get)
        summary["best"][name] = {"setting": best, "fps": own[best], "plain_fps": own["plain"],
                                 "speedup_over_plain": round(own[best] / own["plain"], 3)}
    for a, b in (("skipnet-shufflenet_v1", "enet"), ("skipnet-mobilenet_v1", "enet")):
        if a in args.models and b in args.models:
            per_setting = {s: round(fps[(a, s)] / fps[(b, s)], 3) for s in args.settings}
            best_a, best_b = summary["best"][a], summary["best"][b]
            summary["pairs"][f"{a} / {b}"] = {"per_setting": per_setting,
                                               "best_vs_best": round(best_a["fps"] / best_b["fps"], 3)}
    return summary


def print_report(report) -> None:
    hw = report["hardware"]
    print(f"\n{report['command']}")
    print(f"{hw['cpu']} ({', '.join(hw['cpu_flags'])}), {report['threads']} threads, size {report['size']}, "
          f"{report['runs']} interleaved rounds, load average {hw['load_average_1min']}")
    print(f"{'model':24s} {'setting':18s} {'e2e FPS':>8s} {'p10':>6s} {'model FPS':>9s} {'x plain':>8s} "
          f"{'agree':>8s} {'mIoU':>6s}  (agreement with plain and mIoU at the quality size)")
    plain = {r["model"]: r["end_to_end"]["fps_median"] for r in report["results"] if r["setting"] == "plain"}
    for r in report["results"]:
        e2e = r["end_to_end"]
        miou = f"{100 * r['miou']:.1f}" if r["miou"] is not None else "-"
        print(f"{r['model']:24s} {r['setting']:18s} {e2e['fps_median']:8.2f} {e2e['fps_p10']:6.2f} "
              f"{r['model_only']['fps_median']:9.2f} {e2e['fps_median'] / plain[r['model']]:8.2f} "
              f"{100 * r['agreement_with_plain']:7.2f}% {miou:>6s}")
    for name, best in report["summary"]["best"].items():
        print(f"best for {name}: {best['setting']} at {best['fps']:.2f} FPS end-to-end, "
              f"{best['speedup_over_plain']:.2f}x plain fp32 eager ({best['plain_fps']:.2f} FPS)")
    for pair, values in report["summary"]["pairs"].items():
        per = ", ".join(f"{s} {v:.2f}x" for s, v in values["per_setting"].items())
        print(f"{pair} end-to-end FPS ratio: {per}; best vs best {values['best_vs_best']:.2f}x")


if __name__ == "__main__":
    sys.exit(main())
