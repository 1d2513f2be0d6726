"""What a batch leaves in OUTDIR besides its outputs, report and records, on a pool without a model (fast): no empty
state folders, and an output an interrupted --overwrite moved aside is moved back, not left hidden."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from lvcd.batch import BatchOptions, ShotJob, ShotResult, run_batch
from lvcd.batch.layout import write_record
from lvcd.batch.shot import _commit_output
from lvcd.io import atomic

from .fake_pool import FakePool, fake_shots


class StagingPool(FakePool):
    """Runs a shot as :class:`lvcd.batch.ShotRunner` does on disk: a work directory with a window in it, the output
    staged in .lvcd-batch/staged and moved onto its name (the runner's own commit), the work directory removed. A
    shot in ``stopped`` ends with its finished window kept, as a shot stopped mid-way does (the re-run resumes it)."""

    def __init__(self, stopped: tuple[str, ...] = ()):
        super().__init__()
        self.stopped = stopped

    def run(self, job: ShotJob) -> ShotResult:
        job.work_dir.mkdir(parents=True, exist_ok=True)
        (job.work_dir / "window_000000.safetensors").write_bytes(b"window")
        if job.name in self.stopped:
            return ShotResult(job.name, "failed", self.workers[0], error="stopped; run the batch again to resume it")
        running = {"name": job.name, "fingerprint": job.fingerprint, "status": "running", "frames": 1}
        write_record(job.record, running)
        job.staged.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(job.staged, ignore_errors=True)  # a killed attempt's (the runner removes it likewise)
        job.staged.mkdir()
        (job.staged / "000.png").write_bytes(b"new frame")
        _commit_output(job, running)
        shutil.rmtree(job.work_dir)
        write_record(job.record, {**running, "status": "done"})
        self.ran.append(job.name)
        return ShotResult(job.name, "done", self.workers[0], frames=1, windows=1)


def _batch(outdir: Path, shots, pool, overwrite: bool = False):
    options = BatchOptions(output_format="png", progress=False, overwrite=overwrite)
    return run_batch(shots, outdir, pool, {"model": "fake"}, options)


def test_a_batch_leaves_no_empty_work_or_staged_folder(tmp_path):
    """.lvcd-batch/work and .lvcd-batch/staged stayed behind, empty, after every batch; a stopped shot's work
    directory (the re-run resumes from it) stays."""
    outdir, shots = tmp_path / "out", fake_shots(tmp_path, 3)
    state = outdir / ".lvcd-batch"
    report = _batch(outdir, shots, StagingPool(stopped=("shot0001",)))
    assert [report.shots[shot.name]["status"] for shot in shots] == ["done", "failed", "done"]
    assert [p.name for p in (state / "work").iterdir()] == ["shot0001"] and not (state / "staged").exists()
    assert (state / "work" / "shot0001" / "window_000000.safetensors").is_file()
    report = _batch(outdir, shots, StagingPool())
    assert report.shots["shot0001"]["status"] == "done"
    assert sorted(p.name for p in state.iterdir()) == ["batch.lock", "shots"]
    (state / "work").mkdir()  # as an earlier lvcd left them
    (state / "staged").mkdir()
    assert all(entry["status"] == "skipped" for entry in _batch(outdir, shots, StagingPool()).shots.values())
    assert sorted(p.name for p in state.iterdir()) == ["batch.lock", "shots"]


class Killed(BaseException):
    """The process dies here (nothing catches a BaseException of this kind: as after a SIGKILL)."""


def _kill_between_the_moves(monkeypatch) -> None:
    """The next folder replacement dies after moving the old output aside, before moving the new one in."""
    replace = os.replace

    def dying_replace(source, destination):
        if Path(source).is_dir() and ".replaced-" not in Path(destination).name:  # moving in, or putting back
            raise Killed(source)
        return replace(source, destination)

    monkeypatch.setattr(atomic.os, "replace", dying_replace)


def test_an_output_an_interrupted_overwrite_moved_aside_is_moved_back_by_the_next_batch(tmp_path, monkeypatch):
    """Killed between its two moves, `lvcd batch --overwrite` left the shot's previous output hidden as
    .NAME.replaced-XXXX and NAME missing: a re-run without --overwrite then made a new output and the old one stayed
    hidden for ever. The next batch moves it back first: without --overwrite it is then kept, as any output is."""
    outdir, shots = tmp_path / "out", fake_shots(tmp_path, 1)
    output = outdir / "shot0000"
    output.mkdir(parents=True)
    (output / "000.png").write_bytes(b"previous frame")
    with monkeypatch.context() as patch:
        _kill_between_the_moves(patch)
        with pytest.raises(Killed):
            _batch(outdir, shots, StagingPool(), overwrite=True)
    assert not output.exists()
    with pytest.warns(UserWarning, match="interrupted after moving it aside; it was moved back"):
        entry = _batch(outdir, shots, StagingPool()).shots["shot0000"]
    assert entry["status"] == "failed" and "exists but was not made by this batch" in entry["error"]
    assert (output / "000.png").read_bytes() == b"previous frame"
    assert [p.name for p in outdir.iterdir() if p.name.startswith(".")] == [".lvcd-batch"]
    assert _batch(outdir, shots, StagingPool(), overwrite=True).shots["shot0000"]["status"] == "done"
    assert (output / "000.png").read_bytes() == b"new frame"
    assert [p.name for p in outdir.iterdir() if p.name.startswith(".")] == [".lvcd-batch"]
