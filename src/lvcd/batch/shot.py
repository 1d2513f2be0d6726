"""One worker's side of a batch, the same under every scheduler: load the model once, colorize shot after shot.

A :class:`ShotRunner` holds one loaded :class:`~lvcd.pipeline.LVCDPipeline`. ``run(job)`` colorizes one shot
through the public pipeline call with the shot's own work directory, resuming it when an earlier attempt (a killed
worker, an interrupted batch) left finished windows behind, and writes the shot's record. It never raises for a
bad shot: the error comes back in the :class:`ShotResult` so the other shots go on.

A shot ends in this order, each step safe to be killed after: the pipeline writes the output (atomically) to
``.lvcd-batch/staged/``; the record, still ``running``, names that output (``committing``); the output is moved onto
its name; the work directory is removed; the record says ``done``. Killed before the move, the next attempt resumes
from the finished windows (decoding again); killed after it, the next attempt (a retried job, a re-run of the
batch: :func:`adopt_committed_output`) recognises the output as its own and only finishes the bookkeeping.

    >>> runner = ShotRunner(ModelSpec("svd.safetensors", "lvcd.ckpt"), worker="local")   # doctest: +SKIP
    >>> runner.run(job).status                                                            # doctest: +SKIP
    'done'
"""

from __future__ import annotations

import os
import shutil
import socket
import time
import traceback
import uuid
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

from lvcd.batch.layout import committed_output, output_identity, read_record, write_record
from lvcd.batch.manifest import ShotSpec
from lvcd.errors import LESS_MEMORY, InputError, LVCDError, out_of_memory, out_of_memory_text


@dataclass(frozen=True)
class ModelSpec:
    """What each worker loads: the weight files (None: the Hugging Face cache), config, device, dtype, threads."""

    svd: str | None = None
    lvcd: str | None = None
    config: str | None = None
    device: str | None = None
    dtype: object = None  # a torch.dtype, or None for the pipeline's default
    offload: bool = False
    threads: int | None = None  # torch CPU threads of the worker; None leaves torch's default
    vae_dtype: object = None  # a torch.dtype for the VAE, or None: float32, as officially

    def with_device(self, device: str | None, threads: int | None = None) -> ModelSpec:
        return replace(self, device=device, threads=threads or self.threads)

    def load(self):
        import torch

        from lvcd.hub import weights_files
        from lvcd.pipeline import LVCDPipeline

        if self.threads:
            torch.set_num_threads(self.threads)
        kwargs = {"config": self.config, "device": self.device, "dtype": self.dtype, "offload": self.offload}
        if self.vae_dtype is not None:
            kwargs["vae_dtype"] = self.vae_dtype
        return LVCDPipeline.from_single_file(*weights_files(self.svd, self.lvcd), **kwargs)


@dataclass(frozen=True)
class ShotJob:
    """A shot as handed to a worker: its spec and where its output, work directory and record go."""

    shot: ShotSpec
    output: Path
    work_dir: Path
    record: Path
    fingerprint: str
    overwrite: bool = False
    keep_work: bool = False

    @property
    def name(self) -> str:
        return self.shot.name

    @property
    def staged(self) -> Path:
        """Where the pipeline writes the finished output before it is moved onto ``output``: OUTDIR/.lvcd-batch/staged
        (``work_dir`` is OUTDIR/.lvcd-batch/work/<name>), on OUTDIR's file system so that the move is a rename."""
        return self.work_dir.parent.parent / "staged" / self.output.name


@dataclass
class ShotResult:
    """How one attempt at a shot ended. ``windows_resumed``: finished windows found on disk and kept unchanged."""

    name: str
    status: str  # "done" or "failed"
    worker: str
    frames: int | None = None
    seconds: float = 0.0
    windows: int | None = None
    windows_resumed: int = 0
    lineart_levels: str | None = None  # what levelling did to scanned line art (PaperLevels.describe), else None
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    traceback: str | None = None


def _window_files(work_dir: Path, count: int) -> dict[str, tuple[int, int]]:
    """(inode, mtime) of the first ``count`` window files: a window recomputed and saved again gets new ones."""
    from lvcd.workdir import PREFIXES

    # a shot coloured from a frame inside it finishes its windows toward frame 0 (backward-window_*) first
    names = sorted(p.name for prefix in PREFIXES for p in work_dir.glob(f"{prefix}window_*.safetensors"))[:count]
    stamps = {}
    for name in names:
        info = (work_dir / name).stat()
        stamps[name] = (info.st_ino, info.st_mtime_ns)
    return stamps


def finished_windows(work_dir: Path) -> int:
    """Windows an interrupted run of this shot has finished (0 when its work directory holds no job).

    Read-only, so the progress thread may call it while the shot runs: the same count as
    ``lvcd.workdir.WorkDir.finished_windows``, without the WorkDir constructor (which creates or clears the folder).
    """
    from lvcd.workdir import PREFIXES, SETTINGS, finished_windows_in

    # each pass of a shot coloured from a frame inside it, when it has recorded its job
    return sum(finished_windows_in(work_dir, p) for p in PREFIXES if (work_dir / f"{p}{SETTINGS}").is_file())


ADOPTED = (
    "an earlier attempt at this very shot committed its output and was killed before recording it done: "
    "that output was kept, not made again"
)


def _remove_work_dir(job: ShotJob) -> None:
    shutil.rmtree(job.work_dir, ignore_errors=True)


def adopt_committed_output(job: ShotJob, worker: str) -> ShotResult | None:
    """Finish the bookkeeping of a shot whose output an earlier attempt at this very job moved into place before it
    was killed (its record still ``running``, naming that output): work directory removed (unless kept), record
    ``done``. None when the record names no output, or another one (a file put there since is not this job's)."""
    record = read_record(job.record)
    if not committed_output(record, job.fingerprint, job.output):
        return None
    if not job.keep_work:
        _remove_work_dir(job)
    windows = record.get("windows")
    result = ShotResult(
        job.name,
        "done",
        str(record.get("worker") or worker),
        frames=record.get("frames"),
        windows=windows,
        windows_resumed=windows or 0,
        lineart_levels=record.get("lineart_levels"),
        warnings=[ADOPTED],
    )
    kept = {key: value for key, value in record.items() if key not in ("committing", "windows_on_disk")}
    write_record(job.record, {**kept, **_record_fields(result)})
    return result


def _commit_output(job: ShotJob, running: dict) -> None:
    """Move the staged output onto its name, the record naming it first (see the module docstring). An output that
    appeared meanwhile (without --overwrite), or a folder that filled with more than frames (with it), is left alone
    and the result kept beside it under a visible name, as the pipeline's own writer does."""
    from lvcd.io.atomic import commit_path
    from lvcd.io.writers import check_replaceable

    write_record(job.record, {**running, "committing": output_identity(job.staged)})
    try:
        if job.overwrite:
            check_replaceable(job.output)  # again: the folder may have been filled while the shot ran
        commit_path(job.staged, job.output, overwrite=job.overwrite)
    except (FileExistsError, InputError) as err:
        tag = f".lvcd-{uuid.uuid4().hex[:8]}"  # before a video's extension; after a folder's whole name (sh.010)
        name = job.output.name + tag if job.staged.is_dir() else f"{job.output.stem}{tag}{job.output.suffix}"
        kept = job.output.with_name(name)
        os.replace(job.staged, kept)  # a visible name: no clean-up of temporaries ever takes it
        why = str(err) if isinstance(err, InputError) else f"{job.output}: appeared while the shot ran (no --overwrite)"
        raise InputError(f"{why.rstrip('.')}; the result is kept at {kept}.") from None


def _window_count(frames: int, settings, video_frames: int) -> int:
    """The windows of a shot of ``frames`` frames, of every pass (a reference frame outside the shot counts as 0: the
    pipeline refuses it)."""
    from lvcd.longvideo import plan_passes

    reference = settings.reference_frame if settings.reference_frame < frames else 0
    passes = plan_passes(frames, reference, settings.overlap, video_frames)
    return sum(len(plan.windows) for plan in passes.values())


class ShotRunner:
    """One worker: a loaded pipeline and a name for the report (``label (pid N on host)``)."""

    def __init__(self, model: ModelSpec, worker: str):
        self.pipe = model.load()
        self.worker = f"{worker} (pid {os.getpid()} on {socket.gethostname()})"

    def _prepare_work_dir(self, job: ShotJob) -> int:
        """Keep the work directory of an earlier attempt at this very job (same fingerprint) and return how many
        windows it finished; otherwise start afresh. Only lvcd ever writes under OUTDIR/.lvcd-batch/work."""
        from lvcd.io.atomic import recover_replaced, remove, remove_abandoned_temporaries
        from lvcd.io.locks import is_abandoned
        from lvcd.workdir import MARKER

        previous = read_record(job.record) or {}
        done = finished_windows(job.work_dir) if previous.get("fingerprint") == job.fingerprint else 0
        marker = job.work_dir / MARKER
        if done == 0 and job.work_dir.exists() and (not marker.exists() or is_abandoned(marker)):
            shutil.rmtree(job.work_dir)  # (a work directory in use is left to the pipeline, which refuses it)
        recover_replaced(job.output)  # an attempt killed between the two moves of an --overwrite: old output back
        remove_abandoned_temporaries(job.output)  # what a killed attempt's writer left behind (not a live writer's)
        remove_abandoned_temporaries(job.staged)
        if job.staged.exists():  # finished by an attempt killed before moving it: decoded again from the windows
            remove(job.staged)
        return done

    def run(self, job: ShotJob) -> ShotResult:
        """Colorize one shot; every failure is caught and reported in the result."""
        from lvcd.io import FrameSource
        from lvcd.workdir import WorkDirMismatch

        started = time.perf_counter()
        result = ShotResult(job.name, "failed", self.worker)
        record = {"name": job.name, "fingerprint": job.fingerprint, "worker": self.worker, "pid": os.getpid()}
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                adopted = adopt_committed_output(job, self.worker)  # a retry after a worker died at the very end
                if adopted is not None:
                    return adopted
                resumable = self._prepare_work_dir(job)
                settings = job.shot.settings
                missing = [str(p) for p in job.shot.inputs if not p.exists()]
                if missing:
                    raise InputError(f"not found: {', '.join(missing)}; fix the manifest entry")
                source = FrameSource.open(job.shot.lineart)
                result.windows = _window_count(len(source), settings, self.pipe.config.video_frames)
                running = {**record, "status": "running", "frames": len(source), "windows": result.windows,
                           "windows_on_disk": resumable}  # fmt: skip
                write_record(job.record, running)
                before = _window_files(job.work_dir, resumable)
                settings_args = dict(
                    size=settings.size,
                    num_steps=settings.steps,
                    seed=settings.seed,
                    polarity=settings.polarity,
                    lineart_levels=settings.lineart_levels,
                    keyframes=dict(job.shot.keyframes),
                    reference_frame=settings.reference_frame,
                    overlap=settings.overlap,
                    output=job.staged,  # moved onto job.output by _commit_output
                    fps=settings.fps,  # None: the line art's own rate, else 20
                    overwrite=True,  # a staged output of a killed attempt (only lvcd writes there)
                    work_dir=job.work_dir,
                    progress=False,
                )
                try:
                    colorized = self.pipe(job.shot.reference, source, resume=resumable > 0, **settings_args)
                except WorkDirMismatch as err:  # same manifest entry, another job (e.g. an lvcd that reads it anew)
                    warnings.warn(
                        f"the windows an earlier attempt finished ({resumable}) belong to another job "
                        f"({err.differences}): the shot was started afresh",
                        stacklevel=1,
                    )
                    shutil.rmtree(job.work_dir)
                    resumable, before = 0, {}
                    colorized = self.pipe(job.shot.reference, source, resume=False, **settings_args)
                after = _window_files(job.work_dir, resumable)
                result.windows_resumed = sum(after.get(name) == stamp for name, stamp in before.items())
                result.frames = int(colorized.latents.shape[0])
                if colorized.lineart_levels is not None:
                    result.lineart_levels = colorized.lineart_levels.describe()
                running.update(frames=result.frames, lineart_levels=result.lineart_levels)
                _commit_output(job, running)
                result.status = "done"
                if not job.keep_work:
                    _remove_work_dir(job)
            except LVCDError as err:
                result.error = str(err)
            except Exception as err:  # noqa: BLE001 - one broken shot must not stop the batch
                if out_of_memory(err):  # its finished windows are kept: the next run of the batch continues it
                    result.error = f"{out_of_memory_text(err, LESS_MEMORY)}; run the batch again to retry the shot."
                else:
                    result.error = f"{type(err).__name__}: {err} (unexpected; the traceback is in the shot's record)"
                result.traceback = traceback.format_exc()
        result.warnings = sorted({str(w.message) for w in caught})
        result.seconds = round(time.perf_counter() - started, 3)
        write_record(job.record, {**record, **_record_fields(result)})
        return result


def _record_fields(result: ShotResult) -> dict:
    fields = {
        "status": result.status,
        "frames": result.frames,
        "seconds": result.seconds,
        "windows": result.windows,
        "windows_resumed": result.windows_resumed,
        "lineart_levels": result.lineart_levels,
        "error": result.error,
        "warnings": result.warnings,
    }
    if result.traceback:
        fields["traceback"] = result.traceback
    return fields
