"""benchmarks/bench_speed.py's choice of settings (what it times, not how fast)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_speed  # noqa: E402


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


def test_the_subpixel_settings_rewrite_the_transposed_convolutions_and_plain_does_not():
    import torch

    import rtseg
    from rtseg.inference import Backend, build_runners

    model = rtseg.create_model("skipnet-mobilenet_v1", num_classes=3).eval()
    rewritten = {}
    for setting in ("plain", "eager-fp32", "eager-fp32-subpixel"):
        runners = build_runners(model, (64, 64), Backend(threads=1, **bench_speed.SETTINGS[setting]))
        rewritten[setting] = runners[0].details["conv_transpose_rewritten"]
        labels = runners[1](torch.randn(1, 3, 64, 64))
        assert labels.shape == (1, 64, 64)
    assert rewritten == {"plain": 0, "eager-fp32": 0, "eager-fp32-subpixel": 3}  # SkipNet's three up-samplers
    assert bench_speed.SETTINGS["compile-fp32-subpixel"]["subpixel"] is True
