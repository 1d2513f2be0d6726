"""Training checkpoints: the trained weights as an lvcd.ckpt-compatible safetensors file, plus the state to resume.

Layout of one checkpoint (written to a hidden temporary folder, then renamed, so a folder that exists is complete)::

    <output_dir>/checkpoints/step_000100/
        lvcd.safetensors     exactly the trained key set (official names): load it as ``lvcd_path``
        ema.safetensors      the exponential moving average of the same tensors (with train.ema_decay)
        train_state.json     step, epoch, data position (readable copy of custom_checkpoint_1.pkl)
        state/               accelerate's save_state: optimizer.bin, scheduler (custom_checkpoint_0.pkl),
                             train state (custom_checkpoint_1.pkl), random_states_<rank>.pkl, scaler.pt (fp16)
"""

from __future__ import annotations

import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from lvcd.config import LVCDConfig
from lvcd.errors import LVCDError, WeightsError
from lvcd.io.atomic import commit_path, write_json_atomic  # noqa: F401 - the loop writes its JSON through this module
from lvcd.model import LVCDModel
from lvcd.state_dict import check_keys
from lvcd.train.trainable import trainable_keys
from lvcd.weights import WeightsFile, model_metadata, save_safetensors

CHECKPOINTS_DIR = "checkpoints"
WEIGHTS_NAME = "lvcd.safetensors"
EMA_NAME = "ema.safetensors"  # the moving average of the same tensors, when train.ema_decay is set
STATE_DIR = "state"
TRAIN_STATE_NAME = "train_state.json"
_STEP_DIR = re.compile(r"^step_(\d+)$")


class CheckpointError(LVCDError, ValueError):
    """A checkpoint to resume from is missing or incomplete."""


@dataclass
class TrainState:
    """Progress counters, saved with every checkpoint (registered with accelerate as a custom object)."""

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


def step_dir_name(step: int) -> str:
    return f"step_{step:06d}"


def checkpoints_root(output_dir: str | Path) -> Path:
    return Path(output_dir) / CHECKPOINTS_DIR


def list_checkpoints(output_dir: str | Path, weights_name: str = WEIGHTS_NAME) -> list[tuple[int, Path]]:
    """Complete checkpoints of a run (folders holding ``weights_name``), oldest first."""
    root = checkpoints_root(output_dir)
    if not root.is_dir():
        return []
    found = []
    for entry in root.iterdir():
        match = _STEP_DIR.match(entry.name)
        if match and entry.is_dir() and (entry / weights_name).is_file():
            found.append((int(match.group(1)), entry))
    return sorted(found)


def find_checkpoint(output_dir: str | Path, resume: str | Path) -> Path:
    """``'latest'`` (newest complete checkpoint of ``output_dir``) or a checkpoint folder."""
    if str(resume) == "latest":
        found = list_checkpoints(output_dir)
        if not found:
            raise CheckpointError(f"--resume latest: no checkpoint under {checkpoints_root(output_dir)}.")
        return found[-1][1]
    path = Path(resume)
    if path.is_file() and path.name == WEIGHTS_NAME:
        path = path.parent
    for needed in (WEIGHTS_NAME, TRAIN_STATE_NAME, STATE_DIR):
        if not (path / needed).exists():
            raise CheckpointError(
                f"{path} is not a training checkpoint (no {needed}); pass a folder like "
                f"{checkpoints_root(output_dir) / step_dir_name(100)} or 'latest'."
            )
    return path


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
    weights = WeightsFile(path, "lvcd")
    state = model.state_dict()
    expected = {key: state[key] for key in trainable_keys(model, which)}
    report = check_keys(weights.shapes(), expected)
    if not report.ok:
        raise WeightsError(f"{path} does not hold the trained key set '{which}': {report.describe()}.")
    for key, tensor in expected.items():
        tensor.copy_(weights.get(key))
    return len(expected)


def staging_dir(output_dir: str | Path, step: int) -> Path:
    return checkpoints_root(output_dir) / f".{step_dir_name(step)}.tmp"


def publish(staging: Path, final: Path) -> Path:
    """Rename a finished staging folder into place (replacing an older folder of the same step)."""
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
