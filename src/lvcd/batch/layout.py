"""Where a batch keeps things in OUTDIR, and the per-shot records that make it restartable.

::

    OUTDIR/
      <name>.mp4                      a finished shot (or <name>/ of PNGs with --format png), written atomically
      batch_report.json               the whole batch: status, frames, seconds, worker, error of every shot
      evaluation.json                 with --evaluate: lvcd evaluate's report over all shots
      .lvcd-batch/shots/<name>.json   the shot's record: running (worker, pid) / done / failed, its fingerprint
      .lvcd-batch/work/<name>/        the shot's work directory while it runs: a killed shot resumes from it
      .lvcd-batch/staged/<output>     the shot's finished output, for the instant before it is moved onto its name
      .lvcd-batch/batch.lock          locked by the batch command while it runs: a second batch on OUTDIR is refused

A shot counts as complete when its output exists and its record says ``done`` with the same fingerprint
(inputs, settings and model), so a re-run skips it. Just before a worker moves a finished output onto its name, the
record (still ``running``) says which output it is (:func:`output_identity`): a worker killed between that move and
its ``done`` record leaves an output that the next attempt recognises as this job's own (:func:`committed_output`)
rather than a file it must not replace. Records are written atomically by the worker that runs the
shot; the output folder must be shared storage when workers run on several machines.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from lvcd.batch.manifest import EVALUATION_NAME, REPORT_NAME, ShotSpec
from lvcd.io.atomic import remove_abandoned_in, write_json_atomic

STATE_DIR = ".lvcd-batch"
FORMATS = ("mp4", "webm", "gif", "png")


class BatchLayout:
    """Paths of one batch's outputs and state inside ``outdir``."""

    def __init__(self, outdir: str | os.PathLike, output_format: str = "mp4"):
        self.outdir = Path(outdir)
        self.format = output_format

    def output(self, name: str) -> Path:
        return self.outdir / (name if self.format == "png" else f"{name}.{self.format}")

    def work_dir(self, name: str) -> Path:
        return self.outdir / STATE_DIR / "work" / name

    def record_path(self, name: str) -> Path:
        return self.outdir / STATE_DIR / "shots" / f"{name}.json"

    @property
    def report_path(self) -> Path:
        return self.outdir / REPORT_NAME

    @property
    def lock_path(self) -> Path:
        return self.outdir / STATE_DIR / "batch.lock"

    @property
    def evaluation_path(self) -> Path:
        return self.outdir / EVALUATION_NAME


def read_record(path: Path) -> dict | None:
    """A shot's record, or None when absent or unreadable (a record is only advice: the shot then re-runs)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json(path: Path, data: dict) -> None:
    """Atomically (temporary file + rename), with lvcd evaluate's writer."""
    write_json_atomic(path, data)


def write_record(path: Path, record: dict) -> None:
    """Atomically, without the atomic writer's sweep of the folder for killed writers' temporaries: with one record
    per shot that listing made every write O(shots). The batch sweeps the records folder once, when it locks OUTDIR
    (:func:`lock_outdir`)."""
    write_json_atomic(path, record, sweep=False)


def is_complete(layout: BatchLayout, name: str, fingerprint: str) -> bool:
    """The shot's output exists and was made by this batch from the same inputs, settings and model."""
    record = read_record(layout.record_path(name))
    return (
        record is not None
        and record.get("status") == "done"
        and record.get("fingerprint") == fingerprint
        and layout.output(name).exists()
    )


def output_identity(path: Path) -> str | None:
    """What tells this very output from any other file at its path (None when absent): the names, sizes and
    modification times of its file, or of every frame of a folder, which a rename changes none of. Not its inode:
    shared file systems that number files per machine or per mount (sshfs, s3fs, gcsfuse, CIFS) would show another
    machine's worker a different one."""
    if not path.exists():
        return None
    return hashlib.sha256(json.dumps(_stat(path)).encode()).hexdigest()[:32]


def committed_output(record: dict | None, fingerprint: str, output: Path) -> bool:
    """The output at ``output`` is the one a worker of this very job (same fingerprint) moved there and was killed
    before recording the shot done: its ``running`` record names that output (:func:`output_identity`)."""
    return (
        record is not None
        and record.get("status") == "running"
        and record.get("fingerprint") == fingerprint
        and record.get("committing") is not None
        and record.get("committing") == output_identity(output)
    )


def _stat(path: Path):
    """What identifies an input's content cheaply: size and mtime of the file, or of every entry of a folder."""
    try:
        if path.is_dir():
            return sorted((e.name, e.stat().st_size, e.stat().st_mtime_ns) for e in os.scandir(path) if e.is_file())
        info = path.stat()
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns]


def shot_fingerprint(shot: ShotSpec, model_identity: dict, output_format: str) -> str:
    """A digest of everything that decides a shot's output: inputs (paths, sizes, times), settings, model, format."""
    described = asdict(shot)
    if not described["settings"]["reference_frame"]:  # absent at 0, so the fingerprints of earlier runs still match
        del described["settings"]["reference_frame"]
    payload = {
        "shot": described,
        "inputs": [_stat(path) for path in shot.inputs],
        "model": model_identity,
        "format": output_format,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def model_identity(svd, lvcd, config, dtype, vae_dtype=None) -> dict:
    """The model part of a shot's fingerprint: which weight files (by path, size and time), config and dtypes."""
    files = {}
    for key, value in (("svd", svd), ("lvcd", lvcd), ("config", config)):
        files[key] = None if value is None else [str(value), _stat(Path(value)) if Path(str(value)).exists() else None]
    identity = {**files, "dtype": str(dtype) if dtype is not None else None}
    if vae_dtype is not None:  # absent by default, so the fingerprints of earlier runs still match
        identity["vae_dtype"] = str(vae_dtype)
    return identity


def model_files(identity: dict) -> list[str]:
    """The weight and config files of a :func:`model_identity`."""
    return [entry[0] for key in ("svd", "lvcd", "config") if isinstance(entry := identity.get(key), list)]


def check_outdir(layout: BatchLayout, shots: list[ShotSpec], identity: dict) -> None:
    """Refuse (InputError, before anything is written) an OUTDIR that is or lies inside an input of the batch (a
    shot's files, the weights): the batch writes its report and state there. OUTDIR may hold inputs in folders of
    their own; each shot's output is checked against them when the shot is planned."""
    from lvcd.io.paths import check_not_input

    inputs = [path for shot in shots for path in shot.inputs] + model_files(identity)
    check_not_input(layout.outdir, inputs, option="-o", contains_ok=True)


def lock_outdir(layout: BatchLayout) -> int:
    """Lock OUTDIR for this batch (the descriptor to close when done): a second batch on the same OUTDIR would delete
    the first one's temporaries and work directories as leftovers. The kernel drops the lock of a killed batch."""
    from lvcd.errors import InputError
    from lvcd.io.locks import lock_path

    layout.lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = lock_path(layout.lock_path)
    if fd is None:
        try:
            pid = layout.lock_path.read_text().strip() or "unknown"
        except OSError:
            pid = "unknown"
        raise InputError(
            f"-o {layout.outdir}: another lvcd batch is running on this folder (pid {pid}); wait for it to finish (a "
            "re-run then resumes what is left), or give this batch another -o."
        )
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    remove_abandoned_in(layout.record_path("x").parent)  # records of writers killed mid-write
    return fd


class OutdirClaim:
    """OUTDIR held by one batch (:func:`claim_outdir`): pass it to :func:`lvcd.batch.run_batch` to run the batch under
    the lock taken before the slow setup (Ray, the metric networks) rather than a second one."""

    def __init__(self, layout: BatchLayout, fd: int):
        self.layout = layout
        self.finished = False  # the batch ran to its report: OUTDIR is kept whatever happens after
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def check_holds(self, layout: BatchLayout) -> None:
        """This claim is held and is the claim of ``layout``'s OUTDIR (a programming error otherwise)."""
        if not self.held or self.layout.outdir.resolve() != layout.outdir.resolve():
            state = "released" if not self.held else f"of {self.layout.outdir}"
            raise ValueError(f"the OUTDIR claim passed to run_batch is {state}, not a held claim of {layout.outdir}")

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


@contextmanager
def claim_outdir(layout: BatchLayout, shots: list[ShotSpec], identity: dict) -> Iterator[OutdirClaim]:
    """OUTDIR checked (:func:`check_outdir`), created when missing and locked (:func:`lock_outdir`: a batch running
    on it refuses this one, in one line) for as long as the ``with`` block runs; released on every way out. An error
    (Ctrl-C included) before the batch ran to its report removes an OUTDIR made here in which no shot ran.

        >>> with claim_outdir(layout, shots, identity) as claim:      # doctest: +SKIP
        ...     report = run_batch(shots, layout.outdir, pool, identity, options, claim=claim)
    """
    check_outdir(layout, shots, identity)
    created = not layout.outdir.exists()
    layout.outdir.mkdir(parents=True, exist_ok=True)
    claim = OutdirClaim(layout, lock_outdir(layout))  # refused: nothing removed, the folder is the other batch's
    try:
        yield claim
    except BaseException:
        if created and not claim.finished and not any(layout.record_path(shot.name).exists() for shot in shots):
            remove_unused_outdir(layout)  # the batch could not start (no worker, no weights): leave nothing behind
        raise
    finally:
        claim.release()


def remove_empty_state_folders(layout: BatchLayout) -> None:
    """Remove OUTDIR/.lvcd-batch/work and staged when empty, as a batch leaves them once its shots are done; one that
    holds anything (a stopped shot's work directory, kept for the re-run to resume; a kept one, --keep-work) stays.
    Call it with OUTDIR locked and the workers stopped: none then makes anything there."""
    import contextlib

    for name in ("work", "staged"):
        with contextlib.suppress(OSError):  # not empty, or not there
            (layout.outdir / STATE_DIR / name).rmdir()


def remove_unused_outdir(layout: BatchLayout) -> None:
    """Remove an OUTDIR this batch created and never ran a shot in: its report, its lock and state folders, then the
    folder itself when nothing else is in it."""
    import contextlib
    import shutil

    layout.report_path.unlink(missing_ok=True)
    shutil.rmtree(layout.outdir / STATE_DIR, ignore_errors=True)
    with contextlib.suppress(OSError):
        layout.outdir.rmdir()
