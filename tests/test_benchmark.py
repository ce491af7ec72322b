"""``rtseg benchmark``: a tiny study end to end (two narrow models, a few steps, 32x64 images),
its files, the report's tables and figures, and resumption stage by stage."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rtseg.benchmark import BenchmarkSettings, QuickSchedule, render_report, run_benchmark
from rtseg.benchmark import published
from rtseg.benchmark.plots import pareto_front
from rtseg.benchmark.results import STAGES, load_results, stage_path
from rtseg.benchmark.schedule import training_stages
from rtseg.benchmark.selection import (PAPER_TABLE1_COARSE, PAPER_TABLE1_FINE, PAPER_TABLE3, REALTIME_MODELS, Entry,
                                      resolve_models)
from rtseg.benchmark.tables import realtime_table
from rtseg.cli import main
from rtseg.errors import RtsegError
from rtseg.profiling.speed import TimingProtocol

TINY = QuickSchedule(iterations=3, coarse_iterations=2, batch_size=2, synthetic_train=4, synthetic_val=2,
                     synthetic_size=(32, 64), speed_size=(32, 64))
NARROW = {"width": 0.25}
# One fine-only model and one coarse -> fine (the paper's two-stage row), both at width 0.25.
MODELS = [Entry("skipnet-mobilenet_v1", options=NARROW), Entry("skipnet-shufflenet_v1", coarse=True, options=NARROW)]
KEYS = ["skipnet-mobilenet_v1", "skipnet-shufflenet_v1-coarse"]
FAST_TIMING = TimingProtocol(runs=2, max_warmup=2, measure_peak=False)


def run_tiny(out: Path, speed_runs: int = 2, **kwargs):
    settings = dict(quick=True, schedule=TINY, protocol=dataclasses.replace(FAST_TIMING, runs=speed_runs),
                    progress=False, device="cpu")
    settings.update(kwargs)
    return run_benchmark(MODELS, out, BenchmarkSettings(**settings))


SINGLE_THREAD = True  # tiny models (see conftest.py)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    started = time.perf_counter()
    result = run_tiny(out)
    return result, time.perf_counter() - started


def test_every_stage_of_every_model_ran_and_is_recorded(bench):
    result, _ = bench
    assert result.failures == []
    assert result.ran == [(key, stage) for key in KEYS for stage in STAGES]
    results = load_results(result.out_dir)
    assert [m["key"] for m in results["models"]] == KEYS
    for model in results["models"]:
        evaluation = model["evaluate"]
        assert 0.0 <= evaluation["miou"] <= 1.0
        assert set(evaluation["class_iou"]) >= set(published.TABLE1_CLASSES.values())
        assert evaluation["images"] == TINY.synthetic_val
        speed = model["speed"]
        assert speed["size"] == "32x64" and speed["engine"] == "eager" and speed["precision"] == "fp32"
        assert speed["fps"] > 0 and speed["fps_model"] > 0 and speed["end_to_end"]["runs"] == 2
        assert set(model["cost"]["gflops"]) == {"512x1024", "360x640"}
        assert model["train"]["steps"] == TINY.iterations
    assert results["quick_cuts"] and results["settings"]["speed_size"] == "32x64"


def test_cost_is_the_flop_counter_of_the_models_at_the_paper_sizes(bench):
    from rtseg.models import create_model
    from rtseg.profiling.flops import count_flops, count_params

    result, _ = bench
    for model in load_results(result.out_dir)["models"]:
        net = create_model(model["model"], **NARROW)
        assert model["cost"]["params"] == count_params(net)
        assert model["cost"]["gflops"]["360x640"] == pytest.approx(count_flops(net, (360, 640)) / 1e9, abs=1e-3)


def test_coarse_entry_pretrains_on_coarse_labels_then_fine_tunes_from_it(bench):
    result, _ = bench
    record = json.loads(stage_path(result.out_dir, KEYS[1], "train").read_text())
    coarse, fine = record["inputs"]["configs"]
    assert coarse["data"]["annotation"] == "coarse" and coarse["train"]["iterations"] == TINY.coarse_iterations
    assert fine["data"]["annotation"] == "fine"
    assert fine["model"]["init_from"] == str(result.out_dir / "runs" / KEYS[1] / "train-coarse" / "last.pt")
    assert [s["name"] for s in record["result"]["stages"]] == ["coarse", "fine"]
    assert (result.out_dir / "runs" / KEYS[1] / "train-coarse" / "last.pt").is_file()


def test_csv_holds_one_row_per_model_matching_the_json(bench):
    result, _ = bench
    with open(result.csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    models = load_results(result.out_dir)["models"]
    assert [r["key"] for r in rows] == KEYS
    for row, model in zip(rows, models):
        assert float(row["miou"]) == pytest.approx(model["evaluate"]["miou"])
        assert float(row["fps"]) == pytest.approx(model["speed"]["fps"])
        assert int(row["params"]) == model["cost"]["params"]
        assert row["coarse"] == str(model["coarse"])


def test_report_tables_hold_our_rows_and_the_published_figures(bench):
    result, _ = bench
    markdown = (result.out_dir / "report.md").read_text()
    models = load_results(result.out_dir)["models"]
    ours = f"| SkipNet | MobileNet | no | ours | {100 * models[0]['evaluate']['miou']:.1f} |"
    assert ours in markdown
    # Table 1, beside ours: the fine-only and the coarse published rows, marked as published
    assert "| *SkipNet* | *MobileNet* | *no* | *published (Table 1)* | *61.3* | *95.9* |" in markdown
    assert "| *SkipNet* | *ShuffleNet* | *yes* | *published (Table 1)* | *59.3* |" in markdown
    # Table 2: published GFLOPs; Table 3: the test-set row with its GFLOPs at 360x640
    assert "*published (Table 2)* | - | *13.8* |" in markdown
    assert "*published (Table 3, test set)* | *6.20* | *61.5* | *35.2* | *82.0* | *63.0* |" in markdown
    for heading in ("Table 1:", "Table 2:", "Table 3:", "all 19 classes"):
        assert heading in markdown
    assert "Timed at" in markdown and "32x64" in markdown
    assert re.search(r"CPU: .+ threads\)", markdown)


def test_report_html_is_self_contained_with_valid_images(bench):
    result, _ = bench
    page = (result.out_dir / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') == 3
    assert not re.search(r'src="(?!data:)', page)  # nothing loaded from files
    assert page.count('<tr class="published">') >= 4
    for name in ("pareto_gflops.png", "pareto_fps.png", "qualitative.png"):
        path = result.out_dir / "images" / name
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.format == "PNG" and min(image.size) > 100


def test_qualitative_predictions_are_train_ids_at_label_size(bench):
    result, _ = bench
    model = load_results(result.out_dir)["models"][0]
    samples = model["evaluate"]["qualitative"]
    assert len(samples) == TINY.synthetic_val  # 3 asked, 2 in the split
    for sample in samples:
        with Image.open(result.out_dir / sample["prediction"]) as pred, \
                Image.open(result.out_dir / sample["label_ids"]) as label:
            assert pred.size == label.size
            assert np.asarray(pred).max() < 19


def test_second_run_redoes_nothing(bench):
    result, first_seconds = bench
    checkpoint = result.out_dir / "runs" / KEYS[0] / "train" / "last.pt"
    mtime = checkpoint.stat().st_mtime_ns
    started = time.perf_counter()
    again = run_tiny(result.out_dir)
    assert again.ran == [] and again.failures == []
    assert checkpoint.stat().st_mtime_ns == mtime
    assert time.perf_counter() - started < first_seconds
    assert load_results(result.out_dir)["models"][0]["evaluate"] == result.results["models"][0]["evaluate"]


def test_deleted_stage_records_are_the_only_stages_redone(bench):
    result, _ = bench
    checkpoint = result.out_dir / "runs" / KEYS[0] / "train" / "last.pt"
    mtime = checkpoint.stat().st_mtime_ns
    stage_path(result.out_dir, KEYS[0], "speed").unlink()
    stage_path(result.out_dir, KEYS[1], "evaluate").unlink()
    # a training whose record is lost: the trainer resumes the finished run and trains nothing
    stage_path(result.out_dir, KEYS[0], "train").unlink()
    again = run_tiny(result.out_dir)
    assert again.ran == [(KEYS[0], "train"), (KEYS[0], "speed"), (KEYS[1], "evaluate")]
    assert checkpoint.stat().st_mtime_ns == mtime
    models = load_results(result.out_dir)["models"]
    assert all(m[stage] for m in models for stage in STAGES)


def test_other_timing_settings_retime_without_retraining(bench):
    result, _ = bench
    again = run_tiny(result.out_dir, speed_runs=3)
    assert again.ran == [(key, "speed") for key in KEYS]
    assert all(m["speed"]["end_to_end"]["runs"] == 3 for m in load_results(result.out_dir)["models"])


def test_a_failing_stage_is_reported_and_the_other_models_go_on(bench, monkeypatch):
    import rtseg.benchmark.study as runner

    result, _ = bench
    timed = runner.speed_entry

    def speed_or_fail(checkpoint, *args, **kwargs):
        if KEYS[0] in str(checkpoint):
            raise RuntimeError("out of memory (simulated)")
        return timed(checkpoint, *args, **kwargs)

    monkeypatch.setattr(runner, "speed_entry", speed_or_fail)
    again = run_tiny(result.out_dir, speed_runs=4)
    assert again.ran == [(KEYS[1], "speed")]
    assert again.failures == [(KEYS[0], "speed", "RuntimeError: out of memory (simulated)")]
    first, second = load_results(result.out_dir)["models"]
    assert first["speed"] is None and first["errors"] == {"speed": "RuntimeError: out of memory (simulated)"}
    assert second["speed"]["end_to_end"]["runs"] == 4
    assert "the speed stage failed: RuntimeError: out of memory (simulated)" in (result.out_dir / "report.md").read_text()
    assert main(["report", str(result.out_dir)]) == 0  # a report without that model's speed still renders


def test_without_checkpoints_a_done_model_stays_done_and_a_new_stage_retrains(tmp_path):
    from rtseg.benchmark.results import disk_usage

    result = run_tiny(tmp_path, keep_checkpoints=False)
    assert result.failures == [] and not list((tmp_path / "runs").rglob("*.pt"))
    for key in KEYS:
        record = json.loads(stage_path(tmp_path, key, "train").read_text())
        assert record["result"]["checkpoint_removed"] and record["result"]["checkpoint_identity"]["bytes"] > 0
    assert run_tiny(tmp_path, keep_checkpoints=False).ran == []  # a resume needs no checkpoint
    assert all(m[stage] for m in load_results(tmp_path)["models"] for stage in STAGES)
    assert "runs/" in disk_usage(tmp_path) and sum(disk_usage(tmp_path).values()) < 5e6
    again = run_tiny(tmp_path, speed_runs=3)  # a stage to redo needs the weights: the models train again
    assert again.ran == [(key, stage) for key in KEYS for stage in ("train", "evaluate", "speed")]
    assert list((tmp_path / "runs").rglob("*.pt"))  # kept this time


def test_other_training_settings_are_refused_not_mixed(bench):
    result, _ = bench
    longer = dataclasses.replace(TINY, iterations=5)
    with pytest.raises(RtsegError, match="train.iterations"):
        run_tiny(result.out_dir, schedule=longer)


def test_report_command_renders_again_from_the_json(bench, capsys):
    result, _ = bench
    (result.out_dir / "report.md").unlink()
    assert main(["report", str(result.out_dir)]) == 0
    assert (result.out_dir / "report.md").read_text().startswith("# RTSeg benchmark report")
    assert main(["report", str(result.out_dir / "runs")]) == 2
    assert "results.json does not exist" in capsys.readouterr().err


def test_quick_run_on_a_cityscapes_folder_scales_its_images_and_limits_validation(tmp_path):
    from rtseg.data.synthetic import generate_synthetic_cityscapes

    root = tmp_path / "cityscapes"
    generate_synthetic_cityscapes(root, train=4, val=3, test=0, size=(64, 128), progress=False)
    schedule = dataclasses.replace(TINY, real_size=(32, 64), real_val_limit=2)
    result = run_benchmark([Entry("skipnet-mobilenet_v1", options=NARROW)], tmp_path / "out",
                           BenchmarkSettings(data=root, quick=True, schedule=schedule, protocol=FAST_TIMING,
                                             progress=False, device="cpu"))
    assert result.failures == [] and not (tmp_path / "out" / "data").exists()
    model = result.results["models"][0]
    config = json.loads(stage_path(result.out_dir, model["key"], "train").read_text())["inputs"]["configs"][0]
    assert config["data"]["root"] == str(root) and config["data"]["scale"] == [0.5, 0.5]
    assert model["evaluate"]["images"] == 2 and model["evaluate"]["input_size"] == "32x64"
    assert f"Data: Cityscapes at {root}" in (result.out_dir / "report.md").read_text()


# --- model selection, schedules, published figures ----------------------------------------

def test_paper_selection_is_table1_then_table3():
    entries, notes = resolve_models("paper", has_coarse=True)
    keys = [e.key for e in entries]
    assert keys == [*PAPER_TABLE1_FINE, *(m + "-coarse" for m in PAPER_TABLE1_COARSE), *PAPER_TABLE3]
    assert notes == []
    entries, notes = resolve_models("paper", has_coarse=False)
    assert not any(e.coarse for e in entries) and len(entries) == 10
    assert "gtCoarse" in notes[0]


def test_model_lists_are_checked():
    from rtseg.models import model_names

    assert [e.key for e in resolve_models("all")[0]] == model_names()
    assert [e.key for e in resolve_models("skipnet-mobilenet_v1, enet")[0]] == ["skipnet-mobilenet_v1", "enet"]
    with pytest.raises(RtsegError, match="nosuch"):
        resolve_models("skipnet-mobilenet_v1,nosuch")
    with pytest.raises(RtsegError, match="gtCoarse"):
        resolve_models("skipnet-mobilenet_v1-coarse", has_coarse=False)
    with pytest.raises(RtsegError, match="twice"):
        resolve_models("enet,enet")


def test_realtime_selection_is_every_zoo_network_and_mixes_with_the_paper():
    from rtseg.models.zoo.published import published_records

    # every network with a published record is in the keyword, and nothing outside the registry
    assert {r.model for r in published_records()} <= set(REALTIME_MODELS)
    assert [e.key for e in resolve_models("realtime")[0]] == list(REALTIME_MODELS)
    entries, notes = resolve_models("paper, realtime")
    assert [e.key for e in entries] == [e.key for e in resolve_models("paper")[0]] + list(REALTIME_MODELS)
    assert "gtCoarse" in notes[0]
    # a keyword's models named again beside it are one entry, an explicit name twice is an error
    assert len(resolve_models("realtime,realtime")[0]) == len(REALTIME_MODELS)
    with pytest.raises(RtsegError, match="twice"):
        resolve_models("realtime,pidnet_s")


def test_quick_schedule_trains_a_zoo_model_with_adam_not_its_sgd_recipe(tmp_path):
    stage, = training_stages(Entry("bisenet_v1"), tmp_path, data_root=None, synthetic=True, quick=True)
    optim = stage.config.optim
    assert stage.source.endswith("configs/bisenet_v1.yaml")  # its own losses stay (OHEM on every head)
    assert optim.name == "adam" and optim.lr == QuickSchedule().lr
    assert optim.warmup_iters == 0 and optim.lr_multipliers == {}
    assert stage.config.model.pretrained is None


def test_realtime_table_puts_each_published_record_beside_our_figures():
    speed = {"fps": 12.5, "size": "256x512", "engine": "onnxruntime", "precision": "int8", "device": "cpu",
             "hardware": {"cpu": "Test CPU"}}
    results = {"models": [
        {"key": "pidnet_s", "model": "pidnet_s", "decoder": None, "encoder": None, "whole_model": "pidnet_s",
         "coarse": False, "evaluate": {"miou": 0.25}, "speed": speed,
         "cost": {"params": 8_000_000, "eval_params": 7_600_000, "gflops": {"512x1024": 11.9}}},
        {"key": "enet", "model": "enet", "decoder": None, "encoder": None, "whole_model": "enet", "coarse": False,
         "evaluate": {"miou": 0.2}}]}
    table = realtime_table(results, "synthetic data, val")
    from rtseg.models.zoo.published import published_records

    records = published_records("pidnet_s")
    assert len(table.rows) == 1 + len(records)  # ENet has no record: not in this table
    ours = table.rows[0]
    assert ours[:3] == ["PIDNet-S", "ours (synthetic data, val)", "25.0"]
    assert ours[4:8] == ["12.5", "Test CPU", "256x512", "onnxruntime int8"]
    assert ours[8] == "7.60"  # the parameters the eval output uses
    assert table.published_rows == set(range(1, 1 + len(records)))
    for row, record in zip(table.rows[1:], records):
        assert record.source in row[1] and row[5] == (record.gpu or "-") and row[6] == (record.resolution or "-")


def test_benchmark_command_refuses_unknown_models_in_one_line(tmp_path, capsys):
    assert main(["benchmark", "--models", "skipnet-nosuch", "--quick", "--out", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rtseg benchmark: error:") and "nosuch" in err and "\n" not in err
    assert not (tmp_path / "b").exists()


def test_full_schedule_uses_the_paper_configs(tmp_path):
    fine, = training_stages(Entry("unet-resnet18"), tmp_path / "run", data_root=Path("/data/cityscapes"),
                            synthetic=False, quick=False)
    assert fine.source.endswith("configs/unet-resnet18.yaml")
    assert fine.config.train.epochs == 200 and fine.config.optim.lr == 1e-4 and fine.config.model.pretrained is True
    assert fine.config.data.root == "/data/cityscapes" and fine.config.data.crop == (512, 1024)
    coarse, tuned = training_stages(Entry("skipnet-mobilenet_v1", coarse=True), tmp_path / "run",
                                    data_root=Path("/data/cityscapes"), synthetic=False, quick=False)
    assert coarse.config.data.train_split == "train_extra" and coarse.out_dir == tmp_path / "run" / "train-coarse"
    assert tuned.config.model.init_from == str(tmp_path / "run" / "train-coarse" / "last.pt")
    # ENet has no config of its own and no ImageNet weights: the recipe, from scratch
    enet, = training_stages(Entry("enet"), tmp_path / "enet", data_root=Path("/d"), synthetic=False, quick=False)
    assert enet.config.model.name == "enet" and not enet.config.model.pretrained


def test_quick_schedule_downloads_nothing_and_fits_real_data(tmp_path):
    stage, = training_stages(Entry("unet-resnet18"), tmp_path, data_root=Path("/data/cityscapes"), synthetic=False,
                             quick=True)
    config = stage.config
    assert config.model.pretrained is None and config.train.iterations == QuickSchedule().iterations
    assert config.data.crop == (256, 512) and config.data.scale == (0.25, 0.25)
    assert config.data.val_size == (256, 512) and config.data.val_limit == QuickSchedule().real_val_limit
    assert config.data.val_split is None


def test_pareto_front():
    # GFLOPs (lower better) vs mIoU: (2, 50) and (10, 60) and (50, 61) are the front; (20, 55) is beaten by (10, 60)
    gflops, miou = [10, 2, 20, 50], [60, 50, 55, 61]
    assert pareto_front(gflops, miou, lower_x_is_better=True) == [1, 0, 3]
    # FPS (higher better): (100, 50) and (30, 60) and (5, 61)
    fps = [30, 100, 20, 5]
    assert pareto_front(fps, miou, lower_x_is_better=False) == [3, 0, 1]
    assert pareto_front([1, 1], [5, 5], lower_x_is_better=True) == [0, 1]  # ties dominate neither


NOTES = Path(__file__).resolve().parents[2] / "shared" / "paper" / "NOTES.md"


@pytest.mark.skipif(not NOTES.is_file(), reason="the paper notes are not beside this checkout")
def test_published_figures_match_the_paper_notes():
    text = NOTES.read_text()
    names = {"SkipNet": "skipnet", "UNet": "unet", "Dilation": "dilation", "MobileNet": "mobilenet_v1",
             "ShuffleNet": "shufflenet_v1", "ResNet18": "resnet18"}
    rows = re.findall(r"^\| (SkipNet|UNet|Dilation)\s*\| (\w+)\s*\| (no|yes)\s*\|(.*)\|$", text, re.M)
    assert len(rows) == len(published.TABLE1) == 9
    for decoder, encoder, coarse, values in rows:
        name = f"{names[decoder]}-{names[encoder]}"
        # the paper's "UNet-ResNet18" is the LinkNet its authors' code trained (docs/fidelity.md)
        row = published.table1_row("linknet-resnet18" if name == "unet-resnet18" else name, coarse == "yes")
        numbers = [float(v) for v in values.split("|")]
        assert [row.miou, *row.class_iou.values()] == numbers
    table3 = dict(re.findall(r"^\| (SegNet|ENet|SkipNet-ShuffleNet|SkipNet-MobileNet)\s*\|(.*)\|$", text, re.M))
    for label, values in table3.items():
        row = next(r for r in published.TABLE3 if r.label == label)
        gflops, *scores = (v.strip() for v in values.split("|"))
        assert [row.class_iou, row.class_iiou, row.category_iou, row.category_iiou] == [float(v) for v in scores]
        assert row.gflops_360x640 == float(gflops)
    for label, value in re.findall(r"^\| (SkipNet-MobileNet|UNet-MobileNet)\s*\| ([\d.]+)\s*\|$", text, re.M):
        assert published.TABLE2_GFLOPS_512x1024[label.lower().replace("mobilenet", "mobilenet_v1")] == float(value)


def test_render_report_without_results_is_a_clear_error(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(RtsegError, match="not an rtseg benchmark"):
        render_report(tmp_path)
