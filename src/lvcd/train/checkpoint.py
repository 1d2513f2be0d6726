"""Training checkpoints: the trained weights as an lvcd.ckpt-compatible safetensors file, plus the state to resume.

Layout of one checkpoint (written to a hidden temporary folder, then renamed, so a folder that exists is complete)::

    <output_dir>/checkpoints/step_000100/
        lvcd.safetensors     exactly the trained key set (official names): load it as ``lvcd_path``
        ema.safetensors      the exponential moving average of the same tensors (with train.ema_decay)
        train_state.json     step, epoch, data position, world size (what a resume restores)
        scheduler.json       the LR scheduler's state_dict
        config.json          the run's config
        state/               accelerate's save_state: optimizer.bin, random_states_<rank>.pkl, scaler.pt (fp16)

Pruning (``checkpoint.keep``) deletes these names only: a user's files in an old checkpoint folder stay there.

Writing, listing and finding checkpoints live here; reading one back, with every file checked, in
:mod:`lvcd.train.resume`. Checkpoints of earlier versions kept the scheduler and the train state as accelerate custom
objects (``state/custom_checkpoint_0.pkl`` and ``_1.pkl``); the resume reads those weights-only.
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from lvcd.config import LVCDConfig
from lvcd.errors import LVCDError, WeightsError, first_line
from lvcd.io.atomic import (
    CREATING,
    commit_path,
    recover_replaced,
    recover_replaced_in,
    temporary_target,
    write_json_atomic,  # noqa: F401 - the loop writes its JSON through this module
)
from lvcd.model import LVCDModel
from lvcd.state_dict import check_keys
from lvcd.train.trainable import trainable_keys
from lvcd.weights import WeightsFile, model_metadata, save_safetensors

CHECKPOINTS_DIR = "checkpoints"
WEIGHTS_NAME = "lvcd.safetensors"
EMA_NAME = "ema.safetensors"  # the moving average of the same tensors, when train.ema_decay is set
STATE_DIR = "state"
TRAIN_STATE_NAME = "train_state.json"
SCHEDULER_NAME = "scheduler.json"
# Earlier versions: the scheduler and the train state as accelerate custom objects, in registration order.
LEGACY_SCHEDULER_NAME = "custom_checkpoint_0.pkl"
LEGACY_TRAIN_STATE_NAME = "custom_checkpoint_1.pkl"
# What the loop writes into a checkpoint's staging folder (checkpoints/.step_N.tmp) before renaming it into place.
STAGED_NAMES = (WEIGHTS_NAME, EMA_NAME, TRAIN_STATE_NAME, SCHEDULER_NAME, "config.json", STATE_DIR)
# What accelerate's save_state writes into state/ (models, optimizers, schedulers, samplers, the grad scaler, RNG
# states, custom objects; FSDP's sharded model and optimizer folders), as its constants name them.
_ACCELERATE_STATE = re.compile(
    r"^(?:model(?:_\d+)?\.safetensors|pytorch_model(?:_fsdp)?(?:_\d+)?(?:\.bin)?|optimizer(?:_\d+)?(?:\.bin)?"
    r"|(?:scheduler|sampler|dl_state_dict)(?:_\d+)?\.bin|scaler\.pt|random_states_\d+\.pkl|custom_checkpoint_\d+\.pkl)$"
)
_STEP_DIR = re.compile(r"^step_(\d+)$")
ANOTHER = "resume from another (earlier) checkpoint"  # the remedy for a damaged checkpoint


class CheckpointError(LVCDError, ValueError):
    """A checkpoint to resume from is missing or incomplete."""


@dataclass
class TrainState:
    """Progress counters, saved with every checkpoint as ``train_state.json``."""

    step: int = 0  # optimizer steps done
    micro_step: int = 0  # micro-batches consumed per process
    epoch: int = 0
    batches_per_epoch: int = 0  # per process, to check that a resumed run reads the data the same way
    world_size: int = 1
    batch_size: int = 0

    def state_dict(self) -> dict[str, int]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            if hasattr(self, key):
                setattr(self, key, int(value))


def save_resume_state(folder: Path, state: TrainState, scheduler) -> None:
    """``train_state.json`` and ``scheduler.json`` of a checkpoint (plain JSON: reading them back runs no code)."""
    write_json_atomic(folder / TRAIN_STATE_NAME, state.state_dict())
    write_json_atomic(folder / SCHEDULER_NAME, scheduler.state_dict(), allow_nan=False)


def step_dir_name(step: int) -> str:
    return f"step_{step:06d}"


def checkpoints_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / CHECKPOINTS_DIR


def list_checkpoints(output_dir: str | Path, weights_name: str | None = WEIGHTS_NAME) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run (folders holding ``weights_name``; None: every step folder), oldest first."""
    root = checkpoints_root(output_dir)
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        step = folder_step(entry)
        if step is not None and entry.is_dir() and (weights_name is None or (entry / weights_name).is_file()):
            found.append((step, entry))
    return sorted(found)


def folder_step(path: Path) -> int | None:
    """The step a checkpoint folder's name says (``step_000100``: 100); None for another name."""
    match = _STEP_DIR.match(path.name)
    return int(match.group(1)) if match else None


def find_checkpoint(output_dir: str | Path, resume: str | Path) -> Path:
    """``'latest'`` (newest checkpoint of ``output_dir``) or a checkpoint folder; refused when incomplete."""
    needed = (WEIGHTS_NAME, TRAIN_STATE_NAME, STATE_DIR)
    if str(resume) == "latest":
        return latest_checkpoint(output_dir, needed)
    path = Path(resume)
    if path.is_file() and path.name == WEIGHTS_NAME:
        path = path.parent
    present = [name for name in needed if (path / name).exists()]
    for name in needed:
        if name in present:
            continue
        if present:  # a checkpoint that lost a file
            raise CheckpointError(f"{path} is incomplete (no {name}); {ANOTHER}.")
        raise CheckpointError(
            f"{path} is not a training checkpoint (no {name}); pass a folder like "
            f"{checkpoints_root(output_dir) / step_dir_name(100)} or 'latest'."
        )
    return path


def latest_checkpoint(output_dir: str | Path, needed: tuple[str, ...]) -> Path:
    """The newest step folder of ``output_dir``, refused in one line when it lacks one of ``needed`` (resuming an
    older one there would replace or prune the newer folder, and skipping it silently would lose its steps). A
    checkpoint a run killed while saving the same step again left moved aside is moved back first."""
    root = checkpoints_root(output_dir)
    if root.is_dir():
        recover_replaced_in(root)
    found = list_checkpoints(output_dir, None)
    if not found:
        raise CheckpointError(f"--resume latest: no checkpoint under {root}.")
    newest = found[-1][1]
    lacking = next((name for name in needed if not (newest / name).exists()), None)
    if lacking is None:
        return newest
    complete = [path for _, path in found[:-1] if all((path / name).exists() for name in needed)]
    then = f"; --resume latest then continues from {complete[-1].name}" if complete else ""
    raise CheckpointError(
        f"--resume latest: the newest checkpoint {newest} is incomplete or not this command's (no {lacking}); move "
        f"it out of {root}{then}."
    )


def trained_state(
    full_state: dict[str, torch.Tensor], model: LVCDModel, prefix: str = "", which: str = "lvcd"
) -> dict[str, torch.Tensor]:
    """The trained tensors (official names, trainable set ``which``) out of a state dict whose keys carry ``prefix``."""
    return {key: full_state[prefix + key] for key in trainable_keys(model, which)}


def save_trained_weights(
    tensors: dict[str, torch.Tensor], path: str | Path, step: int, config: LVCDConfig, which: str = "lvcd"
) -> Path:
    metadata = model_metadata(config, lvcd_subset=which, step=str(step))
    return save_safetensors({k: v.detach().float() for k, v in tensors.items()}, path, metadata=metadata)


@torch.no_grad()
def load_trained_weights(model: LVCDModel, path: str | Path, which: str = "lvcd") -> int:
    """Copy a weights file holding exactly the trainable set ``which`` into ``model``; returns the tensor count."""
    path = Path(path)
    weights = open_checkpoint_weights(path)
    state = model.state_dict()
    expected = {key: state[key] for key in trainable_keys(model, which)}
    report = check_keys(weights.shapes(), expected)
    if not report.ok:
        raise WeightsError(
            f"{path} does not hold the trained key set '{which}': {report.describe()}; resume with the train.trainable "
            "and the model it was made with (its config.json)."
        )
    for key, value in read_checkpoint_tensors(weights, expected).items():
        expected[key].copy_(value)
    return len(expected)


def check_trained_key_set(weights: WeightsFile, config: LVCDConfig, which: str) -> None:
    """Before any model loads: a checkpoint's weights file (header read) holds exactly the tensors, with their shapes,
    that trainable set ``which`` of a ``config`` model trains (the model is built on the meta device: no memory)."""
    with torch.device("meta"):
        model = LVCDModel(config, parts=("unet", "controlnet"))
    state = model.state_dict()
    expected = {key: state[key] for key in trainable_keys(model, which)}
    report = check_keys(weights.shapes(), expected)
    if not report.ok:
        made = (weights.metadata() or {}).get("lvcd_subset")
        hint = f" (it was made with train.trainable = {made!r})" if made in ("lvcd", "all") and made != which else ""
        raise WeightsError(
            f"{weights.path} does not hold the trained key set '{which}' of the '{config.name}' model{hint}: "
            f"{report.describe()}; resume with the train.trainable and the model it was made with (its config.json)."
        )


def open_checkpoint_weights(path: Path) -> WeightsFile:
    """A weights file of a checkpoint (its header read, tensors lazily); missing or damaged: one CheckpointError line
    that says to resume from another checkpoint (the weights reader's own advice is for downloaded files)."""
    if not path.is_file():
        raise CheckpointError(f"{path} is missing: the checkpoint is incomplete; {ANOTHER}.")
    try:
        return WeightsFile(path, "lvcd")
    except WeightsError as err:
        raise CheckpointError(f"{path} is damaged ({_weights_reason(err, path)}); {ANOTHER}.") from None


def read_checkpoint_tensors(weights: WeightsFile, keys: Iterable[str]) -> dict[str, torch.Tensor]:
    """``keys`` of an opened checkpoint file; a missing tensor or a damaged one is one CheckpointError line."""
    keys = list(keys)
    missing = sorted(set(keys) - set(weights.keys()))
    if missing:
        raise CheckpointError(f"{weights.path} lacks {len(missing)} tensor(s) ({missing[0]}, ...); {ANOTHER}.")
    try:
        return {key: weights.get(key) for key in keys}
    except WeightsError as err:
        raise CheckpointError(f"{weights.path} is damaged ({_weights_reason(err, weights.path)}); {ANOTHER}.") from None


def _weights_reason(err: WeightsError, path: Path) -> str:
    """What the weights reader found wrong (its reader's own error when there is one), without the advice."""
    if err.__cause__ is not None:
        return first_line(err.__cause__)
    return first_line(err).replace(f"{path} ", "").split(";")[0].rstrip(".")


def staging_dir(output_dir: str | Path, step: int) -> Path:
    return checkpoints_root(output_dir) / f".{step_dir_name(step)}.tmp"


def publish(staging: Path, final: Path) -> Path:
    """Rename a finished staging folder into place (replacing an older folder of the same step; one a killed save
    left moved aside is moved back, then replaced)."""
    recover_replaced(final)
    return commit_path(staging, final, overwrite=True)


def prune_checkpoints(
    output_dir: str | Path, keep: int | None, weights_name: str = WEIGHTS_NAME, own_names: Iterable[str] = STAGED_NAMES
) -> list[Path]:
    """Delete all but the newest ``keep`` checkpoints; returns the deleted folders. Only what lvcd writes into a
    checkpoint goes (``own_names``, accelerate's files in ``state/``, lvcd's temporaries of them): a folder that also
    holds other files keeps them, and is said once on stderr (without its weights file it is no checkpoint any more,
    so later prunes and ``--resume latest`` pass it by)."""
    if keep is None:
        return []
    found = list_checkpoints(output_dir, weights_name)
    removed = []
    for _, path in found[: max(0, len(found) - keep)]:
        try:
            others = remove_checkpoint_files(path, weights_name, own_names)
        except OSError as err:  # pruning is housekeeping: the checkpoint just saved stands, the run goes on
            print(f"warning: could not prune checkpoint {path} ({first_line(err)}).", file=sys.stderr, flush=True)
            continue
        if others:
            print(
                f"note: pruned checkpoint {path} kept {others[0]}"
                + (f" and {len(others) - 1} other entr{'y' if len(others) == 2 else 'ies'}" if len(others) > 1 else "")
                + " that lvcd did not write there (lvcd's checkpoint files in it were deleted).",
                file=sys.stderr,
                flush=True,
            )
        else:
            removed.append(path)
    return removed


def remove_checkpoint_files(folder: Path, weights_name: str, own_names: Iterable[str]) -> list[str]:
    """Delete the entries lvcd writes into checkpoint ``folder``, the weights file last (an interrupted prune leaves a
    checkpoint the next one finds again), then the folder when empty. Returns the names of what else it holds."""
    own_names = set(own_names) | {weights_name}
    others = []
    for entry in sorted(folder.iterdir(), key=lambda entry: (entry.name == weights_name, entry.name)):
        name = entry.name
        if name not in own_names and _lvcd_temporary_of(name) not in own_names:
            others.append(name)
        elif name == STATE_DIR and entry.is_dir() and not entry.is_symlink():
            kept = [inner.name for inner in entry.iterdir() if not _remove_if(inner, _is_accelerate_state(inner.name))]
            others += [f"{STATE_DIR}/{inner}" for inner in sorted(kept)]
            if not kept:
                entry.rmdir()
        else:
            _remove_if(entry, True)
    if not others:
        folder.rmdir()
    return others


def _is_accelerate_state(name: str) -> bool:
    target = _lvcd_temporary_of(name)
    return bool(_ACCELERATE_STATE.match(name) or (target is not None and _ACCELERATE_STATE.match(target)))


def _lvcd_temporary_of(name: str) -> str | None:
    """The name an lvcd temporary (``partial`` or ``creating``, see :mod:`lvcd.io.atomic`) stands for, or None."""
    return temporary_target(name, "partial") or temporary_target(name, CREATING)


def _remove_if(path: Path, remove: bool) -> bool:
    """Delete ``path`` (a file, a link or a folder) when ``remove``; returns ``remove``."""
    if remove:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    return remove
