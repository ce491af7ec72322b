"""benchmarks/bench_speed.py's choice of settings (what it times, not how fast)."""

import sys
from pathlib import Path

import torch

import rtseg
from rtseg.inference import Backend, build_runners

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_speed  # noqa: E402
import speed_report  # noqa: E402


def test_bf16_is_not_timed_by_default_where_the_cpu_only_emulates_it(capsys):
    zen2 = bench_speed.default_settings(["avx2"])
    assert "eager-bf16" not in zen2 and "compile-bf16" not in zen2
    assert "compile-fp32" in zen2 and "onnxruntime-int8" in zen2
    assert "no bfloat16 instructions" in capsys.readouterr().err
    assert bench_speed.default_settings(["avx2", "avx512f", "avx512_bf16"]) == list(bench_speed.DEFAULT_SETTINGS)


def test_a_bf16_setting_named_on_the_command_line_is_timed_on_any_cpu():
    args = bench_speed.parse_args(["--models", "enet", "--settings", "eager-bf16"])
    assert args.settings == ["plain", "eager-bf16"]  # plain is always the reference


def test_the_goals_plain_checks_follow_the_settings_timed():
    """--goals on a CPU without bf16 stopped at once: its default check enet:compile-bf16 was not timed."""
    without_bf16 = bench_speed.default_settings(["avx2"])
    checks = bench_speed.default_plain_checks(without_bf16)
    assert "enet:compile-fp32" in checks and not any("bf16" in c for c in checks)
    assert len(checks) == len(bench_speed.PLAIN_CHECKS.split(","))
    assert bench_speed.default_plain_checks(list(bench_speed.DEFAULT_SETTINGS)) == bench_speed.PLAIN_CHECKS.split(",")
    assert bench_speed.default_plain_checks(["plain"]) == ["skipnet-mobilenet_v1:plain"]
    args = bench_speed.parse_args(["--goals", "--settings", "plain,eager-fp32,compile-fp32,onnxruntime-int8"])
    assert "enet:compile-fp32" in args.plain_checks


def test_the_subpixel_and_argmax_settings_do_what_they_say_and_plain_does_neither():
    model = rtseg.create_model("skipnet-mobilenet_v1", num_classes=3).eval()
    rewritten, fused = {}, {}
    for setting in ("plain", "eager-fp32", "eager-fp32-subpixel", "eager-fp32-argmax"):
        runners = build_runners(model, (64, 64), Backend(threads=1, **bench_speed.SETTINGS[setting]))
        rewritten[setting] = runners[0].details["conv_transpose_rewritten"]
        # the prepared engines time both ways of taking the labels and keep the faster
        choice = runners[1].details.get("labels_choice")
        fused[setting] = "timed" if choice and choice["inside the last layer"] is runners[1].details[
            "argmax_first"] else runners[1].details["argmax_first"]
        labels = runners[1](torch.randn(1, 3, 64, 64))
        assert labels.shape == (1, 64, 64)
    # SkipNet's three up-samplers
    assert rewritten == {"plain": 0, "eager-fp32": 0, "eager-fp32-subpixel": 3, "eager-fp32-argmax": 0}
    # plain is model(x).argmax(1); the argmax setting keeps it too
    assert fused == {"plain": False, "eager-fp32": "timed", "eager-fp32-subpixel": "timed", "eager-fp32-argmax": False}
    assert bench_speed.SETTINGS["compile-fp32-subpixel"]["subpixel"] is True
    assert bench_speed.SETTINGS["compile-fp32-argmax"]["fused_labels"] is False


def test_a_plainest_program_check_is_inconclusive_when_the_rounds_drift_more_than_the_band():
    agree = speed_report.judge_plain_check([10.0, 10.2, 9.9], [10.5, 9.0, 10.4])
    assert agree["passed"] is True and agree["ratio"] == 0.962
    differ = speed_report.judge_plain_check([8.0, 8.1, 7.9], [10.0, 10.2, 9.9])
    assert differ["passed"] is False and differ["drift"] < 0.1  # steady on both sides: a protocol fault
    # the goals run on the Zen 3: the plain program's rounds 9.28 and 13.79 FPS, 33 % apart
    drifted = speed_report.judge_plain_check([10.08, 9.92], [9.28, 13.79])
    assert drifted["passed"] is None and drifted["drift"] == 0.327
    # a difference larger than the drift is a fault: the protocol's rounds 19 % apart, 1.39x off
    faulty = speed_report.judge_plain_check([8.67, 10.69, 9.54], [7.11, 6.71, 6.88])
    assert faulty["passed"] is False and faulty["drift"] < abs(faulty["ratio"] - 1)
    report = {"plain_checks": [{"model": "enet", "setting": "plain", "protocol_fps": 10.0, "plain_program_fps": 11.5,
                                "program": "one loop", **drifted}]}
    goal = next(g for g in speed_report._goals({"best": {}, "int8": {}, "pair": None, "failed": []}, report)
                if g["goal"].startswith("protocol"))
    assert goal["passed"] is None and "no verdict" in goal["note"]
    assert speed_report._verdict(None) == "INCONCLUSIVE" and speed_report._verdict(False) == "FAIL"
