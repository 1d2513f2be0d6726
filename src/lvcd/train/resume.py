"""Reading a training checkpoint back (``lvcd train --resume``): every file checked, every failure one line.

What a resume reads, and when (see :mod:`lvcd.train.checkpoint` for the layout):

- before anything slow: ``train_state.json`` and ``scheduler.json`` (plain JSON, each value checked for its kind
  and range), the headers of ``lvcd.safetensors`` / ``ema.safetensors``, the archive directories of accelerate's
  ``state/optimizer.bin`` (and ``scaler.pt``), and this process's ``state/random_states_<rank>.pkl``, read and
  applied to throwaway generators: accelerate skips an RNG file it cannot read or apply (it only logs "Could not load
  random states"), which lvcd says as a warning (its own data order and noise come from seeded generators);
- after the models are built: the weights, the average, and accelerate's ``load_state``, whose failures (a tensor
  damaged inside an intact archive, an optimizer of other settings) are one line too.

Nothing here is read with a pickle that can run code: the JSON files are plain data, and accelerate's files and the
custom-object pickles of earlier versions (``state/custom_checkpoint_0.pkl`` and ``_1.pkl``: the scheduler and the
train state, which accelerate would unpickle without restriction) are read weights-only; one that asks for more is
refused, never run.

    >>> train_state, scheduler_state = read_resume_state(Path("runs/x/checkpoints/step_000100"))  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import math
import pickle
import random
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lvcd.errors import first_line, out_of_memory
from lvcd.safe_pickle import unsafe_pickle_error, weights_only_load
from lvcd.train.checkpoint import (
    ANOTHER,
    LEGACY_SCHEDULER_NAME,
    LEGACY_TRAIN_STATE_NAME,
    SCHEDULER_NAME,
    STATE_DIR,
    TRAIN_STATE_NAME,
    CheckpointError,
    TrainState,
    folder_step,
)

_LEGACY_CUSTOM = re.compile(r"^custom_checkpoint_\d+\.pkl$")  # what accelerate's load_state counts and unpickles
# Counters that are at least 1 in every checkpoint the loop writes.
_POSITIVE_COUNTERS = frozenset({"world_size", "batches_per_epoch", "batch_size"})


# ------------------------------------------------------------------------------------------------ plain files


def read_checkpoint_json(path: Path) -> dict[str, Any]:
    """A JSON object of a checkpoint; a missing or unreadable file is a one-line CheckpointError."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing: the checkpoint is incomplete; {ANOTHER}.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} cannot be read ({err}); {ANOTHER}.") from None
    if not isinstance(document, dict):
        raise CheckpointError(f"{path} is not a JSON object; {ANOTHER}.")
    return document


def read_plain_torch_file(path: Path, loader: Callable[[Path], Any] | None = None) -> Any:
    """A ``torch.save`` file of a checkpoint read weights-only (``loader``: another weights-only reader, e.g.
    accelerate's, which also allows numpy arrays). A missing, damaged or code-asking file is one CheckpointError
    line; a pickle that asks for more than plain data and tensors is refused, never run."""
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: the checkpoint is incomplete; {ANOTHER}.")
    try:
        return weights_only_load(path, loader)
    except pickle.UnpicklingError as err:
        if not zipfile.is_zipfile(path):  # not torch.save's archive: damaged bytes, not a refused pickle
            raise CheckpointError(
                f"{path} is damaged (not a torch.save archive, {path.stat().st_size:,} bytes); {ANOTHER}."
            ) from None
        risk = getattr(unsafe_pickle_error(err), "risk", "run code")
        raise CheckpointError(
            f"{path} is not a plain checkpoint: its pickle asks for more than plain data and could {risk}, so lvcd "
            f"does not load it (the ones lvcd wrote hold plain data only); {ANOTHER}."
        ) from None
    except Exception as err:  # noqa: BLE001 - torch.load of damaged bytes raises anything (struct.error, ...)
        raise CheckpointError(f"{path} cannot be read ({first_line(err)}); {ANOTHER}.") from None


def check_torch_archive(path: Path) -> None:
    """Cheap check of a ``torch.save`` file that is read later (the optimizer state can be gigabytes): it exists
    and its archive directory, at the end of the file, is intact, so a truncated copy is caught before the slow
    work."""
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: the checkpoint is incomplete; {ANOTHER}.")
    try:
        with zipfile.ZipFile(path) as archive:
            complete = any(name.endswith("data.pkl") for name in archive.namelist())
    except (zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path} is damaged ({first_line(err)}; {path.stat().st_size:,} bytes); {ANOTHER}."
        ) from None
    if not complete:
        raise CheckpointError(f"{path} is damaged (no data.pkl in its archive); {ANOTHER}.")


# ------------------------------------------------------------------------------------------------ resume state


def read_resume_state(checkpoint: Path) -> tuple[dict[str, int], dict[str, Any]]:
    """(train state, scheduler state) of a checkpoint, each value checked; a checkpoint of an earlier version
    (no scheduler.json) is read from its ``state/custom_checkpoint_*.pkl`` weights-only."""
    if not (checkpoint / STATE_DIR).is_dir():
        raise CheckpointError(f"{checkpoint} is incomplete (no {STATE_DIR}/ folder); {ANOTHER}.")
    if (checkpoint / SCHEDULER_NAME).is_file():
        sources = (checkpoint / TRAIN_STATE_NAME, checkpoint / SCHEDULER_NAME)
        train_state, scheduler_state = (read_checkpoint_json(path) for path in sources)
    else:
        sources = tuple(checkpoint / STATE_DIR / name for name in (LEGACY_TRAIN_STATE_NAME, LEGACY_SCHEDULER_NAME))
        missing = [path for path in sources if not path.is_file()]
        if missing:
            raise CheckpointError(
                f"{checkpoint} is incomplete: it has neither {SCHEDULER_NAME} nor the {missing[0]} of earlier "
                f"versions; {ANOTHER}."
            )
        train_state, scheduler_state = (read_plain_torch_file(path) for path in sources)
        for path, state in zip(sources, (train_state, scheduler_state), strict=True):
            if not isinstance(state, dict):
                raise CheckpointError(
                    f"{path} holds no state dict; it is not an lvcd training checkpoint: resume from another one."
                )
    check_train_state(train_state, sources[0], checkpoint)
    check_scheduler_state(scheduler_state, sources[1])
    return train_state, scheduler_state


def check_train_state(state: dict[str, Any], path: Path, checkpoint: Path) -> None:
    """The counters of a train state are whole numbers >= 0 (sizes >= 1), ``step`` is there and agrees with the
    folder's name (``step_000100``)."""
    counters = {f.name for f in fields(TrainState)}
    for key in sorted(counters & state.keys()):
        value = state[key]
        least = 1 if key in _POSITIVE_COUNTERS else 0
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise CheckpointError(
                f"{path}: the train state has no whole-number {key} >= {least} (it holds {value!r}); the checkpoint "
                f"is damaged or not lvcd's: {ANOTHER}."
            )
    if "step" not in state:
        raise CheckpointError(
            f"{path}: the train state has no whole-number step; it is not an lvcd training checkpoint: {ANOTHER}."
        )
    named = folder_step(checkpoint)
    if named is not None and named != state["step"]:
        raise CheckpointError(
            f"{path} says step {state['step']} but the folder is {checkpoint.name}; the checkpoint is damaged: "
            f"{ANOTHER}."
        )


def check_scheduler_state(saved: dict[str, Any], path: Path) -> None:
    """Each value the scheduler takes from ``saved`` has the kind of the value a fresh warm-up scheduler holds
    (lists as long, numbers finite, counters whole and >= 0, learning rates > 0)."""
    if not {"base_lrs", "last_epoch"} <= saved.keys():
        raise CheckpointError(
            f"{path}: the scheduler state has no base_lrs / last_epoch; it is not an lvcd training checkpoint: "
            "resume from another one."
        )
    for key, fresh in _fresh_scheduler_state().items():
        if key == "lr_lambdas" or key not in saved:
            continue
        problem = _kind_problem(saved[key], fresh)
        if problem is None and key in ("base_lrs", "_last_lr") and not all(value > 0 for value in saved[key]):
            problem = "learning rates > 0"
        if problem is None and key in ("last_epoch", "_step_count") and saved[key] < 0:
            problem = "a whole number >= 0"
        if problem is not None:
            raise CheckpointError(
                f"{path}: {key} is {saved[key]!r}, not {problem}; the checkpoint is damaged or not lvcd's: {ANOTHER}."
            )


def restore_scheduler(scheduler, saved: dict[str, Any]) -> None:
    """Load ``saved`` (checked by :func:`read_resume_state`) into ``scheduler``: only the keys the scheduler has, and
    never its lr_lambdas (our warm-up is a plain function; a checkpoint holds nothing of it)."""
    fresh = scheduler.state_dict()
    restored = {key: saved.get(key, value) for key, value in fresh.items()}
    restored["lr_lambdas"] = fresh["lr_lambdas"]
    scheduler.load_state_dict(restored)


def _fresh_scheduler_state() -> dict[str, Any]:
    """The state dict of a warm-up scheduler as the loop builds one (one parameter group), as a template."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0).state_dict()


def _kind_problem(value: Any, fresh: Any) -> str | None:
    """None when ``value`` is of the kind of ``fresh``, else what it should be."""
    if isinstance(fresh, bool):
        return None if isinstance(value, bool) else "true or false"
    if isinstance(fresh, int):
        return None if isinstance(value, int) and not isinstance(value, bool) else "a whole number"
    if isinstance(fresh, float):
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        return None if ok else "a finite number"
    if isinstance(fresh, list | tuple):
        if not isinstance(value, list | tuple) or len(value) != len(fresh):
            return f"a list of {len(fresh)}"
        problems = [_kind_problem(item, model) for item, model in zip(value, fresh, strict=True)]
        return next((f"a list of {len(fresh)} (each {problem})" for problem in problems if problem is not None), None)
    return None if value == fresh else repr(fresh)


# ------------------------------------------------------------------------------------------------ accelerate state


def check_accelerate_state(
    state_dir: Path, process_index: int, saved_world_size: int, optimizer_files: tuple[str, ...]
) -> str | None:
    """Before the slow work: ``optimizer_files`` of accelerate's ``state_dir`` (optimizer.bin, scaler.pt) are intact
    archives (else a CheckpointError), and this process's RNG file reads and applies. A missing or damaged RNG file is
    a warning, returned: accelerate skips it with a log line only, and lvcd's own training does not depend on it."""
    for name in optimizer_files:
        check_torch_archive(state_dir / name)
    if process_index >= saved_world_size:  # no RNG file for this process: said by the caller (process counts differ)
        return None
    try:
        check_random_states(state_dir / f"random_states_{process_index}.pkl")
    except CheckpointError as err:
        return (
            f"warning: {err}; the global random generators start afresh. lvcd's data order, references and noise come "
            "from their own seeded generators, so the run repeats the uninterrupted one unless a custom dataset or "
            "transform draws from the global generators."
        )
    return None


def check_random_states(path: Path) -> None:
    """Read ``path`` (accelerate's random_states_<rank>.pkl) as accelerate does and apply it to throwaway generators
    (accelerate itself skips a file it cannot read or apply, saying so only in its log); a CheckpointError says what
    is wrong with it."""
    from accelerate.utils import load  # weights-only, numpy arrays allowed

    if not path.is_file():
        raise CheckpointError(f"{path} is missing")
    try:
        states = read_plain_torch_file(path, loader=load)
    except CheckpointError as err:
        raise CheckpointError(str(err).removesuffix(f"; {ANOTHER}.")) from None
    try:
        random.Random().setstate(states["random_state"])
        np.random.RandomState().set_state(states["numpy_random_seed"])
        torch.Generator().set_state(states["torch_manual_seed"])
    except Exception as err:  # noqa: BLE001 - whatever accelerate's own restore would have swallowed
        raise CheckpointError(f"{path} does not hold usable random states ({first_line(err)})") from None


def load_accelerate_state(accelerator, state_dir: Path) -> None:
    """``accelerator.load_state`` of a checkpoint's ``state/`` folder (through :func:`accelerate_state_view`); what
    goes wrong in it (a tensor damaged inside an intact archive, an optimizer state of other settings) is one line."""
    try:
        with accelerate_state_view(state_dir) as view:
            accelerator.load_state(str(view))  # optimizer, RNG states, grad scaler
    except Exception as err:  # noqa: BLE001 - torch.load and load_state_dict of a damaged state raise anything
        if out_of_memory(err):
            raise
        raise CheckpointError(
            f"{state_dir} does not load into this run ({first_line(err)}); resume with the "
            f"settings it was made with (its ../config.json), or {ANOTHER}."
        ) from None


def check_weights_only_loading(accelerator=None) -> None:
    """Refuse to resume where accelerate would read a checkpoint file with an unrestricted pickle: accelerate before
    1.1 loads optimizer, scaler and RNG files with a plain ``torch.load``, and FSDP2 the scaler of fp16 runs; a plain
    ``torch.load`` unpickles anything before torch 2.6."""
    import accelerate
    from packaging.version import Version

    if Version(torch.__version__.split("+")[0]) >= Version("2.6"):
        return
    if Version(accelerate.__version__) < Version("1.1"):
        raise CheckpointError(
            f"Resuming with accelerate {accelerate.__version__} and torch {torch.__version__} would load the "
            "checkpoint's files with pickle, which can run code; upgrade: pip install -U 'accelerate>=1.1'."
        )
    if accelerator is not None and getattr(accelerator, "is_fsdp2", False) and accelerator.scaler is not None:
        raise CheckpointError(
            f"Resuming an FSDP2 fp16 run with torch {torch.__version__} would load the checkpoint's scaler.pt with "
            "pickle, which can run code; upgrade: pip install -U 'torch>=2.6'."
        )


@contextlib.contextmanager
def accelerate_state_view(state_dir: Path) -> Iterator[Path]:
    """The folder to hand to ``accelerator.load_state``: ``state_dir`` itself, or when it holds custom_checkpoint
    pickles (earlier versions wrote them; anyone may plant one) a temporary folder with links to its other files:
    accelerate would unpickle those without restriction, and refuses a folder where their count differs from the
    objects registered with it (none)."""
    entries = list(state_dir.iterdir())
    if not any(_LEGACY_CUSTOM.match(entry.name) for entry in entries):
        yield state_dir
        return
    with tempfile.TemporaryDirectory(prefix="lvcd-resume-state-") as view:
        for entry in entries:
            if _LEGACY_CUSTOM.match(entry.name):
                continue
            link = Path(view) / entry.name
            try:
                link.symlink_to(entry.resolve(), target_is_directory=entry.is_dir())
            except OSError:  # no symlinks (Windows without the privilege): copy
                (shutil.copytree if entry.is_dir() else shutil.copy2)(entry, link)
        yield Path(view)


# ------------------------------------------------------------------------------------------------ after resuming


def apply_learning_rate(optimizer, scheduler, learning_rate: float) -> float | None:
    """After resuming: the configured learning rate replaces the checkpoint's (lowering it for a cool-down is the usual
    reason to resume with another value); the warm-up factor of the current step still applies. Returns the
    checkpoint's rate when it differed, else None."""
    previous = scheduler.base_lrs[0]
    if math.isclose(previous, learning_rate, rel_tol=1e-9):
        return None
    scheduler.base_lrs = [learning_rate] * len(scheduler.base_lrs)
    factor = scheduler.lr_lambdas[0](scheduler.last_epoch)
    for group in optimizer.param_groups:
        group["initial_lr"] = learning_rate
        group["lr"] = learning_rate * factor
    return previous
