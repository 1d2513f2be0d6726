"""Training checkpoints: the trained weights as an lvcd.ckpt-compatible safetensors file, plus the state to resume.

Layout of one checkpoint (written to a hidden temporary folder, then renamed, so a folder that exists is complete)::

    <output_dir>/checkpoints/step_000100/
        lvcd.safetensors     exactly the trained key set (official names): load it as ``lvcd_path``
        ema.safetensors      the exponential moving average of the same tensors (with train.ema_decay)
        train_state.json     step, epoch, data position, world size (what a resume restores)
        scheduler.json       the LR scheduler's state_dict
        config.json          the run's config
        state/               accelerate's save_state: optimizer.bin, random_states_<rank>.pkl, scaler.pt (fp16)

Nothing here is read with a pickle that can run code: the JSON files are plain data, and accelerate loads its own
files with ``torch.load(weights_only=True)``. Checkpoints of earlier versions kept the scheduler and the train state
as accelerate custom objects (``state/custom_checkpoint_0.pkl`` and ``_1.pkl``, which accelerate would unpickle
without restriction); :func:`read_resume_state` reads those weights-only and refuses one that asks for more.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
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
SCHEDULER_NAME = "scheduler.json"
# Earlier versions: the scheduler and the train state as accelerate custom objects, in registration order.
LEGACY_SCHEDULER_NAME = "custom_checkpoint_0.pkl"
LEGACY_TRAIN_STATE_NAME = "custom_checkpoint_1.pkl"
_LEGACY_CUSTOM = re.compile(r"^custom_checkpoint_\d+\.pkl$")  # what accelerate's load_state counts and unpickles
_STEP_DIR = re.compile(r"^step_(\d+)$")


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


def read_resume_state(checkpoint: Path) -> tuple[dict[str, int], dict[str, Any]]:
    """(train state, scheduler state) of a checkpoint, checked to be plain values; a checkpoint of an earlier version
    (no scheduler.json) is read from its ``state/custom_checkpoint_*.pkl`` weights-only."""
    if not (checkpoint / STATE_DIR).is_dir():
        raise CheckpointError(f"{checkpoint} is incomplete (no {STATE_DIR}/ folder); resume from another checkpoint.")
    if (checkpoint / SCHEDULER_NAME).is_file():
        train_state = read_checkpoint_json(checkpoint / TRAIN_STATE_NAME)
        scheduler_state = read_checkpoint_json(checkpoint / SCHEDULER_NAME)
    else:
        legacy = [checkpoint / STATE_DIR / name for name in (LEGACY_TRAIN_STATE_NAME, LEGACY_SCHEDULER_NAME)]
        missing = [path for path in legacy if not path.is_file()]
        if missing:
            raise CheckpointError(
                f"{checkpoint} is incomplete: it has neither {SCHEDULER_NAME} nor the {missing[0]} of earlier "
                "versions; resume from another checkpoint."
            )
        train_state, scheduler_state = (_read_legacy_pickle(path) for path in legacy)
    counters = {f.name for f in fields(TrainState)}
    bad = [k for k, v in train_state.items() if k in counters and (not isinstance(v, int) or isinstance(v, bool))]
    if "step" not in train_state or bad:
        raise CheckpointError(
            f"{checkpoint}: the train state has no whole-number {(bad or ['step'])[0]}; it is not an lvcd training "
            "checkpoint: resume from another one."
        )
    return train_state, scheduler_state


def restore_scheduler(scheduler, saved: dict[str, Any], checkpoint: Path) -> None:
    """Load ``saved`` (from :func:`read_resume_state`) into ``scheduler``: only the keys the scheduler has, and never
    its lr_lambdas (our warm-up is a plain function; a checkpoint holds nothing of it)."""
    fresh = scheduler.state_dict()
    if not {"base_lrs", "last_epoch"} <= saved.keys():
        raise CheckpointError(
            f"{checkpoint}: the scheduler state has no base_lrs / last_epoch; it is not an lvcd training checkpoint: "
            "resume from another one."
        )
    restored = {key: saved.get(key, value) for key, value in fresh.items()}
    restored["lr_lambdas"] = fresh["lr_lambdas"]
    scheduler.load_state_dict(restored)


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


def read_checkpoint_json(path: Path) -> dict[str, Any]:
    """A JSON object of a checkpoint; a missing or unreadable file is a one-line CheckpointError."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing: the checkpoint is incomplete; resume from another one.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path} cannot be read ({err}); resume from another checkpoint.") from None
    if not isinstance(document, dict):
        raise CheckpointError(f"{path} is not a JSON object; resume from another checkpoint.")
    return document


def _read_legacy_pickle(path: Path) -> dict[str, Any]:
    """A custom-object state of an earlier version (a plain dict), read weights-only: a pickle that asks for anything
    beyond plain data and tensors is refused, never run."""
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path} is not a plain checkpoint: its pickle asks for more than plain data and could run code, so lvcd "
            "does not load it (the ones lvcd wrote hold plain data only); resume from another checkpoint."
        ) from None
    except (OSError, EOFError, RuntimeError, ValueError) as err:
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path} cannot be read ({message}); resume from another checkpoint.") from None
    if not isinstance(state, dict):
        raise CheckpointError(
            f"{path} holds no state dict; it is not an lvcd training checkpoint: resume from another one."
        )
    return state


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
        match = _STEP_DIR.match(entry.name)
        if match and entry.is_dir() and (weights_name is None or (entry / weights_name).is_file()):
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
