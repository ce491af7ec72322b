"""Human-readable Cityscapes results: the four scores, then per-class and per-category tables."""

from __future__ import annotations

from typing import Any


def _percent(value: float | None, width: int = 6) -> str:
    # The paper's tables give percentages with one decimal; '-' where a score is undefined.
    return f"{'-':>{width}}" if value is None else f"{100 * value:>{width}.1f}"


def format_table(results: dict[str, Any]) -> str:
    """Formats ``CityscapesMetrics.compute()`` output (scores in %, as in the paper's tables)."""
    lines = [
        f"{'class IoU':<15}{_percent(results['miou'])}",
        f"{'class iIoU':<15}{_percent(results['miiou'])}",
        f"{'category IoU':<15}{_percent(results['category_miou'])}",
        f"{'category iIoU':<15}{_percent(results['category_miiou'])}",
        "",
        f"{'class':<15}{'IoU':>6}{'iIoU':>7}",
        "-" * 28,
    ]
    for name, iou in results["class_iou"].items():
        lines.append(f"{name:<15}{_percent(iou)} {_percent(results['class_iiou'].get(name))}")
    lines += ["", f"{'category':<15}{'IoU':>6}{'iIoU':>7}", "-" * 28]
    for name, iou in results["category_iou"].items():
        lines.append(f"{name:<15}{_percent(iou)} {_percent(results['category_iiou'].get(name))}")
    return "\n".join(lines)
