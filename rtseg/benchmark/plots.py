"""The report's figures, drawn with matplotlib's Agg canvas (no display, no global pyplot state).

* ``pareto_plot``: mIoU against cost (GFLOPs, lower is better) or speed (FPS, higher is
  better); the Pareto front (the models no other model beats on both axes) is joined by a
  line and its points are filled.
* ``qualitative_figure``: like the paper's Figure 3, for a few validation images: the
  input, the ground truth and each model's prediction, in the dataset's colours.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from rtseg.benchmark.results import write_atomic
from rtseg.data.labels import colorize


def pareto_front(xs: Sequence[float], ys: Sequence[float], lower_x_is_better: bool) -> list[int]:
    """Indices of the points no other point dominates (at least as good on both axes, better on
    one), ordered along x. Higher y is always better."""
    sign = -1.0 if lower_x_is_better else 1.0
    points = [(sign * float(x), float(y)) for x, y in zip(xs, ys)]
    front = []
    for i, (x, y) in enumerate(points):
        dominated = any((x2 >= x and y2 >= y) and (x2 > x or y2 > y) for j, (x2, y2) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return sorted(front, key=lambda i: float(xs[i]))


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def _save(fig, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg


    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    write_atomic(path, buffer.getvalue())
    return Path(path)


MARKERS = ("o", "s", "^", "D", "v")


def pareto_plot(labels: Sequence[str], xs: Sequence[float], ys: Sequence[float], path: str | Path, *,
                xlabel: str, title: str, lower_x_is_better: bool, log_x: bool = False,
                kinds: Sequence[str] | None = None) -> Path:
    """Scatter of (x, mIoU %) per model with the Pareto front marked; written to ``path`` (PNG).
    ``kinds`` (one per point, e.g. "RTSeg grid" / "today's models") give each kind its own marker."""
    fig = _figure(7.0, 4.6)
    ax = fig.add_subplot()
    front = set(pareto_front(xs, ys, lower_x_is_better))
    kinds = list(kinds) if kinds is not None else [""] * len(xs)
    marker_of = {kind: MARKERS[i % len(MARKERS)] for i, kind in enumerate(dict.fromkeys(kinds))}
    for kind, marker in marker_of.items():
        others = [i for i in range(len(xs)) if i not in front and kinds[i] == kind]
        ax.scatter([xs[i] for i in others], [ys[i] for i in others], s=40, facecolors="white",
                   edgecolors="#555555", marker=marker, zorder=3)
        members = [i for i in front if kinds[i] == kind]
        ax.scatter([xs[i] for i in members], [ys[i] for i in members], s=55, color="#d62728", marker=marker, zorder=4)
    ordered = sorted(front, key=lambda i: xs[i])
    ax.plot([xs[i] for i in ordered], [ys[i] for i in ordered], color="#d62728", linewidth=1.5,
            # the staircase bounding the region the front dominates
            drawstyle="steps-post" if lower_x_is_better else "steps-pre", zorder=2)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color="#d62728", marker="o", linewidth=1.5, label="Pareto front"),
               Line2D([], [], color="#555555", marker="o", markerfacecolor="white", linewidth=0, label="dominated")]
    if len(marker_of) > 1:
        handles += [Line2D([], [], color="#555555", marker=marker, linewidth=0, label=kind)
                    for kind, marker in marker_of.items()]
    for x, y, label in zip(xs, ys, labels):
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    if log_x and min(xs) > 0:
        from matplotlib.ticker import FuncFormatter

        ax.set_xscale("log")
        # plain numbers (20, not 2x10^1), minor ticks labelled at 2 and 5 only
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda value, _: f"{value:g}" if f"{value:e}"[0] in "25" else ""))
    better = "lower" if lower_x_is_better else "higher"
    ax.set_xlabel(f"{xlabel} ({better} is better)")
    ax.set_ylabel("mIoU % (higher is better)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.legend(handles=handles, loc="best", fontsize=8)
    # room for the labels of the right-most points
    left, right = ax.get_xlim()
    if log_x and min(xs) > 0:
        ax.set_xlim(left, right * 1.6)
    else:
        ax.set_xlim(left, right + 0.15 * (right - left))
    return _save(fig, Path(path))


def qualitative_figure(rows: Sequence[dict], model_labels: Sequence[str], path: str | Path,
                       colorize: Callable[[np.ndarray], np.ndarray] = colorize, max_width_px: int = 512) -> Path:
    """``rows``: per image ``{"name", "image": RGB array, "label": class ids, "predictions": [class ids per model]}``;
    ``colorize``: class ids -> RGB (the dataset's ``DatasetInfo.colorize``; Cityscapes' by default).

    One column per image; rows: the input, the ground truth, then one per model
    (``model_labels``), so a dozen models still fit the page width. Pixels the ground truth
    ignores are black, as in the official colour images.
    """
    panel_titles = ["input", "ground truth", *model_labels]
    height, width = rows[0]["image"].shape[:2]
    cell = 2.6  # inches per image column
    fig = _figure(1.2 + cell * len(rows), cell * height / width * len(panel_titles) + 0.4)
    grid = fig.add_gridspec(len(panel_titles), len(rows))
    for c, row in enumerate(rows):
        panels = [row["image"], colorize(row["label"]), *(colorize(p) for p in row["predictions"])]
        for r, panel in enumerate(panels):
            ax = fig.add_subplot(grid[r, c])
            ax.imshow(_shrink(panel, max_width_px), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(row["name"], fontsize=7)
            if c == 0:
                ax.set_ylabel(panel_titles[r], fontsize=8, rotation=0, ha="right", va="center")
    return _save(fig, Path(path))


def _shrink(image: np.ndarray, max_width: int) -> np.ndarray:
    """Every n-th pixel (nearest neighbour, so label colours stay exact) down to ``max_width``."""
    step = max(1, int(np.ceil(image.shape[1] / max_width)))
    return image[::step, ::step]
