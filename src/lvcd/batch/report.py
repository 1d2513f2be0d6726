"""``OUTDIR/batch_report.json``: every shot's status, frames, seconds, worker and error; totals for the batch.

Written atomically (:class:`ReportWriter`): when the batch has planned its shots, while it runs (as shots start and
end, at most every ``MIN_SECONDS``, and less often for batches so large that a write costs more than ``MAX_SHARE`` of
the time), and when it ends, normally, on an error, Ctrl-C or SIGTERM, so it stays cheap at 10,000 shots. A batch
killed outright (SIGKILL, a lost machine) leaves the last one written: valid, every shot listed, ``finished`` null;
each shot's own record (``.lvcd-batch/shots/<name>.json``, written by its worker as it starts and ends) is current,
and the re-run reads those records and writes the report afresh.
Schema ``lvcd.batch/1``::

    {"schema": "lvcd.batch/1", "lvcd_version": "0.1.0", "manifest": "film.csv", "outdir": "out",
     "scheduler": "local" | "ray", "workers": ["local (pid 4242 on host)"], "started": "2025-...Z",
     "finished": "2025-...Z" | null, "seconds": 812.4,
     "totals": {"shots": 5, "done": 3, "skipped": 1, "failed": 1, "pending": 0,
                "frames": 480, "frames_per_second": 0.59, "shots_per_hour": 13.3},
     "shots": [{"name": "sc001", "status": "done" | "skipped" | "failed" | "pending" | "running",
                "output": "sc001.mp4", "frames": 120, "seconds": 201.3, "worker": "ray-1 (pid 77 on node2)",
                "attempts": 2, "lost_workers": ["ray-0 (pid 70 on node1) was lost (...)"],
                "windows": 12, "windows_resumed": 5, "lineart_levels": null, "error": null, "warnings": []}],
     "evaluation": {"file": "evaluation.json", "metrics": {...}}}          (with --evaluate)

``frames``/``seconds`` of the totals count the shots colorized by this run (skipped ones excluded); a shot's
``windows_resumed`` counts the windows an earlier, interrupted attempt had finished and this one kept unchanged;
``lineart_levels`` says what was done to a shot's scanned line art (``lvcd.io.paper``; null when read as drawn).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from lvcd.batch.layout import write_json

SCHEMA = "lvcd.batch/1"
MIN_SECONDS = 10.0  # while a batch runs, the report is rewritten at most this often
MAX_SHARE = 0.02  # ... and at most this share of the time goes into rewriting it (a write costs O(shots))
STATUSES = ("done", "skipped", "failed", "pending", "running")


def _utc(seconds: float | None) -> str | None:
    return None if seconds is None else time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


@dataclass
class BatchReport:
    manifest: str
    outdir: Path
    scheduler: str
    shots: dict[str, dict]  # name -> entry, in manifest order
    workers: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.time)
    finished: float | None = None
    evaluation: dict | None = None

    def count(self, status: str) -> int:
        return sum(entry["status"] == status for entry in self.shots.values())

    @property
    def failed(self) -> list[str]:
        return [name for name, entry in self.shots.items() if entry["status"] == "failed"]

    def totals(self) -> dict:
        ran = [e for e in self.shots.values() if e["status"] == "done"]
        frames = sum(e["frames"] or 0 for e in ran)
        elapsed = (self.finished or time.time()) - self.started
        return {
            "shots": len(self.shots),
            **{status: self.count(status) for status in STATUSES if status != "running"},
            "frames": frames,
            "frames_per_second": round(frames / elapsed, 4) if elapsed > 0 else None,
            "shots_per_hour": round(len(ran) * 3600 / elapsed, 2) if elapsed > 0 else None,
        }

    def to_dict(self) -> dict:
        from lvcd import __version__

        return {
            "schema": SCHEMA,
            "lvcd_version": __version__,
            "manifest": self.manifest,
            "outdir": str(self.outdir),
            "scheduler": self.scheduler,
            "workers": list(self.workers),
            "started": _utc(self.started),
            "finished": _utc(self.finished),
            "seconds": round((self.finished or time.time()) - self.started, 3),
            "totals": self.totals(),
            "shots": list(self.shots.values()),
            **({"evaluation": self.evaluation} if self.evaluation is not None else {}),
        }

    def write(self, path: Path) -> None:
        write_json(path, self.to_dict())

    def summary(self) -> str:
        totals = self.totals()
        line = (
            f"{totals['shots']} shots: {totals['done']} done, {totals['skipped']} skipped (already complete), "
            f"{totals['failed']} failed"
        )
        if totals["pending"] or self.count("running"):
            line += f", {totals['pending'] + self.count('running')} not finished"
        return line


class ReportWriter:
    """Writes ``report`` to ``path``: at once on :meth:`write`; on :meth:`changed` only when the last write is
    ``MIN_SECONDS`` old, or 1/``MAX_SHARE`` times as old as it took, so a shot's cost does not grow with the batch."""

    def __init__(self, report: BatchReport, path: Path, clock=time.monotonic):
        self.report, self.path, self.clock = report, path, clock
        self.written_at: float | None = None
        self.write_seconds = 0.0
        self.writes = 0

    def changed(self) -> None:
        interval = max(MIN_SECONDS, self.write_seconds / MAX_SHARE)
        if self.written_at is None or self.clock() - self.written_at >= interval:
            self.write()

    def write(self) -> None:
        started = self.clock()
        self.report.write(self.path)
        self.written_at = self.clock()
        self.write_seconds = self.written_at - started
        self.writes += 1


def new_entry(name: str, output: str) -> dict:
    return {
        "name": name,
        "status": "pending",
        "output": output,
        "frames": None,
        "seconds": None,
        "worker": None,
        "attempts": 0,
        "lost_workers": [],
        "windows": None,
        "windows_resumed": None,
        "lineart_levels": None,
        "error": None,
        "warnings": [],
    }
