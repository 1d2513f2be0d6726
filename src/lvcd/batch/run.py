"""Running a batch: decide what is left to do, hand it to a worker pool, show progress, keep the report.

Before any model loads, every shot is checked (inputs exist and open, frame count): complete shots are skipped,
bad ones are reported as failed, the rest become jobs, longest first so a 100x longer shot does not start last.

    >>> shots = read_shots("film.csv")                                                   # doctest: +SKIP
    >>> report = run_batch(shots, "out", InProcessPool(model), identity, BatchOptions())   # doctest: +SKIP
    >>> report.failed                                                                    # doctest: +SKIP
    []
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from lvcd.batch.dispatch import WorkerPool, dispatch
from lvcd.batch.layout import (
    EVALUATION_NAME,
    REPORT_NAME,
    BatchLayout,
    check_outdir,
    is_complete,
    lock_outdir,
    model_files,
    read_record,
    remove_unused_outdir,
    shot_fingerprint,
)
from lvcd.batch.manifest import ShotSpec
from lvcd.batch.report import BatchReport, new_entry
from lvcd.batch.shot import ShotJob, ShotResult, finished_windows
from lvcd.errors import LVCDError
from lvcd.io.paths import check_not_input
from lvcd.io.writers import check_replaceable


@dataclass(frozen=True)
class BatchOptions:
    output_format: str = "mp4"
    overwrite: bool = False  # replace outputs this batch did not make (or made from other inputs/settings)
    keep_work: bool = False  # keep each shot's work directory after it is done
    retries: int = 2  # how many dead workers a shot may cost before it fails
    progress: bool = True
    manifest: str = ""
    scheduler: str = "local"


def _frame_count(shot: ShotSpec) -> int:
    from lvcd.io import FrameSource

    missing = [str(path) for path in shot.inputs if not path.exists()]
    if missing:
        raise LVCDError(f"not found: {', '.join(missing)}; fix the manifest entry")
    return len(FrameSource.open(shot.lineart))


def plan_batch(
    shots: list[ShotSpec], layout: BatchLayout, model_identity: dict, options: BatchOptions, report: BatchReport
) -> tuple[list[ShotJob], dict[str, int]]:
    """The jobs left to run (longest first) and their frame counts; skipped and failed shots go to ``report``."""
    jobs, frames = [], {}
    for shot in tqdm(shots, desc="checking shots", unit="shot", disable=not options.progress, leave=False):
        entry = report.shots[shot.name]
        fingerprint = shot_fingerprint(shot, model_identity, layout.format)
        if is_complete(layout, shot.name, fingerprint):
            record = read_record(layout.record_path(shot.name)) or {}
            entry.update(status="skipped", frames=record.get("frames"), worker=record.get("worker"))
            continue
        output = layout.output(shot.name)
        try:
            if output.name.casefold() in (REPORT_NAME.casefold(), EVALUATION_NAME.casefold()):
                raise LVCDError(f"the name {shot.name!r} is the batch's own {output.name}; rename the shot")
            check_not_input(output, [*shot.inputs, *model_files(model_identity)])
            if options.overwrite:
                check_replaceable(output)
            frames[shot.name] = _frame_count(shot)
            if output.exists() and not options.overwrite:
                raise LVCDError(
                    f"{output} exists but was not made by this batch from these inputs and settings; "
                    "pass --overwrite to replace it, or move it away"
                )
        except LVCDError as err:
            entry.update(status="failed", error=str(err))
            continue
        job = ShotJob(
            shot,
            output,
            layout.work_dir(shot.name),
            layout.record_path(shot.name),
            fingerprint,
            options.overwrite,
            options.keep_work,
        )
        jobs.append(job)
    jobs.sort(key=lambda job: -frames[job.name])  # stable: equal lengths keep the manifest's order
    return jobs, frames


class _Progress:
    """One bar over the frames of the batch (frames/s, ETA). A background thread moves it as running shots finish
    windows (read from their work directories), so it also moves while one long shot runs in this process."""

    def __init__(self, frames: dict[str, int], enabled: bool, tick_seconds: float = 1.0):
        self.frames = frames
        self.done_frames = self.ended = self.failed = 0
        self.running: dict[str, ShotJob] = {}
        self.bar = tqdm(total=sum(frames.values()), desc="batch", unit="frame", disable=not enabled, smoothing=0.1)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker = threading.Thread(target=self._tick_loop, args=(tick_seconds,), daemon=True)
        if enabled:
            self._ticker.start()

    def _tick_loop(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            try:
                self.tick()
            except Exception:  # noqa: BLE001 - progress is advice: a file mid-replacement must not stop the batch
                pass

    def tick(self) -> None:
        partial_frames, notes = 0, []
        with self._lock:
            running = list(self.running.values())
        for job in running:
            record = read_record(job.record) or {}
            windows = record.get("windows") if record.get("fingerprint") == job.fingerprint else None
            done = min(finished_windows(job.work_dir), windows) if windows else 0
            notes.append(f"{job.name} ({done}/{windows} windows)" if windows else job.name)
            partial_frames += self.frames[job.name] * done // (windows + 1) if windows else 0  # + 1: decoding
        with self._lock:
            text = f"{self.ended}/{len(self.frames)} shots" + (f", {self.failed} failed" if self.failed else "")
            if notes:
                text += "; running " + ", ".join(notes[:3]) + (", ..." if len(notes) > 3 else "")
            self.bar.set_postfix_str(text, refresh=False)
            self._advance(self.done_frames + partial_frames)

    def _advance(self, shown: int) -> None:
        if shown > self.bar.n:
            self.bar.update(shown - self.bar.n)
        else:
            self.bar.refresh()

    def started(self, job: ShotJob) -> None:
        with self._lock:
            self.running[job.name] = job

    def finished(self, job: ShotJob, result: ShotResult) -> None:
        with self._lock:
            self.running.pop(job.name, None)
            self.ended += 1
            self.failed += result.status == "failed"
            self.done_frames += self.frames[job.name]
            self._advance(self.done_frames)
            if result.status == "done":
                resumed = (
                    f", resumed {result.windows_resumed}/{result.windows} windows" if result.windows_resumed else ""
                )
                plural = "s" if result.frames != 1 else ""
                line = f"done    {job.name}: {result.frames} frame{plural} in {result.seconds:.1f} s on {result.worker}"
                line += resumed + ("; line art: " + result.lineart_levels if result.lineart_levels else "")
            else:
                line = f"FAILED  {job.name}: {result.error}"
            if not self.bar.disable:
                self.bar.write(line)

    def close(self) -> None:
        self._stop.set()
        if self._ticker.is_alive():
            self._ticker.join()
        self.bar.close()


def run_batch(
    shots: list[ShotSpec],
    outdir: str | Path,
    pool: WorkerPool,
    model_identity: dict,
    options: BatchOptions = BatchOptions(),
) -> BatchReport:
    """Colorize every shot not already complete; returns the report (also written to OUTDIR/batch_report.json).

    Bad shots are reported and the others go on. Interrupted (Ctrl-C, a killed batch), a re-run of the same
    command resumes: complete shots are skipped, interrupted ones continue from their last finished window.
    """
    layout = BatchLayout(outdir, options.output_format)
    check_outdir(layout, shots, model_identity)
    created = not layout.outdir.exists()
    layout.outdir.mkdir(parents=True, exist_ok=True)
    lock = lock_outdir(layout)
    try:
        return _run_locked(shots, layout, pool, model_identity, options)
    except BaseException:
        if created and not any(layout.record_path(shot.name).exists() for shot in shots):
            remove_unused_outdir(layout)  # the batch could not start (no worker, no weights): leave nothing behind
        raise
    finally:
        os.close(lock)


def _run_locked(
    shots: list[ShotSpec], layout: BatchLayout, pool: WorkerPool, model_identity: dict, options: BatchOptions
) -> BatchReport:
    entries = {shot.name: new_entry(shot.name, layout.output(shot.name).name) for shot in shots}
    report = BatchReport(options.manifest, layout.outdir, options.scheduler, entries)
    jobs, frames = plan_batch(shots, layout, model_identity, options, report)
    report.write(layout.report_path)
    if not jobs:
        report.finished = time.time()
        report.write(layout.report_path)
        return report
    progress = _Progress(frames, options.progress)

    def on_start(job: ShotJob, slot: int) -> None:
        entry = report.shots[job.name]
        entry.update(status="running", attempts=entry["attempts"] + 1, worker=pool.workers[slot])
        progress.started(job)

    def on_result(job: ShotJob, result: ShotResult, lost: list[str]) -> None:
        report.shots[job.name].update(
            status=result.status,
            frames=result.frames,
            seconds=result.seconds,
            worker=result.worker,
            lost_workers=list(lost),
            windows=result.windows,
            windows_resumed=result.windows_resumed,
            lineart_levels=result.lineart_levels,
            error=result.error,
            warnings=result.warnings,
        )
        progress.finished(job, result)
        report.workers = list(pool.workers)
        report.write(layout.report_path)

    try:
        pool.start()
        report.workers = list(pool.workers)
        dispatch(jobs, pool, on_result, options.retries, on_start=on_start)
    finally:
        pool.close()
        progress.close()
        report.finished = time.time()
        report.write(layout.report_path)
    return report
