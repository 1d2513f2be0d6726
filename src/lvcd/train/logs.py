"""The training log of ``lvcd train``: ``logs/train_log.csv`` (always readable, cut back to the resumed step, then
appended to) and, with ``log.trackers`` holding it, TensorBoard; written by the main process only.

    >>> rows = read_log("runs/lvcd")      # doctest: +SKIP
    >>> rows[-1]["loss"]                   # doctest: +SKIP
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from lvcd.train.config import TrainConfig, TrainConfigError
from lvcd.train.run_dir import continue_csv_log

LOG_NAME = "train_log.csv"
LOG_COLUMNS = ("step", "epoch", "samples", "loss", "lr", "seconds")


class RunLoggers:
    """CSV and TensorBoard writers of one run (none on the other processes of a data-parallel run)."""

    def __init__(self, config: TrainConfig, output_dir: Path, start_step: int, enabled: bool):
        self.csv_path = output_dir / "logs" / LOG_NAME
        self.writer = None
        self.file = None
        if not enabled:
            return
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        if "csv" in config.log.trackers:
            continue_csv_log(self.csv_path, LOG_COLUMNS, start_step)
            self.file = self.csv_path.open("a", newline="")
            self.csv = csv.DictWriter(self.file, fieldnames=LOG_COLUMNS)
        if "tensorboard" in config.log.trackers:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise TrainConfigError(
                    "log.trackers has 'tensorboard' but it is not installed: pip install 'lvcd[train]'."
                ) from err
            self.writer = SummaryWriter(str(output_dir / "logs" / "tensorboard"), purge_step=start_step + 1)

    def log(self, row: dict[str, Any]) -> None:
        if self.file is not None:
            self.csv.writerow(row)
            self.file.flush()
        if self.writer is not None:
            for key in ("loss", "lr"):
                self.writer.add_scalar(f"train/{key}", row[key], row["step"])

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.writer is not None:
            self.writer.close()


def read_log(output_dir: str | Path) -> list[dict[str, float]]:
    """The CSV log of a run as numbers."""
    with (Path(output_dir) / "logs" / LOG_NAME).open(newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
