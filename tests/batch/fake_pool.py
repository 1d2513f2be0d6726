"""A worker pool without a model, for the batch's own mechanics (progress, report, planning): fast and exact.

Each shot "colorizes" in this process by writing its records (running, then done) and a stand-in output file, as
:class:`lvcd.batch.ShotRunner` does, after ``seconds``. Also run as a script by the kill tests::

    python fake_pool.py OUTDIR SHOTS SECONDS       # a batch of SHOTS one-frame shots, each taking SECONDS
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lvcd.batch import BatchOptions, ShotJob, ShotResult, ShotSpec, WorkerPool, run_batch
from lvcd.batch.layout import write_record
from lvcd.io import FrameSource


class FakePool(WorkerPool):
    def __init__(self, seconds: float = 0.0):
        self.seconds, self.size = seconds, 1
        self.workers = [f"fake (pid {os.getpid()})"]
        self._job: ShotJob | None = None
        self.ran: list[str] = []

    def start(self) -> None:
        pass

    def submit(self, slot: int, job: ShotJob) -> None:
        self._job = job

    def wait(self, timeout: float):
        job, self._job = self._job, None
        return [] if job is None else [(0, self.run(job))]

    def run(self, job: ShotJob) -> ShotResult:
        frames = len(FrameSource.open(job.shot.lineart))
        record = {"name": job.name, "fingerprint": job.fingerprint, "worker": self.workers[0], "pid": os.getpid()}
        write_record(job.record, {**record, "status": "running", "frames": frames, "windows": 1})
        time.sleep(self.seconds)
        job.output.write_bytes(b"GIF89a")
        write_record(job.record, {**record, "status": "done", "frames": frames, "windows": 1})
        self.ran.append(job.name)
        return ShotResult(job.name, "done", self.workers[0], frames=frames, seconds=self.seconds, windows=1)

    def replace(self, slot: int) -> None:
        raise RuntimeError("the fake worker is never lost")

    def close(self) -> None:
        pass


def fake_shots(root: Path, count: int, frames: int = 1) -> list[ShotSpec]:
    """``count`` shots sharing one reference and one folder of ``frames`` 8x8 line-art frames."""
    lineart = root / "lineart"
    if not lineart.exists():
        lineart.mkdir(parents=True)
        for index in range(frames):
            Image.fromarray(np.full((8, 8, 3), 255, np.uint8)).save(lineart / f"{index:03d}.png")
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "ref.png")
    return [ShotSpec(f"shot{index:04d}", root / "ref.png", lineart) for index in range(count)]


def fake_batch(outdir: Path, shots: list[ShotSpec], pool: FakePool, progress: bool = False):
    return run_batch(shots, outdir, pool, {"model": "fake"}, BatchOptions(output_format="gif", progress=progress))


if __name__ == "__main__":
    out, count, seconds = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    fake_batch(out, fake_shots(out.parent, count), FakePool(seconds))
