"""``lvcd train-vae``: the first stage of training LVCD from scratch (the demo model's recipe, examples/demo/).

Trains the KL autoencoder (2-D encoder + temporal decoder, ``lvcd.models.vae``) on short clips of a training
root's frames (optionally random crops of them, the same crop for the frames of a clip): loss = ``l1_weight`` x L1
+ ``mse_weight`` x MSE reconstruction + ``kl_weight`` x KL(posterior || N(0, 1)) (all means over elements).
Then it measures the scale factor from data, as Stable Diffusion did: ``scale_factor = 1 / RMS`` of posterior
samples over ``scale_frames`` frames, so scaled latents have unit second moment, which the EDM scalings and the
sigma distribution assume.

The result is one *base* weights file, the counterpart of ``svd.safetensors`` without a UNet: the VAE
(``first_stage_model.*``), a copy of its encoder as the conditioner's embedder 3 (with an identity ``quant_conv``,
so its mode is the VAE's posterior mean), and a CLIP image tower with a seeded random init (frozen in the
diffusion stage), with the model config (measured scale factor included) in its metadata. The diffusion stage
(`lvcd train` with ``model.from_scratch = true``) reads it as ``model.svd``.

Resumable and seeded: the data order is a function of (seed, epoch), the posterior noise of step ``s`` of
(seed, s); checkpoints hold the weights, the optimizer state and the step.

    >>> result = train_vae(load_train_config("examples/demo/vae.toml", root_cls=VAETrainConfig))  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.utils.data import DataLoader

from lvcd.config import LVCDConfig
from lvcd.data.dataset import FrameClips
from lvcd.devices import default_device
from lvcd.errors import InputError, first_line
from lvcd.model import LVCDModel
from lvcd.models.vae import AutoencoderKL
from lvcd.train.batches import one_line_worker_errors
from lvcd.train.checkpoint import (
    ANOTHER,
    CheckpointError,
    checkpoints_root,
    latest_checkpoint,
    list_checkpoints,
    open_checkpoint_weights,
    prune_checkpoints,
    publish,
    read_checkpoint_tensors,
    staging_dir,
    step_dir_name,
    write_json_atomic,
)
from lvcd.train.config import (
    CheckpointSection,
    LogSection,
    OptimSection,
    TrainConfigError,
    config_source,
    optim_problems,
)
from lvcd.train.networks import model_config_setting
from lvcd.train.resume import check_torch_archive, check_train_state, read_checkpoint_json, read_plain_torch_file
from lvcd.train.run_dir import (
    VAE_LOGS,
    RunLock,
    check_run_output_dir,
    clear_own_logs,
    continue_csv_log,
    remove_abandoned_staging,
    run_output_path,
)
from lvcd.weights import model_metadata, save_safetensors

BASE_NAME = "base.safetensors"
VAE_WEIGHTS_NAME = "vae.safetensors"
OPTIMIZER_NAME = "optimizer.pt"
STATE_NAME = "train_state.json"
LOG_COLUMNS = ("step", "loss", "l1", "mse", "kl", "lr", "seconds")
_CHECKPOINT_NAMES = (VAE_WEIGHTS_NAME, OPTIMIZER_NAME, STATE_NAME)  # what _save_checkpoint writes into one


@dataclass(frozen=True)
class VAEModelSection:
    config: str = ""  # the model config (JSON) whose `vae` section is trained; its other parts go into the base file


@dataclass(frozen=True)
class VAEDataSection:
    root: str = ""  # a training root (`lvcd data synth` / `lvcd data prepare`); its img_<H> frames are read
    size: tuple[int, int] = (64, 64)
    clip_frames: int = 5  # consecutive frames decoded together (trains the temporal decoder)
    crop: int = 0  # train on random crops of this size (multiple of 8; 0: whole frames): more images per second
    num_workers: int = 0


@dataclass(frozen=True)
class VAETrainSection:
    batch_size: int = 4  # clips per step
    max_steps: int = 3000
    l1_weight: float = 1.0
    mse_weight: float = 1.0
    kl_weight: float = 1e-4
    scale_frames: int = 512  # frames whose posterior samples set the scale factor
    device: str = "auto"  # "auto": cuda when available


@dataclass(frozen=True)
class VAETrainConfig:
    output_dir: str = "runs/vae"
    seed: int = 0
    model: VAEModelSection = field(default_factory=VAEModelSection)
    data: VAEDataSection = field(default_factory=VAEDataSection)
    train: VAETrainSection = field(default_factory=VAETrainSection)
    optim: OptimSection = field(default_factory=lambda: OptimSection(learning_rate=2e-4, weight_decay=0.0))
    checkpoint: CheckpointSection = field(default_factory=lambda: CheckpointSection(every=500, keep=2))
    log: LogSection = field(default_factory=lambda: LogSection(every=50))

    PATH_KEYS: ClassVar[frozenset] = frozenset({("model", "config"), ("data", "root"), (None, "output_dir")})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> VAETrainConfig:
        t, d = self.train, self.data
        checks = [
            (
                bool(self.model.config),
                "model.config is required: the model config JSON (e.g. examples/demo/model.json)",
            ),
            (bool(d.root), "data.root is required: a training root (e.g. from `lvcd data synth`)"),
            (self.seed >= 0, "seed must be >= 0"),
            (min(d.size) > 0, "data.size must be positive"),
            (d.clip_frames >= 1, "data.clip_frames must be >= 1"),
            (d.crop >= 0 and d.crop % 8 == 0, "data.crop must be 0 or a multiple of 8"),
            (d.num_workers >= 0, "data.num_workers must be >= 0"),
            (t.batch_size >= 1 and t.max_steps >= 1, "train.batch_size and train.max_steps must be >= 1"),
            (t.kl_weight >= 0, "train.kl_weight must be >= 0"),
            (t.scale_frames >= 1, "train.scale_frames must be >= 1"),
            (self.checkpoint.every >= 1 and self.log.every >= 1, "checkpoint.every and log.every must be >= 1"),
            *optim_problems(self.optim),
        ]
        for ok, message in checks:
            if not ok:
                raise TrainConfigError(message)
        return self


# ------------------------------------------------------------------------------------------------ model


def kl_divergence(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Mean over elements of KL(N(mean, exp(logvar)) || N(0, 1))."""
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).mean()


def build_vae(config: LVCDConfig, seed: int) -> AutoencoderKL:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoencoderKL(config.vae)


@torch.no_grad()
def measure_scale_factor(vae: AutoencoderKL, frames: torch.Tensor, seed: int, batch_size: int = 64) -> float:
    """1 / RMS of posterior samples (unscaled) of ``frames`` (N, 3, H, W) in [-1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    total, count = 0.0, 0
    device = next(vae.parameters()).device
    for chunk in frames.split(batch_size):
        mean, logvar = vae.encode_moments(chunk.to(device))
        sample = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=generator).to(device)
        total += float(sample.double().square().sum())
        count += sample.numel()
    return 1.0 / math.sqrt(total / count)


@torch.no_grad()
def base_state(vae: AutoencoderKL, config: LVCDConfig, seed: int) -> tuple[dict[str, torch.Tensor], LVCDConfig]:
    """The base file's tensors and config: VAE, its encoder copied into embedder 3 (identity quant_conv), and a
    seeded random CLIP tower."""
    config = dataclasses.replace(config, vae=config.vae, cond_vae=config.vae)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)
        encoders = LVCDModel(config, parts=("clip", "cond_encoder"))
    encoders.cond_encoder.encoder.load_state_dict(vae.encoder.state_dict())
    quant = encoders.cond_encoder.quant_conv
    quant.weight.copy_(torch.eye(quant.weight.shape[0])[:, :, None, None])
    quant.bias.zero_()
    tensors = {**encoders.state_dict()}
    tensors.update({f"first_stage_model.{k}": v for k, v in vae.state_dict().items()})
    return tensors, config


def write_base_file(vae: AutoencoderKL, config: LVCDConfig, scale_factor: float, seed: int, path: Path) -> Path:
    vae_config = dataclasses.replace(config.vae, scale_factor=scale_factor)
    config = dataclasses.replace(config, vae=vae_config, cond_vae=vae_config)
    tensors, config = base_state(vae, config, seed)
    return save_safetensors(tensors, path, metadata=model_metadata(config, lvcd_subset="base"))


# ------------------------------------------------------------------------------------------------ loop


@dataclass
class VAETrainResult:
    output_dir: Path
    start_step: int
    step: int
    losses: list[float] = field(default_factory=list)
    checkpoint: Path | None = None
    base_path: Path | None = None
    scale_factor: float | None = None


def _device(name: str) -> torch.device:
    return default_device(None if name == "auto" else name)


def _resume_point(output_dir: Path, resume: str | None) -> Path | None:
    if resume is None or _restart(output_dir, resume):
        return None
    needed = (VAE_WEIGHTS_NAME, STATE_NAME, OPTIMIZER_NAME)
    if resume == "latest":
        return latest_checkpoint(output_dir, needed)
    path = Path(resume)
    lacking = [name for name in needed if not (path / name).is_file()]
    if len(lacking) == len(needed):
        raise CheckpointError(f"{path} is not a VAE training checkpoint (no {VAE_WEIGHTS_NAME} / {STATE_NAME}).")
    if lacking:
        raise CheckpointError(f"{path} is incomplete (no {lacking[0]}); {ANOTHER}.")
    return path


def _restart(output_dir: Path, resume: str | None) -> bool:
    """``--resume latest`` where no checkpoint was written yet (a run stopped before its first one): start afresh."""
    return resume == "latest" and not list_checkpoints(output_dir, None)


def _check_device(name: str) -> None:
    """train.device names a device this machine has (one line, before any data is read)."""
    if name == "auto":
        return
    from lvcd.devices import require_device

    try:
        require_device(name, "train.device")
    except InputError as err:
        raise TrainConfigError(str(err)) from None


def _epoch_order(num_items: int, seed: int, epoch: int) -> list[int]:
    generator = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0]))
    return torch.randperm(num_items, generator=generator).tolist()


def _batches(dataset: FrameClips, batch_size: int, seed: int, start_step: int, num_workers: int):
    """Batches of step ``start_step`` onwards: epoch e reads the items in a permutation drawn from (seed, e)."""
    per_epoch = len(dataset) // batch_size
    if per_epoch == 0:
        raise InputError(f"The root has {len(dataset)} clips of frames: fewer than batch_size {batch_size}.")
    epoch, offset = divmod(start_step, per_epoch)
    while True:
        order = _epoch_order(len(dataset), seed, epoch)[offset * batch_size : per_epoch * batch_size]
        loader = DataLoader(dataset, batch_size=batch_size, sampler=order, num_workers=num_workers, drop_last=True)
        yield from one_line_worker_errors(loader)
        epoch, offset = epoch + 1, 0


def _save_checkpoint(output_dir: Path, step: int, vae: AutoencoderKL, optimizer, keep: int | None) -> Path:
    staging = staging_dir(output_dir, step)
    if staging.exists():
        import shutil

        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    save_safetensors(vae.state_dict(), staging / VAE_WEIGHTS_NAME)
    torch.save(optimizer.state_dict(), staging / OPTIMIZER_NAME)
    write_json_atomic(staging / STATE_NAME, {"step": step})
    final = publish(staging, checkpoints_root(output_dir) / step_dir_name(step))
    prune_checkpoints(output_dir, keep, weights_name=VAE_WEIGHTS_NAME, own_names=_CHECKPOINT_NAMES)
    return final


def _checkpoint_step(path: Path) -> int:
    """The step of a checkpoint, after a look at each of its files (before the slow work)."""
    state = read_checkpoint_json(path / STATE_NAME)
    check_train_state(state, path / STATE_NAME, path)
    open_checkpoint_weights(path / VAE_WEIGHTS_NAME)
    check_torch_archive(path / OPTIMIZER_NAME)
    return state["step"]


def _load_checkpoint(path: Path, vae: AutoencoderKL, optimizer) -> None:
    weights = open_checkpoint_weights(path / VAE_WEIGHTS_NAME)
    optimizer_state = read_plain_torch_file(path / OPTIMIZER_NAME)
    remedy = f"resume with the model.config it was made with (its ../../config.json), or {ANOTHER}"
    try:
        vae.load_state_dict(read_checkpoint_tensors(weights, weights.keys()))
    except RuntimeError as err:  # keys or shapes of another VAE config
        raise CheckpointError(f"{weights.path} does not fit this VAE ({first_line(err)}); {remedy}.") from None
    try:
        optimizer.load_state_dict(optimizer_state)
    except (ValueError, KeyError, TypeError) as err:
        raise CheckpointError(f"{path / OPTIMIZER_NAME} does not fit this VAE ({first_line(err)}); {remedy}.") from None


def _crop(clips: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """A random ``size`` x ``size`` crop (at multiples of 8 px) of each clip (B, T, 3, H, W); 0 keeps the frames."""
    if size <= 0 or size >= min(clips.shape[-2:]):
        return clips
    rows, cols = ((side - size) // 8 + 1 for side in clips.shape[-2:])
    crops = []
    for clip in clips:
        top = 8 * int(torch.randint(rows, (1,), generator=generator))
        left = 8 * int(torch.randint(cols, (1,), generator=generator))
        crops.append(clip[..., top : top + size, left : left + size])
    return torch.stack(crops)


def _scale_frames(dataset: FrameClips, count: int) -> torch.Tensor:
    """A fixed, evenly spread set of ``count`` frames of the root."""
    names = [name for frames in dataset.clips for name in frames]
    picks = np.linspace(0, len(names) - 1, min(count, len(names))).round().astype(int)
    return torch.stack([dataset.frame(names[i]) for i in picks])


def train_vae(config: VAETrainConfig, resume: str | None = None, progress: bool = True) -> VAETrainResult:
    """Train the VAE as configured, then measure its scale factor and write ``output_dir/base.safetensors``.
    output_dir is locked for the run (a second run there is refused)."""
    with RunLock() as lock:
        return _train_vae(config, resume, progress, lock)


def _train_vae(config: VAETrainConfig, resume: str | None, progress: bool, lock: RunLock) -> VAETrainResult:
    config = config.validate()
    output_dir = run_output_path(config.output_dir)  # an empty one refused: it would train into the working folder
    resume_from = _resume_point(output_dir, resume)
    start = _checkpoint_step(resume_from) if resume_from is not None else 0
    inputs = {"--config": config_source(config), "data.root": config.data.root}
    if Path(config.model.config).exists():  # else a preset name
        inputs["model.config"] = config.model.config
    restart_note = check_run_output_dir(
        output_dir, inputs, resume_from, start, weights_name=VAE_WEIGHTS_NAME, restart=_restart(output_dir, resume),
        own_logs=VAE_LOGS,
    )  # fmt: skip
    _check_device(config.train.device)
    model_config = model_config_setting(config.model.config)
    t, o = config.train, config.optim
    size = tuple(config.data.size)
    if size[0] % model_config.vae.downsample_factor or size[1] % model_config.vae.downsample_factor:
        raise TrainConfigError(f"data.size {list(size)} must be multiples of {model_config.vae.downsample_factor}.")
    lock.take(output_dir)  # after the cheap checks, before anything is written or removed there
    remove_abandoned_staging(output_dir, _CHECKPOINT_NAMES)
    if resume_from is not None and restart_note is not None:
        clear_own_logs(output_dir, VAE_LOGS)  # another folder's checkpoint resumed over a run that never saved one
    if restart_note is not None:
        print(restart_note)
    dataset = FrameClips(config.data.root, size, config.data.clip_frames)
    device = _device(t.device)
    vae = build_vae(model_config, config.seed).to(device).train()
    optimizer = torch.optim.AdamW(
        vae.parameters(), lr=o.learning_rate, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay
    )
    if resume_from is not None:
        _load_checkpoint(resume_from, vae, optimizer)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(output_dir / "config.json", config.to_dict())
    log_path = output_dir / "logs" / "vae_log.csv"
    continue_csv_log(log_path, LOG_COLUMNS, start)  # rows up to the resumed step; this run appends
    result = VAETrainResult(output_dir, start, start)
    print(
        f"lvcd train-vae: {sum(p.numel() for p in vae.parameters()):,} parameters, {len(dataset)} clips of "
        f"{config.data.clip_frames} frames at {size[0]}x{size[1]}, steps {start} -> {t.max_steps} on {device}"
        + (f" (resumed from {resume_from})" if resume_from else "")
    )
    from tqdm.auto import tqdm

    batches = _batches(dataset, t.batch_size, config.seed, start, config.data.num_workers)
    bar = tqdm(total=t.max_steps, initial=start, desc="train-vae", unit="step", disable=not progress)
    with log_path.open("a", newline="") as log_file:
        log = csv.DictWriter(log_file, fieldnames=LOG_COLUMNS)
        step = start
        while step < t.max_steps:
            began = time.perf_counter()
            generator = torch.Generator().manual_seed(
                int(np.random.SeedSequence([config.seed, step]).generate_state(1)[0])
            )
            clips = _crop(next(batches), config.data.crop, generator).to(device)  # (B, T, 3, h, w)
            frames = clips.flatten(0, 1)
            lr = o.learning_rate * min(1.0, (step + 1) / o.warmup_steps) if o.warmup_steps else o.learning_rate
            for group in optimizer.param_groups:
                group["lr"] = lr
            mean, logvar = vae.encode_moments(frames)
            eps = torch.randn(mean.shape, generator=generator).to(device)
            recon = vae.decoder(mean + torch.exp(0.5 * logvar) * eps, config.data.clip_frames)
            l1 = (recon - frames).abs().mean()
            mse = (recon - frames).square().mean()
            kl = kl_divergence(mean, logvar)
            loss = t.l1_weight * l1 + t.mse_weight * mse + t.kl_weight * kl
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if o.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(vae.parameters(), o.max_grad_norm)
            optimizer.step()
            step += 1
            # one read of the four losses (each float() of a device tensor waits for the GPU)
            values = dict(zip(("loss", "l1", "mse", "kl"), torch.stack([loss, l1, mse, kl]).tolist(), strict=True))
            result.losses.append(values["loss"])
            bar.update(1)
            bar.set_postfix(l1=f"{values['l1']:.4f}", kl=f"{values['kl']:.3g}")
            if step % config.log.every == 0 or step == t.max_steps:
                row = {name: f"{value:.6g}" for name, value in values.items()}
                log.writerow({"step": step, **row, "lr": f"{lr:.6g}", "seconds": f"{time.perf_counter() - began:.3f}"})
                log_file.flush()
            if step % config.checkpoint.every == 0 or step == t.max_steps:
                result.checkpoint = _save_checkpoint(output_dir, step, vae, optimizer, config.checkpoint.keep)
    bar.close()
    result.step = step
    vae.eval()
    result.scale_factor = measure_scale_factor(vae, _scale_frames(dataset, t.scale_frames), config.seed)
    result.base_path = write_base_file(
        vae.cpu(), model_config, result.scale_factor, config.seed, output_dir / BASE_NAME
    )
    print(f"scale factor {result.scale_factor:.5f} (1 / RMS of the latents); base weights {result.base_path}")
    return result
