"""Side-by-side speed of models x engine/precision settings on this machine, and the issue's goals.

    python benchmarks/bench_speed.py --goals --images 2          # the goals group + plain-program check
    python benchmarks/bench_speed.py --grid                      # 12 grid models + ENet, SegNet: best vs plain
    python benchmarks/bench_speed.py --realtime --end-to-end-only   # today's models beside SkipNet-ShuffleNet, ENet
    python benchmarks/bench_speed.py --models skipnet-mobilenet_v1 --settings plain,onnxruntime-int8

Models are timed in groups: every (model, setting) of a group is built (a setting that fails,
such as a torch.compile that would fall back to eager, is reported as failed and not timed),
warmed up until settled, then timed with the speed protocol's rules
(``rtseg.profiling.timing.time_in_blocks``): blocks of back-to-back runs, the entries taking
turns, each block after this process's threads are idle, so no entry's thread pool disturbs
another's and a load change on a shared CPU hits every entry alike. The ratios between
entries of one group are what this reports; absolute FPS drift with the machine's load.
``--goals`` times SkipNet-MobileNet, SkipNet-ShuffleNet and ENet in one group; ``--grid``
times each other model in a group of its own (their memory would not fit at once);
``--realtime`` times each of today's real-time models (``REALTIME_MODELS``) in a group of its
own, and SkipNet-ShuffleNet and ENet, the paper's points of comparison, in one group unless
``--goals`` already timed them.

Quality: every setting's label maps are compared with plain fp32 eager on real-looking
images (the synthetic val split, generated in a temporary folder unless ``--data`` is given);
with ``--checkpoint NAME=CKPT`` and ``--quality-data ROOT`` each setting is rebuilt at the
checkpoint's own size (the int8 layer plan chosen at ``--size`` is kept) and scored (mIoU).
int8 settings calibrate on the train split.

The plainest-program checks (``--goals``, or ``--plain-check MODEL:SETTING[,...]``): the
protocol's end-to-end figure beside the same network run alone, one loop in a fresh process
(``rtseg.profiling.plain_program``): for an ONNX Runtime entry one session of the same graph,
for ``plain`` ``create_model(name).eval()`` in ``torch.inference_mode()``, for another PyTorch
setting its end-to-end runner alone in a loop; each must agree within 10 %. The two are timed
in turn for ``--check-rounds`` rounds; when they disagree but either side's own rounds moved at
least as much as they differ (a shared host's drift), the check is inconclusive, not failed or passed.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
import traceback
from functools import partial
from pathlib import Path

import torch

from rtseg.profiling.hardware import has_native_bf16

sys.path.insert(0, str(Path(__file__).resolve().parent))
import speed_report  # noqa: E402  (benchmarks/speed_report.py: tables and goals)

# name -> how the setting is built; "plain" is what a user gets from model.eval() in PyTorch.
SETTINGS = {
    "plain": dict(engine="eager", precision="fp32", fold_bn=False, channels_last=False, subpixel=False,
                  fused_labels=False),
    "eager-fp32": dict(engine="eager", precision="fp32"),
    "eager-bf16": dict(engine="eager", precision="bf16"),
    "compile-fp32": dict(engine="compile", precision="fp32"),
    "compile-bf16": dict(engine="compile", precision="bf16"),
    "onnxruntime-fp32": dict(engine="onnxruntime", precision="fp32"),
    "onnxruntime-int8": dict(engine="onnxruntime", precision="int8"),  # float layers chosen by timing
    "onnxruntime-int8-all": dict(engine="onnxruntime", precision="int8", int8_float=()),  # every layer int8
    # on request: the PyTorch engines with transposed convolutions as sub-pixel ones (ONNX Runtime's rewrite)
    "eager-fp32-subpixel": dict(engine="eager", precision="fp32", subpixel=True),
    "compile-fp32-subpixel": dict(engine="compile", precision="fp32", subpixel=True),
    # on request: the PyTorch engines with the argmax after the full-resolution logits, as before the
    # labels were taken inside the last layer (rtseg.inference.upsampled_labels)
    "eager-fp32-argmax": dict(engine="eager", precision="fp32", fused_labels=False),
    "compile-fp32-argmax": dict(engine="compile", precision="fp32", fused_labels=False),
}
DEFAULT_SETTINGS = ("plain", "eager-fp32", "eager-bf16", "compile-fp32", "compile-bf16", "onnxruntime-fp32",
                    "onnxruntime-int8")
GOAL_MODELS = ("skipnet-mobilenet_v1", "skipnet-shufflenet_v1", "enet")
GRID_MODELS = tuple(f"{d}-{e}" for d in ("skipnet", "unet", "dilation")
                    for e in ("vgg16", "resnet18", "mobilenet_v1", "shufflenet_v1")) + ("enet", "segnet")
PLAIN_CHECKS = ("skipnet-mobilenet_v1:onnxruntime-int8,skipnet-mobilenet_v1:plain,enet:compile-bf16,"
                "skipnet-shufflenet_v1:eager-fp32")


def parse_args(argv=None) -> argparse.Namespace:
    from rtseg.commands.arguments import size_argument
    from rtseg.options import ALLOCATORS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--goals", action="store_true",
                        help=f"time {', '.join(GOAL_MODELS)} side by side, check the plain program, print the goals")
    parser.add_argument("--grid", action="store_true",
                        help="also time every grid model, ENet and SegNet, each model a group of its own")
    parser.add_argument("--realtime", action="store_true",
                        help="also time today's real-time models, each a group of its own, and SkipNet-ShuffleNet "
                             "with ENet as the paper's points of comparison")
    parser.add_argument("--models", help="comma-separated model names, timed as one group "
                                         f"(default without --goals/--grid: {','.join(GOAL_MODELS)})")
    parser.add_argument("--settings", default=None,
                        help=f"comma-separated, from: {', '.join(SETTINGS)} (default: {','.join(DEFAULT_SETTINGS)}, "
                             f"less the bf16 ones on a CPU without bf16 instructions)")
    parser.add_argument("--size", type=size_argument, default=(512, 1024))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--allocator", default="reuse", choices=ALLOCATORS,
                        help="while timing: keep freed memory in the process (reuse, default) or not (rtseg.memory)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs of each (model, setting), >= 20")
    parser.add_argument("--block", type=int, default=5, help="back-to-back runs per block (default 5)")
    parser.add_argument("--end-to-end-only", action="store_true",
                        help="time the end-to-end figure only (halves the time of --grid)")
    parser.add_argument("--data", help="Cityscapes-layout root with train and val images (default: generate "
                                       "a small synthetic one in a temporary folder)")
    parser.add_argument("--images", type=int, default=4, help="val images for the agreement/mIoU check")
    parser.add_argument("--quality-data", help="Cityscapes-layout root for the mIoU check of models with "
                                               "--checkpoint, at its images' own size (use the size the "
                                               "checkpoint was trained at)")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=CKPT",
                        help="trained weights for model NAME (repeatable)")
    parser.add_argument("--plain-check", default=None, metavar="MODEL:SETTING[,...]",
                        help=f"the plainest-program checks for these entries (any setting) "
                             f"(default with --goals: {PLAIN_CHECKS}; 'none' to skip)")
    parser.add_argument("--check-rounds", type=int, default=3,
                        help="rounds of each plainest-program check, protocol and program in turn (default 3)")
    parser.add_argument("--output", help="write the results as JSON to this file")
    args = parser.parse_args(argv)
    args.settings = default_settings() if args.settings is None else [s for s in args.settings.split(",") if s]
    unknown = [s for s in args.settings if s not in SETTINGS]
    if unknown:
        parser.error(f"unknown setting {unknown[0]!r}; choose from {', '.join(SETTINGS)}")
    if "plain" not in args.settings:
        args.settings.insert(0, "plain")  # the reference for ratios and agreement
    if args.runs < 20:
        parser.error("--runs must be at least 20")
    if args.check_rounds < 2:
        parser.error("--check-rounds must be at least 2: one round cannot show the host's drift")
    args.checkpoint = dict(item.split("=", 1) for item in args.checkpoint)
    args.groups = groups(args)
    if args.plain_check is None:
        args.plain_check = ",".join(default_plain_checks(args.settings)) if args.goals else "none"
    args.plain_checks = [] if args.plain_check == "none" else [c for c in args.plain_check.split(",") if c]
    for check in args.plain_checks:
        model, _, setting = check.partition(":")
        if setting not in args.settings or not any(model in g for g in args.groups):
            parser.error(f"--plain-check {check}: that model and setting are not timed")
    return args


def default_settings(flags: list[str] | None = None) -> list[str]:
    """DEFAULT_SETTINGS, without bf16 on a CPU that only emulates it: at about 0.4 FPS (a Zen 2
    EPYC) its warm-up alone takes minutes, for a figure that says nothing about bf16 hardware.
    Named in --settings, a bf16 setting is still timed, and its result says it was emulated."""
    if has_native_bf16(flags):
        return list(DEFAULT_SETTINGS)
    dropped = [s for s in DEFAULT_SETTINGS if SETTINGS[s]["precision"] == "bf16"]
    print(f"this CPU has no bfloat16 instructions: not timing {', '.join(dropped)} (name them in --settings "
          f"to time the emulation)", file=sys.stderr)
    return [s for s in DEFAULT_SETTINGS if s not in dropped]


def default_plain_checks(settings: list[str]) -> list[str]:
    """PLAIN_CHECKS for the settings being timed: a check whose bf16 setting was left out (a CPU
    without bf16 instructions) checks the same engine in fp32 instead, so ``--goals`` runs on
    every CPU kind (it stopped with 'enet:compile-bf16 ... not timed' on one without bf16)."""
    checks = []
    for check in PLAIN_CHECKS.split(","):
        model, _, setting = check.partition(":")
        if setting not in settings:  # the same engine in fp32, found in SETTINGS, not by editing the name
            engine = SETTINGS[setting]["engine"]
            setting = next((s for s in settings if SETTINGS[s] == dict(engine=engine, precision="fp32")), None)
        if setting is not None:
            checks.append(f"{model}:{setting}")
    return checks


def groups(args) -> list[list[str]]:
    """The models timed side by side, group by group."""
    found: list[list[str]] = []
    if args.goals:
        found.append(list(GOAL_MODELS))
    if args.models:
        found.append([m for m in args.models.split(",") if m])
    if args.grid:
        done = {m for g in found for m in g}
        found += [[m] for m in GRID_MODELS if m not in done]
    if args.realtime:
        from rtseg.benchmark.selection import REALTIME_MODELS

        done = {m for g in found for m in g}
        if not set(speed_report.PAIR) <= done:
            found.append(list(speed_report.PAIR))
        found += [[m] for m in REALTIME_MODELS if m not in done]
    return found or [list(GOAL_MODELS)]


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


def build_entries(names, args, root: Path) -> tuple[list[dict], dict]:
    """Every (model, setting) of a group, built (a failed build is an entry with ``error``), and the models."""
    from rtseg.data.io import read_image
    from rtseg.errors import RtsegError
    from rtseg.inference import Backend, build_runners
    from rtseg.inference.calibration import find_images, images_from_root
    from rtseg.normalisation import model_normalisation

    entries, models = [], {}
    for name in names:
        model, trained = load_model(name, args.checkpoint)
        models[name] = model
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
            backend = Backend(threads=args.threads, allocator=args.allocator, **SETTINGS[setting])
            entry = {"model": name, "setting": setting, "trained": trained, "samples": samples,
                     "quality_size": args.size, "error": None}
            try:
                runners = build_runners(model, args.size, backend, calibration=calibration)
                entry.update(runners=runners, speed_input=samples[0][0], details=runners[0].details,
                             labels=[runners[1](x).cpu() for x, _ in samples])
                if quality is not None:  # the same setting again at the checkpoint's own size
                    plan = runners[0].details.get("int8_plan")
                    if plan is not None:  # keep the layers chosen at --size; do not measure again
                        backend = backend.with_options(int8_float=("all float",) if plan["all_float"]
                                                       else tuple(plan["float_kinds"]))
                    quality_runners = build_runners(model, quality[0], backend, calibration=quality[2])
                    entry.update(samples=quality[1], quality_size=quality[0],
                                 labels=[quality_runners[1](x).cpu() for x, _ in quality[1]])
                    del quality_runners
            except RtsegError as exc:  # e.g. torch.compile would fall back to eager: the setting failed
                entry["error"] = str(exc)
                print(f"  FAILED: {exc}", file=sys.stderr)
            except Exception as exc:  # noqa: BLE001 - an internal failure: a failed row with its traceback,
                # so that one model's bug does not lose the other models' figures
                entry["error"] = f"internal error: {type(exc).__name__}: {exc}"
                print(f"  FAILED (internal error):\n{traceback.format_exc()}", file=sys.stderr)
            entry["build_s"] = time.perf_counter() - began
            entries.append(entry)
    return entries, models


def time_group(entries, args) -> None:
    """Warm up, then time every built entry of the group side by side (see the module docstring)."""
    from tqdm import tqdm

    from rtseg.memory import FaultCounter, allocator, faults_record
    from rtseg.profiling.timing import TimingStats, settle, stopwatch, time_in_blocks, wait_until_idle

    ok = [e for e in entries if e["error"] is None]
    steps = []
    with allocator(args.allocator) as memory:
        for entry in tqdm(ok, desc="warm-up", file=sys.stderr):
            model_only, end_to_end = entry["runners"]
            x = entry["speed_input"]  # a real-looking image at --size
            figures = [stopwatch(end_to_end, x)] + ([] if args.end_to_end_only else [stopwatch(model_only, x)])
            entry["warmup_runs"] = []
            for step in figures:
                wait_until_idle()
                entry["warmup_runs"].append(settle(step, max_runs=30, max_seconds=30).runs)
            entry["fault_counters"] = [FaultCounter(step) for step in figures]
            steps += entry["fault_counters"]
        print(f"timing {len(ok)} entries, {args.runs} runs each in blocks of {args.block} ({memory.how}) ...",
              file=sys.stderr)
        times = iter(time_in_blocks(steps, args.runs, args.block))
    for entry in ok:
        entry["allocator"] = faults_record(memory, entry.pop("fault_counters"))
    for entry in ok:
        entry["end_to_end"] = TimingStats.from_seconds(next(times))
        entry["model_only"] = None if args.end_to_end_only else TimingStats.from_seconds(next(times))


def plain_check(entries, models, args, check: str) -> dict | None:
    """The protocol's end-to-end FPS beside the plainest program of the same network and setting,
    in a process of its own: one ONNX Runtime session of the same graph, or eager PyTorch."""
    from rtseg.inference.calibration import random_inputs
    from rtseg.profiling.plain_program import plain_session_seconds, plain_torch_seconds
    from rtseg.profiling.speed import TimingProtocol, measure_speed

    model_name, _, setting = check.partition(":")
    entry = next((e for e in entries if e["model"] == model_name and e["setting"] == setting), None)
    if entry is None or entry["error"] is not None:
        return None
    model = models[model_name]
    backend = entry["runners"][0].backend
    x = random_inputs(model, args.size, 1, seed=123)  # what measure_speed times
    if backend.engine == "onnxruntime":
        alone = partial(plain_session_seconds, entry["runners"][1].graph, x.numpy(), args.threads, runs=args.runs,
                        allocator=args.allocator)
        program = "one ONNX Runtime session, one loop"
    else:  # plain: model.eval() as a user runs it; another setting: its end-to-end runner alone
        settings = None if setting == "plain" else dict(SETTINGS[setting])
        alone = partial(plain_torch_seconds, model_name, x, args.threads, settings, runs=args.runs,
                        allocator=args.allocator)
        program = ("create_model(name).eval(), inference_mode, model(x).argmax(1) in a loop" if settings is None
                   else "the setting's end-to-end runner alone, in a loop")
    protocol, plain = [], []
    for _ in range(args.check_rounds):  # in turn, so that a change of load hits both
        result = measure_speed(model, args.size, backend, TimingProtocol(runs=args.runs, measure_peak=False),
                               runners=entry["runners"])
        protocol.append(result.fps)
        plain.append(1 / statistics.median(alone()))
    return {"model": model_name, "setting": setting, "program": program, **speed_report.judge_plain_check(protocol, plain)}


def roofline_ceiling(args) -> dict:
    """The most FPS the goal model could reach at this machine's int8 peak: its GFLOPs / the peak."""
    import rtseg
    from rtseg.profiling.flops import count_flops
    from rtseg.profiling.roofline import measure_peak

    gflops = count_flops(rtseg.create_model(speed_report.GOAL_MODEL), args.size) / 1e9
    peak = measure_peak("int8", threads=args.threads)
    return {"model": speed_report.GOAL_MODEL, "gflops": round(gflops, 3), "int8_peak_gflops_per_s":
            round(peak.gflops_per_s, 1) if peak.gflops_per_s else None, "peak_method": peak.method,
            "max_fps": round(peak.gflops_per_s / gflops, 1) if peak.gflops_per_s else None}


def rows_of(entries) -> list[dict]:
    """JSON rows: the timings, agreement with plain fp32 eager, mIoU, what each setting was built as."""
    from rtseg.profiling.hardware import describe
    from rtseg.profiling.speed import memory_warnings, precision_warnings, timing_warnings

    hardware = describe("cpu")
    rows, plain_labels = [], {}
    for entry in entries:
        row = {"model": entry["model"], "setting": entry["setting"],
               **{k: v for k, v in SETTINGS[entry["setting"]].items() if k in ("engine", "precision")},
               "build_s": round(entry["build_s"], 1), "error": entry["error"]}
        if entry["error"] is None:
            if entry["setting"] == "plain":
                plain_labels[entry["model"]] = entry["labels"]
            reference = plain_labels.get(entry["model"])
            if reference is not None:
                same = sum(int((a == b).sum()) for a, b in zip(entry["labels"], reference))
                row["agreement_with_plain"] = round(same / sum(a.numel() for a in reference), 6)
            row.update(end_to_end=entry["end_to_end"].as_dict(), warmup_runs=entry["warmup_runs"],
                       model_only=entry["model_only"].as_dict() if entry["model_only"] else None,
                       miou=miou(entry["labels"], entry["samples"]) if entry["trained"] else None,
                       quality_size="x".join(map(str, entry["quality_size"])),
                       int8_plan=entry["details"].get("int8_plan"), allocator=entry.get("allocator"),
                       labels_inside_last_layer=bool(entry["details"].get("argmax_first")),
                       labels_choice=entry["details"].get("labels_choice"),
                       warnings=(timing_warnings(entry["model_only"], entry["end_to_end"], entry["details"])
                                 if entry["model_only"] else [])
                       + memory_warnings(entry.get("allocator") or {})
                       + precision_warnings(row["precision"], "cpu", hardware))
        rows.append(row)
    return rows


def main(argv=None) -> int:
    args = parse_args(argv)
    from rtseg.profiling.hardware import describe

    torch.set_num_threads(args.threads)
    command = "python benchmarks/bench_speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    started = time.perf_counter()
    results, plain = [], []
    with tempfile.TemporaryDirectory(prefix="rtseg-bench-") as work:
        root = data_root(args, work)
        for number, names in enumerate(args.groups, 1):
            print(f"group {number}/{len(args.groups)}: {', '.join(names)}", file=sys.stderr)
            entries, models = build_entries(names, args, root)
            time_group(entries, args)
            for check in args.plain_checks:
                if check.partition(":")[0] in names:
                    found = plain_check(entries, models, args, check)
                    if found is not None:
                        plain.append(found)
            results += rows_of(entries)
            del entries, models
            gc.collect()
        # the 60 FPS goal's bound: only when its model was timed (the int8 peak is a few seconds to minutes)
        ceiling = roofline_ceiling(args) if any(speed_report.GOAL_MODEL in names for names in args.groups) else None
    report = {"command": command, "size": f"{args.size[0]}x{args.size[1]}", "threads": args.threads,
              "runs": args.runs, "block": args.block, "groups": args.groups, "allocator": args.allocator,
              "hardware": describe("cpu", args.threads),
              "results": results, "plain_checks": plain, "ceiling": ceiling,
              "seconds": round(time.perf_counter() - started)}
    report["summary"] = speed_report.summarise(report)
    print(speed_report.render(report))
    if args.output:
        from rtseg.atomic import atomic_open

        with atomic_open(args.output, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
