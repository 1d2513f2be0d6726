"""The training configuration: typed, frozen dataclasses read from a TOML (or JSON) file.

File layout (every key optional except ``model.svd`` and ``data.root``; see ``examples/train_config.toml``)::

    output_dir = "runs/lvcd-finetune"
    seed = 0
    [model]       svd, lvcd, config, controlnet_from_unet, from_scratch
    [data]        root, size, num_frames, nframe_range, num_workers, shuffle
    [train]       batch_size, gradient_accumulation_steps, max_steps, max_minutes, mixed_precision,
                  gradient_checkpointing, p_mean, p_std, trainable, ema_decay
    [optim]       learning_rate, betas, eps, weight_decay, warmup_steps, max_grad_norm
    [checkpoint]  every, keep
    [log]         every, trackers
    [eval]        every, shots, frames, steps

Relative paths in a file are relative to that file's folder; relative paths given as overrides are relative to the
current directory.

    >>> cfg = load_train_config("examples/train_config.toml", overrides=["train.max_steps=10"])  # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import tomllib

from lvcd.errors import LVCDError

MIXED_PRECISION = ("no", "fp16", "bf16")
TRAINABLE_SETS = ("lvcd", "all")
TRACKERS = ("csv", "tensorboard")


class TrainConfigError(LVCDError, ValueError):
    """The training configuration is unusable (unknown key, wrong type, bad value, missing file)."""


@dataclass(frozen=True)
class ModelSection:
    svd: str = ""  # svd.safetensors (UNet, CLIP, conditioner VAE encoder), or a base file of `lvcd train-vae`
    lvcd: str | None = None  # LVCD weights to start from (lvcd.ckpt or one of our checkpoints); None: from SVD alone
    # Model preset or JSON config; None: the config the `svd` file carries (our files do), else "svd-lvcd".
    config: str | None = None
    # Initialise the ControlNet from the UNet (official init_from_unet). None: only when no `lvcd` weights are given.
    controlnet_from_unet: bool | None = None
    # Train the UNet and ControlNet from a seeded random init (the `svd` file then only provides CLIP and the
    # conditioner VAE encoder); see examples/demo/.
    from_scratch: bool = False


@dataclass(frozen=True)
class DataSection:
    root: str = ""  # an LVCD training root (`lvcd data prepare`, or the official Animation_video)
    size: tuple[int, int] = (320, 576)  # training (H, W) in pixels
    num_frames: int = 15  # frames per clip, the reference included (1 reference + 14 targets)
    nframe_range: tuple[int, int] = (15, 200)  # clip lengths used
    num_workers: int = 4
    shuffle: bool = True


@dataclass(frozen=True)
class TrainSection:
    batch_size: int = 2  # clips per process and micro-step
    gradient_accumulation_steps: int = 4
    max_steps: int = 10_000  # optimizer steps
    # Wall-clock limit of the training steps (setup excluded): the step in flight finishes, then a checkpoint and the
    # eval are written and the run ends normally; `--resume latest` continues. For jobs with a time limit.
    max_minutes: float | None = None
    mixed_precision: str = "fp16"  # "no" | "fp16" | "bf16" (autocast; master weights stay fp32)
    gradient_checkpointing: bool = True
    p_mean: float | None = None  # ln sigma ~ N(p_mean, p_std^2); None: the model config's (1.0, 1.6)
    p_std: float | None = None
    trainable: str = "lvcd"  # "lvcd": the official set (ControlNet + UNet self-attention); "all": UNet + ControlNet
    ema_decay: float | None = None  # exponential moving average of the trained weights (ema.safetensors); None: off


@dataclass(frozen=True)
class OptimSection:
    learning_rate: float = 5e-5
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.01  # torch.optim.AdamW's default, as the official Lightning setup
    warmup_steps: int = 0  # linear warm-up; the official run has none
    max_grad_norm: float | None = None  # gradient clipping; the official run has none


@dataclass(frozen=True)
class CheckpointSection:
    every: int = 1500  # optimizer steps between checkpoints (the official every_n_train_steps)
    keep: int | None = None  # keep only the newest N checkpoints; None keeps all


@dataclass(frozen=True)
class LogSection:
    every: int = 1  # optimizer steps between log rows
    trackers: tuple[str, ...] = ("csv",)  # "csv" and/or "tensorboard"


@dataclass(frozen=True)
class EvalSection:
    """Sampling quality during training, on held-out synthetic shots (needs a VAE decoder in the `svd` file)."""

    every: int = 0  # optimizer steps between evaluations; 0: never
    shots: int = 4  # held-out shots (lvcd.data.synthetic, split "heldout")
    frames: int = 15  # frames per shot (15 = one window)
    steps: int = 10  # Euler steps per sample


@dataclass(frozen=True)
class TrainConfig:
    output_dir: str = "runs/lvcd"
    seed: int = 0
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    train: TrainSection = field(default_factory=TrainSection)
    optim: OptimSection = field(default_factory=OptimSection)
    checkpoint: CheckpointSection = field(default_factory=CheckpointSection)
    log: LogSection = field(default_factory=LogSection)
    eval: EvalSection = field(default_factory=EvalSection)

    PATH_KEYS: ClassVar[frozenset] = frozenset(
        {("model", "svd"), ("model", "lvcd"), ("model", "config"), ("data", "root"), (None, "output_dir")}
    )

    def replace(self, **sections: Any) -> TrainConfig:
        return dataclasses.replace(self, **sections)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> TrainConfig:
        """Check values that types cannot express; returns self."""
        t, o, d = self.train, self.optim, self.data
        checks = [
            (t.batch_size >= 1, "train.batch_size must be >= 1"),
            (t.gradient_accumulation_steps >= 1, "train.gradient_accumulation_steps must be >= 1"),
            (t.max_steps >= 1, "train.max_steps must be >= 1"),
            (t.max_minutes is None or t.max_minutes > 0, "train.max_minutes must be > 0 (or absent)"),
            (t.mixed_precision in MIXED_PRECISION, f"train.mixed_precision must be one of {MIXED_PRECISION}"),
            (t.p_std is None or t.p_std > 0, "train.p_std must be > 0"),
            (t.trainable in TRAINABLE_SETS, f"train.trainable must be one of {TRAINABLE_SETS}"),
            (t.ema_decay is None or 0 < t.ema_decay < 1, "train.ema_decay must be between 0 and 1 (or absent)"),
            (self.eval.every >= 0, "eval.every must be >= 0"),
            (self.eval.shots >= 1 and self.eval.steps >= 1, "eval.shots and eval.steps must be >= 1"),
            (self.eval.frames >= 2, "eval.frames must be >= 2"),
            (not (self.model.from_scratch and self.model.lvcd), "model.from_scratch and model.lvcd exclude each other"),
            (0 <= self.seed < 2**32, "seed must be between 0 and 2**32 - 1 (numpy's seed range)"),
            (min(d.size) > 0, "data.size must be positive (height and width in pixels)"),
            (d.num_frames >= 2, "data.num_frames must be >= 2 (a reference and a target)"),
            (
                d.num_frames <= d.nframe_range[1] and d.nframe_range[0] <= d.nframe_range[1],
                "data.nframe_range must be [shortest, longest] clip length, longest >= data.num_frames",
            ),
            (d.num_workers >= 0, "data.num_workers must be >= 0"),
            (self.checkpoint.every >= 1, "checkpoint.every must be >= 1"),
            (self.checkpoint.keep is None or self.checkpoint.keep >= 1, "checkpoint.keep must be >= 1 (or absent)"),
            (self.log.every >= 1, "log.every must be >= 1"),
            (all(name in TRACKERS for name in self.log.trackers), f"log.trackers must be among {TRACKERS}"),
            *optim_problems(o),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainConfigError(message)
        return self


def optim_problems(o: OptimSection) -> list[tuple[bool, str]]:
    """(ok, message) checks of an [optim] section, the ranges AdamW accepts (it would refuse them after the models
    loaded, with a traceback)."""
    return [
        (o.learning_rate > 0, "optim.learning_rate must be > 0"),
        (all(0 <= beta < 1 for beta in o.betas), "optim.betas must both be >= 0 and < 1"),
        (o.eps >= 0, "optim.eps must be >= 0"),
        (o.weight_decay >= 0, "optim.weight_decay must be >= 0"),
        (o.warmup_steps >= 0, "optim.warmup_steps must be >= 0"),
        (o.max_grad_norm is None or o.max_grad_norm > 0, "optim.max_grad_norm must be > 0 (or absent)"),
    ]


def _sections(root_cls) -> dict[str, type]:
    """The [section] tables of a config class: its fields whose type is a dataclass."""
    return {name: kind for name, kind in _field_types(root_cls).items() if dataclasses.is_dataclass(kind)}


# ------------------------------------------------------------------------------------------------ values


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check/convert one value from TOML/JSON to the annotated field type."""
    hint = annotation
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(value, option, where)
            except TrainConfigError as err:
                errors.append(str(err))
        raise TrainConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is tuple:
        args = typing.get_args(hint)
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise TrainConfigError(f"{where}: expected a list, got {value!r}")
        items = list(value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], where) for v in items)
        if len(items) != len(args):
            raise TrainConfigError(f"{where}: expected {len(args)} values, got {len(items)} ({value!r})")
        return tuple(_coerce(v, a, where) for v, a in zip(items, args, strict=True))
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise TrainConfigError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TrainConfigError(f"{where}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            return float(value)
        raise TrainConfigError(f"{where}: expected a finite number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise TrainConfigError(f"{where}: expected a string, got {value!r}")
    raise TrainConfigError(f"{where}: unsupported type {hint}")


def _setting(value: Any, hint: Any, where: str) -> Any:
    """A setting's value of type ``hint``; TOML has no null: an empty string unsets an optional setting (of any type:
    ``checkpoint.keep = ""`` keeps every checkpoint)."""
    if value == "" and type(None) in typing.get_args(hint):
        return None
    return _coerce(value, hint, where)


def _field_types(cls) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _resolve_path(value: str | None, base: Path | None, key: tuple[str | None, str]) -> str | None:
    if value is None or value == "" or base is None:
        return value
    if key == ("model", "config") and not (value.lower().endswith(".json") or "/" in value or "\\" in value):
        return value  # a preset name
    path = Path(value).expanduser()
    return os.path.normpath(path if path.is_absolute() else (base / path))


def config_from_dict(doc: Mapping[str, Any], base_dir: str | Path | None = None, root_cls: type = None):
    """Build a :class:`TrainConfig` (or another config class of the same shape: top-level settings and [section]
    dataclasses, paths listed in its ``PATH_KEYS``) from a parsed document; unknown keys are errors."""
    root_cls = root_cls or TrainConfig
    base = Path(base_dir) if base_dir is not None else None
    top_types = _field_types(root_cls)
    sections = _sections(root_cls)
    path_keys = root_cls.PATH_KEYS
    top: dict[str, Any] = {}
    for key, value in doc.items():
        if key in sections:
            if not isinstance(value, Mapping):
                raise TrainConfigError(f"[{key}] must be a table of settings, got {value!r}")
            cls = sections[key]
            types_ = _field_types(cls)
            values = {}
            for name, item in value.items():
                if name not in types_:
                    raise TrainConfigError(f"Unknown setting {key}.{name}; valid: {', '.join(types_)}")
                item = _setting(item, types_[name], f"{key}.{name}")
                if (key, name) in path_keys:
                    item = _resolve_path(item, base, (key, name))
                values[name] = item
            top[key] = cls(**values)
        elif key in top_types and key not in sections:
            item = _setting(value, top_types[key], key)
            if (None, key) in path_keys:
                item = _resolve_path(item, base, (None, key))
            top[key] = item
        else:
            raise TrainConfigError(f"Unknown setting {key!r}; valid: {', '.join(top_types)}")
    return root_cls(**top)


def read_config_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise TrainConfigError(f"Training config {path} does not exist; see examples/train_config.toml.")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise TrainConfigError(f"Training config {path} is not UTF-8 text ({err.reason}); save it as UTF-8.") from None
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            return tomllib.loads(text)
        if suffix == ".json":
            return json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        raise TrainConfigError(f"Cannot parse {path}: {err}") from err
    raise TrainConfigError(f"Training config {path} must be a .toml or .json file.")


def _parse_override_value(text: str) -> Any:
    """TOML value syntax (``5e-5``, ``true``, ``[320, 576]``, ``"x"``); anything else is a plain string."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def apply_overrides(doc: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """``["train.max_steps=10", "output_dir=runs/x"]`` applied to a parsed document (a copy is returned)."""
    doc = {k: dict(v) if isinstance(v, Mapping) else v for k, v in doc.items()}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise TrainConfigError(f"Override {item!r} must look like section.key=value (e.g. train.max_steps=100).")
        parts = key.strip().split(".")
        value = _parse_override_value(raw.strip())
        if len(parts) == 1:
            doc[parts[0]] = value
        elif len(parts) == 2:
            doc.setdefault(parts[0], {})
            if not isinstance(doc[parts[0]], dict):
                raise TrainConfigError(f"Override {item!r}: {parts[0]} is not a section.")
            doc[parts[0]][parts[1]] = value
        else:
            raise TrainConfigError(f"Override {item!r}: keys have at most one dot (section.key).")
    return doc


def _absolutize_overrides(overrides: Iterable[str], path_keys: frozenset) -> list[str]:
    """Relative paths given on the command line are relative to the current directory."""
    result = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = tuple(key.strip().split("."))
        path_key = (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1]) if len(parts) == 2 else None
        value = _parse_override_value(raw.strip())
        if sep and path_key in path_keys and isinstance(value, str) and value:
            resolved = _resolve_path(value, Path.cwd(), path_key)
            item = f"{key}={json.dumps(resolved)}"
        result.append(item)
    return result


def load_train_config(path: str | Path, overrides: Iterable[str] = (), root_cls: type = None):
    """Read a TOML/JSON training config (a ``TrainConfig``, or ``root_cls``), apply ``section.key=value`` overrides
    and validate."""
    root_cls = root_cls or TrainConfig
    path = Path(path)
    doc = read_config_file(path)
    doc = apply_overrides(doc, _absolutize_overrides(overrides, root_cls.PATH_KEYS))
    config = config_from_dict(doc, base_dir=path.parent.resolve(), root_cls=root_cls).validate()
    # Not a setting (to_dict and replace leave it out): the training checks that output_dir spares this file.
    object.__setattr__(config, "_source_file", path.resolve())
    return config


def config_source(config) -> Path | None:
    """The file ``config`` was read from by :func:`load_train_config`; None for a config built in code."""
    return getattr(config, "_source_file", None)
