"""The comparative study in one call: train, evaluate, count and time a set of models, then
write the paper's tables, Pareto plots and pictures (``rtseg benchmark``, ``make demo``).

    from rtseg.benchmark import BenchmarkSettings, run_benchmark
    result = run_benchmark("skipnet-mobilenet_v1,enet", "runs/bench", BenchmarkSettings(quick=True))
    result.report_paths   # [DIR/report.md, DIR/report.html]
"""

from rtseg.benchmark.report import render_report
from rtseg.benchmark.schedule import QUICK, QuickSchedule
from rtseg.benchmark.selection import DEMO_MODELS, PAPER_TABLE1_COARSE, PAPER_TABLE1_FINE, PAPER_TABLE3, resolve_models
from rtseg.benchmark.study import BenchmarkResult, BenchmarkSettings, run_benchmark

__all__ = ["run_benchmark", "render_report", "BenchmarkResult", "BenchmarkSettings", "QUICK", "QuickSchedule",
           "resolve_models", "DEMO_MODELS", "PAPER_TABLE1_FINE", "PAPER_TABLE1_COARSE", "PAPER_TABLE3"]
