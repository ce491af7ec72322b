"""benchmarks/bench_onnx_rewrites.py: one export with and without the per-pixel move, timed side
by side; the ratio is unmoved over moved, and the labels of both graphs are compared."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_onnx_rewrites  # noqa: E402


def test_the_moved_and_unmoved_graphs_are_timed_with_their_labels_compared(monkeypatch, capsys):
    timed = []

    def fake_time_graphs(graphs, x, threads, *, runs):
        timed.append((sorted(graphs), x.shape, threads, runs))
        return {"unmoved": 30.0, "moved": 20.0}

    monkeypatch.setattr(bench_onnx_rewrites, "time_graphs", fake_time_graphs)
    assert bench_onnx_rewrites.main(["--models", "unet-shufflenet_v1", "--size", "32x48", "--runs", "3"]) == 0
    assert timed == [(["moved", "unmoved"], (1, 3, 32, 48), 2, 3)]
    row = capsys.readouterr().out.splitlines()[-1]
    assert row == "| unet-shufflenet_v1 | 30.0 | 20.0 | 1.50x | 100.000 % |"
