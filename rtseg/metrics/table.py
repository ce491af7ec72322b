"""Human-readable results: Cityscapes' four scores with per-class and per-category tables, or any
dataset's mIoU, pixel and mean accuracy with per-class IoU and accuracy."""

from __future__ import annotations

from typing import Any


def _percent(value: float | None, width: int = 6) -> str:
    # The paper's tables give percentages with one decimal; '-' where a score is undefined.
    return f"{'-':>{width}}" if value is None else f"{100 * value:>{width}.1f}"


def format_table(results: dict[str, Any]) -> str:
    """Formats ``CityscapesMetrics.compute()`` or ``ConfusionMetrics.compute()`` output (scores in %,
    as in the paper's tables)."""
    if "miiou" not in results:
        return _confusion_table(results)
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


def _confusion_table(results: dict[str, Any]) -> str:
    width = max([15, *(len(name) + 2 for name in results["class_iou"])])
    lines = [
        f"{'mIoU':<{width}}{_percent(results['miou'])}",
        f"{'pixel accuracy':<{width}}{_percent(results['pixel_accuracy'])}",
        f"{'mean accuracy':<{width}}{_percent(results['mean_accuracy'])}",
        "",
        f"{'class':<{width}}{'IoU':>6}{'acc':>7}",
        "-" * (width + 13),
    ]
    accuracy = results.get("class_accuracy") or {}
    for name, iou in results["class_iou"].items():
        lines.append(f"{name:<{width}}{_percent(iou)} {_percent(accuracy.get(name))}")
    return "\n".join(lines)
