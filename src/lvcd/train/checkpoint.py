"""Training checkpoints: the trained weights as an lvcd.ckpt-compatible safetensors file, plus the state to resume.

Layout of one checkpoint (written to a hidden temporary folder, then renamed, so a folder that exists is complete)::

    <output_dir>/checkpoints/step_000100/
        lvcd.safetensors     exactly the trained key set (official names): load it as ``lvcd_path``
        ema.safetensors      the exponential moving average of the same tensors (with train.ema_decay)
        train_state.json     step, epoch, data position, world size (what a resume restores)
        scheduler.json       the LR scheduler's state_dict
        config.json          the run's config
        state/               accelerate's save_state: optimizer.bin, random_states_<rank>.pkl, scaler.pt (fp16)

Writing, listing and finding checkpoints live here; reading one back, with every file checked, in
:mod:`lvcd.train.resume`. Checkpoints of earlier versions kept the scheduler and the train state as accelerate custom
objects (``state/custom_checkpoint_0.pkl`` and ``_1.pkl``); the resume reads those weights-only.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from lvcd.config import LVCDConfig
from lvcd.errors import LVCDError, WeightsError, first_line
from lvcd.io.atomic import (
    commit_path,
    recover_replaced,
    recover_replaced_in,
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


def prune_checkpoints(output_dir: str | Path, keep: int | None, weights_name: str = WEIGHTS_NAME) -> list[Path]:
    """Delete all but the newest ``keep`` checkpoints; returns the deleted folders."""
    if keep is None:
        return []
    found = list_checkpoints(output_dir, weights_name)
    removed = []
    for _, path in found[: max(0, len(found) - keep)]:
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed
