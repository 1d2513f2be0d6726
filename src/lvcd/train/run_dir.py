"""A run's output_dir: what may be written there, and its CSV logs continued across resumes.

``lvcd train`` and ``lvcd train-vae`` check their output_dir before any model loads (:func:`check_run_output_dir`):

- it must be given (an empty one would train into the working folder), must not lie inside a checkpoint folder (nor
  in a run's ``checkpoints/``), and, when it exists, must be empty, hold only the run's inputs, or be an lvcd run
  directory (:func:`is_run_dir`: its lock, logs or checkpoints; a folder of other files would get lvcd's
  ``config.json`` over its own, and its files mixed with a run's);
- it must not be or lie inside one of the run's inputs (the config file, the data root, the weights), and may hold
  them only outside what the run writes (``config.json``, ``logs/``, ``checkpoints/``, train-vae's result);
- a fresh run (no ``--resume``) must not go where a run already is: its checkpoints would be replaced or pruned
  among the old run's, and its logs would overwrite the old ones;
- a resumed run must not go where its checkpoints would mix with another run's: a checkpoint of another folder
  resumes into a folder without a run, a checkpoint of output_dir is its newest (``--resume latest``);
- ``--resume latest`` where output_dir holds no checkpoint (a run stopped before its first one, or no run yet) starts
  afresh from step 0, saying so, and ``--resume`` of another folder's checkpoint goes there too: each replaces only
  the logs this command writes (never another command's, nor a result file); a fresh run refuses them and says so.

A checkpoint is written to a hidden ``checkpoints/.step_N.tmp`` folder first; one left by a killed run is removed at
the next start when it holds only the names lvcd writes there (:func:`remove_abandoned_staging`), else refused.

The CSV logs of a resumed run keep their rows up to the resumed step (later rows were written after the last
checkpoint and are about to be written again) and grow by appending (:func:`continue_csv_log`); a row whose step is
not a whole number is refused in one line, naming the file and line, before any model loads
(:func:`check_csv_logs`).

    >>> check_run_output_dir("runs/x", {"data.root": "data"}, resume_from=None)     # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from lvcd.errors import InputError
from lvcd.io.atomic import CREATING, atomic_output, temporary_target
from lvcd.io.paths import check_not_input, is_within
from lvcd.train.checkpoint import CHECKPOINTS_DIR, WEIGHTS_NAME, folder_step, list_checkpoints
from lvcd.train.config import TrainConfigError

# What a run of either command leaves in its output_dir (besides config.json, which every start rewrites).
LOG_FILES = ("train_log.csv", "eval_log.csv", "vae_log.csv")
RESULT_FILES = ("base.safetensors",)  # train-vae's result
TRAIN_LOGS = ("logs/train_log.csv", "logs/eval_log.csv", "logs/tensorboard")  # what run_outputs names, per command
VAE_LOGS = ("logs/vae_log.csv",)
_STAGING = re.compile(r"^\.step_\d+\.tmp$")


def check_run_output_dir(
    output_dir: str | os.PathLike,
    inputs: Mapping[str, object],
    resume_from: Path | None,
    resumed_step: int = 0,
    weights_name: str = WEIGHTS_NAME,
    restart: bool = False,
    own_logs: Sequence[str] = TRAIN_LOGS,
) -> str | None:
    """Refuse (one line, before any slow work) an output_dir that would damage an input or another run; see the
    module docstring. ``inputs``: {setting name: path or None}; ``resume_from`` and ``resumed_step``: the checkpoint
    resumed (None for a fresh run) and its step; ``weights_name``: the weights file of this command's checkpoints;
    ``restart``: ``--resume latest`` found no checkpoint (the run starts afresh); ``own_logs``: the logs this command
    writes (as :func:`run_outputs` names them). Returns what to tell the user about a restart, else None."""
    output_dir = run_output_path(output_dir)
    given = {name: path for name, path in inputs.items() if path not in (None, "")}
    check_not_input(output_dir, given, option="output_dir", contains_ok=True)  # a run adds to its folder ...
    written = [output_dir / name for name in ("config.json", "logs", CHECKPOINTS_DIR, *RESULT_FILES)]
    for name, path in given.items():  # ... where it writes only these
        hit = next((w for w in written if is_within(path, w)), None)
        if hit is not None:
            raise InputError(
                f"{name} {path} lies where this run writes ({hit}); move it out of output_dir {output_dir} or choose "
                "another output_dir."
            )
    _check_not_in_checkpoint(output_dir)
    _check_not_foreign(output_dir, given.values())
    if resume_from is not None and is_within(resume_from, output_dir / CHECKPOINTS_DIR):
        check_csv_logs(output_dir, own_logs)  # cut back to the resumed step after the models load
        later = [step for step, _ in list_checkpoints(output_dir, None) if step > resumed_step]
        if later:
            raise TrainConfigError(
                f"--resume {resume_from}: output_dir {output_dir} already holds later checkpoints (up to step "
                f"{later[-1]}), which this run would replace or prune; use --resume latest, or continue into another "
                "output_dir."
            )
        return None
    found = run_outputs(output_dir)
    replaced = f"the logs of a run that wrote no checkpoint ({', '.join(found)}) are replaced"
    if restart and all(item in own_logs for item in found):
        what = f"; {replaced}" if found else ""
        return (
            f"--resume latest: no checkpoint under {output_dir / CHECKPOINTS_DIR}: starting afresh from step 0{what}."
        )
    if resume_from is not None and found and all(item in own_logs for item in found):
        return (
            f"output_dir {output_dir}: {replaced}."  # a resume of another folder's checkpoint, stopped before its first
        )
    if not found:
        return None
    own = list_checkpoints(output_dir, weights_name)
    if own:
        raise TrainConfigError(
            f"output_dir {output_dir} already holds a training run (checkpoints up to step {own[-1][0]}); use "
            "--resume latest to continue it, or choose another output_dir."
        )
    doing = "a fresh run" if resume_from is None else f"resuming {resume_from} there"
    if resume_from is None and not restart and all(item in own_logs for item in found):
        raise TrainConfigError(
            f"output_dir {output_dir} already holds another run ({', '.join(found)}) that wrote no checkpoint, which "
            "a fresh run would overwrite; to start that run over run the same command with --resume latest, or "
            "choose another output_dir."
        )
    raise TrainConfigError(
        f"output_dir {output_dir} already holds another run ({found[0]}), which {doing} would overwrite; choose "
        "another output_dir."
    )


def run_output_path(output_dir: str | os.PathLike) -> Path:
    """``output_dir`` as a path; an empty one (``--set output_dir=``) is refused: it would train into the working
    folder."""
    if not str(output_dir).strip():
        raise TrainConfigError(
            "output_dir is empty; give the folder to write the run to (e.g. output_dir=runs/my-run)."
        )
    return Path(output_dir)


def is_run_dir(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` is an lvcd run directory: it holds a run's lock, a log of either command, TensorBoard files
    or checkpoint folders (runs of versions without the lock hold the logs or checkpoints)."""
    folder = Path(folder)
    logs = folder / "logs"
    checkpoints = folder / CHECKPOINTS_DIR
    return (
        (folder / RUN_LOCK).is_file()
        or any((logs / name).is_file() for name in LOG_FILES)
        or (logs / "tensorboard").is_dir()
        or bool(list_checkpoints(folder, None))
        or (checkpoints.is_dir() and any(_STAGING.match(entry.name) for entry in checkpoints.iterdir()))
    )


def _check_not_in_checkpoint(output_dir: Path) -> None:
    """Refuse an output_dir that is or lies inside a checkpoint folder (``checkpoints/step_N`` or its staging folder),
    or inside a run's ``checkpoints/``: pruning would delete the run, a resume would mix it with the checkpoint."""
    resolved = output_dir.expanduser().resolve()
    for folder in (resolved, *resolved.parents):
        in_checkpoints = folder.parent.name == CHECKPOINTS_DIR
        if in_checkpoints and (folder_step(folder) is not None or _STAGING.match(folder.name)):
            raise TrainConfigError(
                f"output_dir {output_dir} lies inside the checkpoint folder {folder}, which lvcd manages (pruning "
                "deletes it); choose an output_dir outside it."
            )
        if folder.name == CHECKPOINTS_DIR and is_run_dir(folder.parent):
            raise TrainConfigError(
                f"output_dir {output_dir} lies inside {folder}, the checkpoints folder of the run in {folder.parent}; "
                "choose an output_dir outside it."
            )


def _check_not_foreign(output_dir: Path, inputs: Iterable[object]) -> None:
    """Refuse an existing output_dir that is not an lvcd run directory and holds anything besides the run's inputs
    (its own config.json would be replaced, its files mixed with the run's)."""
    if not output_dir.is_dir() or is_run_dir(output_dir):
        return
    inputs = list(inputs)
    foreign = sorted(
        entry.name
        for entry in output_dir.iterdir()
        if not any(is_within(path, entry) for path in inputs)  # an input, or a folder holding one
    )
    if not foreign:
        return
    first = "config.json" if "config.json" in foreign else foreign[0]
    replaced = " (which the run would replace with its own)" if first == "config.json" else ""
    more = f" and {len(foreign) - 1} other entr{'y' if len(foreign) == 2 else 'ies'}" if len(foreign) > 1 else ""
    raise TrainConfigError(
        f"output_dir {output_dir} is not an lvcd run directory and holds {first}{replaced}{more}; choose a new or "
        "empty output_dir (or move those files out)."
    )


def clear_own_logs(output_dir: str | os.PathLike, own_logs: Sequence[str]) -> None:
    """Delete this command's logs in output_dir (the names ``own_logs``: lvcd's own files): those of a run that wrote
    no checkpoint, before another folder's checkpoint is resumed there (kept, their rows up to the resumed step would
    mix with the resumed run's)."""
    for name in own_logs:
        path = Path(output_dir) / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.is_file():
            path.unlink()


RUN_LOCK = ".lvcd-run.lock"


class RunLock:
    """Held by a run's main process for the run's life (``with RunLock() as lock: ... lock.take(output_dir)``): a
    second run on the same output_dir (a scheduler's requeue, another terminal) is refused in one line instead of
    deleting the checkpoint the first is writing or training into its folder. The kernel drops the lock when the
    process dies, so a killed run never leaves it held."""

    def __init__(self) -> None:
        self._fd: int | None = None
        self._made: Path | None = None  # output_dir, when taking the lock created it

    def take(self, output_dir: str | os.PathLike) -> None:
        from lvcd.io.locks import lock_path

        if int(os.environ.get("RANK", "0") or 0) != 0:  # one lock per run: its main process (torchrun/accelerate)
            return
        output_dir = Path(output_dir)
        if not output_dir.exists():
            output_dir.mkdir(parents=True)
            self._made = output_dir
        path = output_dir / RUN_LOCK
        fd = lock_path(path)
        if fd is None:
            try:
                holder = path.read_text().strip() or "unknown"
            except OSError:
                holder = "unknown"
            raise TrainConfigError(
                f"output_dir {output_dir} is in use by a running run (pid {holder}); wait for it to end, or choose "
                "another output_dir."
            )
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        made, self._made = self._made, None
        with contextlib.suppress(OSError):  # a run refused before writing leaves no folder it made for its lock
            if made is not None and [entry.name for entry in made.iterdir()] == [RUN_LOCK]:
                (made / RUN_LOCK).unlink()
                made.rmdir()


def remove_abandoned_staging(
    output_dir: str | os.PathLike, own_names: Sequence[str], remove: bool = True
) -> list[Path]:
    """Remove the hidden staging folders (``checkpoints/.step_N.tmp``) a killed run left, each only when it holds
    nothing but ``own_names`` (what lvcd writes into one) and lvcd's hidden temporaries of them; refuse one holding
    anything else (one line). Returns the removed folders (``remove`` False: only checks; the other processes of a
    data-parallel run). Call it before any slow work."""
    root = Path(output_dir) / CHECKPOINTS_DIR
    if not root.is_dir():
        return []
    staging = sorted(entry for entry in root.iterdir() if _STAGING.match(entry.name) and entry.is_dir())
    for folder in staging:
        try:
            entries = [entry.name for entry in folder.iterdir()]
        except FileNotFoundError:  # removed meanwhile (by the main process of a data-parallel run)
            continue
        foreign = [name for name in entries if name not in own_names and _lvcd_temporary_of(name) not in own_names]
        if foreign:
            raise TrainConfigError(
                f"{folder} (where lvcd stages a checkpoint) holds {foreign[0]}, which lvcd did not write there; move "
                "it out and run the command again."
            )
    if not remove:
        return []
    for folder in staging:
        shutil.rmtree(folder, ignore_errors=True)
    return staging


def _lvcd_temporary_of(name: str) -> str | None:
    """The name an lvcd temporary (a ``partial`` or ``creating`` one of :mod:`lvcd.io.atomic`) stands for, or None."""
    return temporary_target(name, "partial") or temporary_target(name, CREATING)


def run_outputs(output_dir: Path) -> list[str]:
    """What of a run output_dir holds: checkpoint folders, CSV logs with rows, TensorBoard files, train-vae's base
    file (a log holding only its header is a run that wrote nothing: not counted)."""
    found = []
    steps = list_checkpoints(output_dir, None)
    if steps:
        found.append(f"checkpoints up to step {steps[-1][0]}")
    logs = output_dir / "logs"
    for name in LOG_FILES:
        if _has_rows(logs / name):
            found.append(f"logs/{name}")
    tensorboard = logs / "tensorboard"
    if tensorboard.is_dir() and any(path.is_file() for path in tensorboard.rglob("*")):
        found.append("logs/tensorboard")
    found += [name for name in RESULT_FILES if (output_dir / name).exists()]
    return found


def check_csv_logs(output_dir: str | os.PathLike, own_logs: Sequence[str]) -> None:
    """Every row of this command's CSV logs (``own_logs``) in output_dir has a whole-number step (one line naming the
    file and line otherwise): a resume cuts them back to its step, after the models load."""
    for name in own_logs:
        path = Path(output_dir) / name
        if name.endswith(".csv") and path.is_file():
            _log_rows(path, None)


def _log_rows(path: Path, upto_step: int | None) -> list[dict[str, str]]:
    """The rows of CSV log ``path`` up to ``upto_step`` (None: all); a row without a whole-number step is one
    TrainConfigError line."""
    kept = []
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is not None and "step" not in reader.fieldnames:
            raise TrainConfigError(
                f"{path} has no step column (line 1 is not lvcd's header); move the log out of the run's logs/ "
                "folder (the resumed run starts a new one), then run the command again."
            )
        for row in reader:
            value = row.get("step")
            try:
                step = int(value)
            except (TypeError, ValueError):
                raise TrainConfigError(
                    f"{path} line {reader.line_num}: the step {value!r} is not a whole number (the log is damaged); "
                    "fix or delete that line, then run the command again."
                ) from None
            if upto_step is None or step <= upto_step:
                kept.append(row)
    return kept


def continue_csv_log(path: Path, columns: Sequence[str], upto_step: int) -> None:
    """Make ``path`` a CSV log with ``columns`` holding its rows up to ``upto_step`` (none for a fresh run or a
    restart from step 0), in one atomic rewrite (a crash leaves the old log or the new one); the run then appends to
    it."""
    rows = _log_rows(path, upto_step) if upto_step > 0 and path.is_file() else []
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as temporary:
        with temporary.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)


def _has_rows(path: Path) -> bool:
    if not path.is_file():
        return False
    with path.open(newline="") as f:
        lines = (line for line in f if line.strip())
        return next(lines, None) is not None and next(lines, None) is not None  # a header and a row
