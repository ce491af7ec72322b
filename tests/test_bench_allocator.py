"""benchmarks/bench_allocator.py: the policies take turns, and the ratio is reuse over system."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_allocator  # noqa: E402


def test_policies_take_turns_in_fresh_processes_and_the_ratio_is_reuse_over_system(monkeypatch):
    started = []

    def fake_plain_program(model, x, threads, settings, *, runs, allocator, environment):
        started.append((model, settings is None, allocator + "+thp" * bool(environment)))
        # reuse twice as fast as system, huge pages 2.5 times
        return [0.5 if allocator == "system" else 0.2 if environment else 0.25] * runs

    import rtseg.profiling.plain_program as plain_program

    monkeypatch.setattr(plain_program, "plain_torch_seconds", fake_plain_program)
    args = bench_allocator.parse_args(["--models", "enet", "--settings", "plain,eager-fp32", "--rounds", "2",
                                       "--runs", "3", "--size", "32x64", "--huge-pages"])
    entries = bench_allocator.measure(args)
    assert [a for m, plain, a in started if plain] == ["system", "reuse", "reuse+thp",
                                                       "reuse+thp", "reuse", "system"]  # order swapped
    assert [e["setting"] for e in entries] == ["plain", "eager-fp32"]
    assert entries[0]["ratio"] == pytest.approx({"reuse": 2.0, "reuse+thp": 2.5})
    assert entries[0]["rounds"]["reuse"] == pytest.approx([2.0, 2.0])
    table = bench_allocator.report(entries, args, {"cpu": "test CPU", "cpu_flags": ["avx2"]})
    assert "| enet | plain | 2.00 | 4.00 | 5.00 | 2.00x (2.00, 2.00) | 2.50x (2.50, 2.50) |" in table
    assert "test CPU (avx2)" in table


def test_an_onnx_runtime_setting_is_refused_with_the_reason(capsys):
    with pytest.raises(SystemExit):
        bench_allocator.parse_args(["--settings", "onnxruntime-fp32"])
    assert "keeps its own arena" in capsys.readouterr().err
