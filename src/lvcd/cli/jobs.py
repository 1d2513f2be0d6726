"""A resumable CLI job around its work directory: opened (and locked) before any weights load, its seed fixed and
printed at the start, its state kept for ``--resume`` when it is interrupted, removed (only lvcd's files) on success.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer

from lvcd.cli.guard import interruption
from lvcd.errors import InputError, Interrupted
from lvcd.seeds import draw_seed
from lvcd.workdir import WorkDir


def open_job(path: Path, resume: bool, seed: int | None) -> tuple[WorkDir, int]:
    """Lock the work directory and fix the seed: the given one, the one the interrupted run recorded (--resume), or
    a fresh one. A seed not given is printed now, so even a run killed at once can be reproduced."""
    work = WorkDir(path, resume=resume)
    recorded = work.recorded_seed() if resume else None
    if seed is not None and recorded is not None and seed != recorded:  # said now, not after the weights load
        work.release()
        raise InputError(
            f"--seed {seed} differs from the seed of the interrupted job in {path} ({recorded}); give --seed "
            f"{recorded} (or no --seed) to resume it, or run without --resume to start afresh."
        )
    if seed is None:
        seed = recorded if recorded is not None else draw_seed()
        origin = "recorded by the interrupted run" if recorded is not None else "drawn at random"
        typer.echo(f"seed {seed} ({origin}; --seed {seed} reproduces this run)", err=True)
    return work, seed


def run_job(work: WorkDir, seed: int, job: Callable, keep_work: bool = False):
    """Run ``job``; on success remove the work directory (unless ``keep_work``), on an interruption keep it and say
    how to resume, on an error keep it only when it holds finished work or a job that --resume was asked to continue
    (a resume refused for a mistyped option leaves that job as it was, its drawn seed included)."""
    try:
        result = job()
    except BaseException as err:
        stopped = interruption(err)
        finished = work.windows_on_disk()  # every pass's windows count
        resumable = work.resume and work.recorded_seed() is not None
        if stopped is None and finished == 0 and not resumable:
            work.remove()  # nothing worth resuming
        work.release()
        if stopped is not None:
            what, code = stopped
            frames = work.decoded_on_disk()
            kept = "the finished windows are" if finished else "no window had finished; the job's set-up is"
            if frames:  # stopped while decoding: those frames are not decoded again
                kept = f"the finished windows and {frames} decoded frame{'s' * (frames != 1)} are"
            raise Interrupted(
                f"interrupted ({what}); {kept} kept in {work.path}: run the same command with --resume to continue "
                f"(seed {seed}).",
                exit_code=code,
            ) from None
        raise
    if keep_work:
        work.release()
    else:
        work.remove()
    return result
