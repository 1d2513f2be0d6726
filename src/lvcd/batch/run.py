"""Running a batch: decide what is left to do, hand it to a worker pool, show progress, keep the report.

Before any model loads, every shot is checked (inputs exist and open, a folder's frames of one size, a frame rate the
output format holds, reference_frame and keyframes inside the shot, the reference and keyframes readable images, frame
count): complete shots are skipped, bad ones are reported as failed, the rest become jobs, longest first so a 100x
longer shot does not start last. A video's frame count for this is the one its container states: nothing is decoded
but its first frame (the worker counts the frames it decodes, and that count is the shot's). Where it states none, or
the entry names a frame past it, the stream is decoded once, without colour conversion, and a frame size change in it
is found in that same pass; otherwise a size change inside a video (known only by decoding it) is left to its
worker, which fails the shot when it reads the line art. Progress goes to stderr (:mod:`lvcd.batch.progress`);
the report is written as :mod:`lvcd.batch.report` says.

    >>> shots = read_shots("film.csv")                                                   # doctest: +SKIP
    >>> report = run_batch(shots, "out", InProcessPool(model), identity, BatchOptions())   # doctest: +SKIP
    >>> report.failed                                                                    # doctest: +SKIP
    []
"""

from __future__ import annotations

import signal
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from lvcd.batch.dispatch import WorkerPool, dispatch
from lvcd.batch.layout import (
    EVALUATION_NAME,
    REPORT_NAME,
    BatchLayout,
    OutdirClaim,
    claim_outdir,
    is_complete,
    model_files,
    read_record,
    remove_empty_state_folders,
    shot_fingerprint,
)
from lvcd.batch.manifest import ShotSpec, shot_rate_problem
from lvcd.batch.progress import BatchProgress, is_terminal
from lvcd.batch.report import BatchReport, ReportWriter, new_entry
from lvcd.batch.shot import ShotJob, ShotResult, adopt_committed_output
from lvcd.errors import InputError, LVCDError
from lvcd.io.atomic import recover_replaced_in
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


def _stated_frames(path: Path) -> int:
    """The frame count a video's container states (WebM states none: its duration x frame rate), or 0 if neither."""
    from lvcd.io.pyav import av_errors, pyav

    try:
        with pyav().open(str(path), mode="r") as container:
            stream = container.streams.video[0]
            if stream.frames:
                return int(stream.frames)
            rate = stream.average_rate or stream.guessed_rate
            return round(container.duration / 1_000_000 * float(rate)) if container.duration and rate else 0
    except (*av_errors(), IndexError):
        return 0


def _planned_frames(shot: ShotSpec, output_format: str) -> int:
    """The shot's frame count for planning (order, progress), its inputs checked as far as is cheap; raises LVCDError
    for the first problem: a missing file, line art that does not open (or a folder's frames of mixed sizes, read
    from their headers), a frame rate the output cannot hold (the entry's, else the line art's own), a
    reference_frame or keyframe outside the shot, a reference or keyframe that is no image."""
    from lvcd.io import VIDEO_SUFFIXES, FrameSource

    missing = [str(path) for path in shot.inputs if not path.exists()]
    if missing:
        raise LVCDError(f"not found: {', '.join(missing)}; fix the manifest entry")
    source = FrameSource.open(shot.lineart)  # a video: opened and its first frame decoded, not the whole stream
    rate_problem = shot_rate_problem(shot, output_format, getattr(source, "fps", None) or None)  # as the worker's
    if rate_problem is not None:
        raise InputError(rate_problem)
    if shot.lineart.suffix.lower() in VIDEO_SUFFIXES and shot.lineart.is_file():
        count = _stated_frames(shot.lineart)
        if count <= _last_index(shot):  # none stated, or a given frame past it (a stated count may be off): decoded
            source.check_uniform_size()  # that one pass (no colour conversion) counts it and finds a size change
            count = len(source)
    else:
        source.check_uniform_size()  # headers only (a video's would decode it whole: left to its worker)
        count = len(source)
    _check_indices(shot, count)
    _check_images(shot)
    return count


def _last_index(shot: ShotSpec) -> int:
    """The last frame the shot's entry names: its reference_frame or a keyframe."""
    return max([shot.settings.reference_frame, *(index for index, _ in shot.keyframes)])


def _check_indices(shot: ShotSpec, count: int) -> None:
    """The reference_frame and the keyframes inside the shot's ``count`` frames, no keyframe on the reference's."""
    reference = shot.settings.reference_frame
    if reference >= count:
        raise InputError(
            f"reference_frame {reference} is outside the shot of {count} frames (0..{count - 1}); give the index of "
            "the frame the reference colours"
        )
    for index, path in shot.keyframes:
        if index >= count:
            raise InputError(
                f"Keyframe index {index} ({path.name}) is outside the shot (0..{count - 1}); fix the entry's keyframes"
            )
        if index == reference:
            raise InputError(
                f"Keyframe index {index} ({path.name}) is the reference's frame (reference_frame {reference}); give "
                "the other coloured frames"
            )


def _check_images(shot: ShotSpec) -> None:
    """The reference and every keyframe are images Pillow reads through (one picture each: milliseconds)."""
    from lvcd.io.images import check_image

    check_image(shot.reference, "reference")
    for index, path in shot.keyframes:
        check_image(path, f"keyframes {index}=")


def _plan_shot(shot: ShotSpec, output: Path, model_identity: dict, options: BatchOptions) -> int:
    """A shot to run: its output's name and place usable, its inputs checked (:func:`_planned_frames`); its frames."""
    if output.name.casefold() in (REPORT_NAME.casefold(), EVALUATION_NAME.casefold()):
        raise LVCDError(f"the name {shot.name!r} is the batch's own {output.name}; rename the shot")
    check_not_input(output, [*shot.inputs, *model_files(model_identity)])
    if options.overwrite:
        check_replaceable(output)
    frames = _planned_frames(shot, options.output_format)
    if output.exists() and not options.overwrite:
        raise LVCDError(
            f"{output} exists but was not made by this batch from these inputs and settings; "
            "pass --overwrite to replace it, or move it away"
        )
    return frames


def plan_batch(
    shots: list[ShotSpec], layout: BatchLayout, model_identity: dict, options: BatchOptions, report: BatchReport
) -> tuple[list[ShotJob], dict[str, int]]:
    """The jobs left to run (longest first) and their frame counts; skipped and failed shots go to ``report``.
    Outputs an earlier ``--overwrite`` killed between its two moves left aside are moved back first (one listing)."""
    recover_replaced_in(layout.outdir)
    jobs, frames = [], {}
    live = options.progress and is_terminal(sys.stderr)  # in a log, no bar redrawn with \r: one line at the end
    for shot in tqdm(shots, desc="checking shots", unit="shot", disable=not live, leave=False):
        entry = report.shots[shot.name]
        fingerprint = shot_fingerprint(shot, model_identity, layout.format)
        if is_complete(layout, shot.name, fingerprint):
            record = read_record(layout.record_path(shot.name)) or {}
            entry.update(status="skipped", frames=record.get("frames"), worker=record.get("worker"))
            continue
        output = layout.output(shot.name)
        job = ShotJob(
            shot,
            output,
            layout.work_dir(shot.name),
            layout.record_path(shot.name),
            fingerprint,
            options.overwrite,
            options.keep_work,
        )
        adopted = adopt_committed_output(job, "an earlier run")  # output in place, the batch killed before "done"
        if adopted is not None:
            entry.update(status="skipped", frames=adopted.frames, worker=adopted.worker, warnings=adopted.warnings)
            continue
        with warnings.catch_warnings(record=True) as caught:  # to its entry (a reference of many frames: the first)
            warnings.simplefilter("always")
            try:
                frames[shot.name] = _plan_shot(shot, output, model_identity, options)
            except LVCDError as err:
                entry.update(status="failed", error=str(err))
        entry["warnings"] = sorted({*entry["warnings"], *(str(warning.message) for warning in caught)})
        if shot.name in frames:
            jobs.append(job)
    jobs.sort(key=lambda job: -frames[job.name])  # stable: equal lengths keep the manifest's order
    return jobs, frames


def run_batch(
    shots: list[ShotSpec],
    outdir: str | Path,
    pool: WorkerPool,
    model_identity: dict,
    options: BatchOptions = BatchOptions(),
    claim: OutdirClaim | None = None,
) -> BatchReport:
    """Colorize every shot not already complete; returns the report (also written to OUTDIR/batch_report.json).

    Bad shots are reported and the others go on. Interrupted (Ctrl-C, SIGTERM, a killed batch), a re-run of the same
    command resumes: complete shots are skipped, interrupted ones continue from their last finished window.
    ``claim``: OUTDIR already held by the caller (:func:`lvcd.batch.layout.claim_outdir`, taken before its own slow
    setup, so that a batch running there refuses this one first); None: OUTDIR is claimed here, for this call.
    """
    layout = BatchLayout(outdir, options.output_format)
    if claim is None:
        with claim_outdir(layout, shots, model_identity) as claim:
            return _run_claimed(shots, layout, pool, model_identity, options, claim)
    claim.check_holds(layout)
    return _run_claimed(shots, layout, pool, model_identity, options, claim)


def _run_claimed(
    shots: list[ShotSpec],
    layout: BatchLayout,
    pool: WorkerPool,
    model_identity: dict,
    options: BatchOptions,
    claim: OutdirClaim,
) -> BatchReport:
    with _terminate_as_exit():
        report = _run_locked(shots, layout, pool, model_identity, options)
    claim.finished = True
    return report


@contextmanager
def _terminate_as_exit():
    """SIGTERM (Slurm's time limit, a Kubernetes pod stopped) ends the batch as Ctrl-C does: workers stopped, the
    report written with how far it got. Only where signals can be caught: the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_locked(
    shots: list[ShotSpec], layout: BatchLayout, pool: WorkerPool, model_identity: dict, options: BatchOptions
) -> BatchReport:
    entries = {shot.name: new_entry(shot.name, layout.output(shot.name).name) for shot in shots}
    report = BatchReport(options.manifest, layout.outdir, options.scheduler, entries)
    saver = ReportWriter(report, layout.report_path)
    jobs, frames = plan_batch(shots, layout, model_identity, options, report)
    if not jobs:
        remove_empty_state_folders(layout)  # what an earlier batch left
        report.finished = time.time()
        saver.write()
        return report
    saver.write()
    progress = BatchProgress(frames, options.progress)
    if progress.log:
        skipped, failed = report.count("skipped"), report.count("failed")
        planned = f"batch: {len(jobs)}/{len(shots)} shots to colorize ({sum(frames.values())} frames)"
        progress.stream.write(f"{planned}; {skipped} skipped (already complete), {failed} failed\n")
        progress.stream.flush()

    def on_start(job: ShotJob, slot: int) -> None:
        entry = report.shots[job.name]
        entry.update(status="running", attempts=entry["attempts"] + 1, worker=pool.workers[slot])
        progress.started(job)
        saver.changed()

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
            warnings=sorted({*report.shots[job.name]["warnings"], *result.warnings}),  # + the planning's
        )
        progress.finished(job, result)
        report.workers = list(pool.workers)
        saver.changed()

    try:
        pool.start()
        report.workers = list(pool.workers)
        dispatch(jobs, pool, on_result, options.retries, on_start=on_start)
    finally:
        pool.close()
        progress.close()
        remove_empty_state_folders(layout)
        _settle_running(report, jobs)
        report.finished = time.time()
        saver.write()
    return report


def _settle_running(report: BatchReport, jobs: list[ShotJob]) -> None:
    """A stopped batch's final report: a shot still "running" in it whose worker finished and recorded it done before
    the workers stopped (its result not yet dispatched) is reported done, as its record (and a re-run) has it."""
    for job in jobs:
        entry = report.shots[job.name]
        if entry["status"] != "running":
            continue
        record = read_record(job.record)
        if record and record.get("status") == "done" and record.get("fingerprint") == job.fingerprint:
            entry.update(status="done", frames=record.get("frames"), worker=record.get("worker"))
