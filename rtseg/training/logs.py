"""Run logs: CSV files (always) and TensorBoard (when the ``tensorboard`` package is installed).

CSV rows are appended and flushed one at a time, so a killed run keeps what it logged. On
resumption the rows after the checkpoint's step are dropped (the file is rewritten
atomically), so the file reads as one uninterrupted run.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Sequence
from rtseg.atomic import atomic_open


class CsvLog:
    def __init__(self, path: Path, fields: Sequence[str], resume_step: int | None = None):
        self.path = Path(path)
        self.fields = list(fields)
        if resume_step is not None and self.path.is_file():
            self._truncate_after(resume_step)
        else:
            self._rewrite([])
        self._handle = open(self.path, "a", newline="", encoding="utf-8")
        self._writer = csv.DictWriter(self._handle, fieldnames=self.fields, extrasaction="ignore")

    def _truncate_after(self, step: int) -> None:
        with open(self.path, newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.DictReader(handle) if row.get("step") and int(row["step"]) <= step]
        self._rewrite(rows)

    def _rewrite(self, rows: list[dict]) -> None:
        with atomic_open(self.path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    def write(self, row: dict[str, Any]) -> None:
        self._writer.writerow({k: _cell(v) for k, v in row.items()})
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def _cell(value: Any) -> Any:
    # repr keeps every digit of a float (the resumption test compares losses exactly)
    if isinstance(value, float):
        return repr(value)
    return "" if value is None else value


def read_csv(path: str | Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


class TensorBoardLog:
    """A SummaryWriter when TensorBoard is installed, else nothing (it is an optional extra)."""

    def __init__(self, log_dir: Path, purge_step: int | None = None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            self.writer = None
        else:
            self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def scalars(self, values: dict[str, Any], step: int) -> None:
        if self.writer is None:
            return
        for name, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
