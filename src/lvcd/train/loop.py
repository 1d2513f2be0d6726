"""The LVCD fine-tuning loop: plain PyTorch on accelerate (single device, multi-GPU and multi-node data parallel).

One optimizer step = ``gradient_accumulation_steps`` micro-batches of ``batch_size`` clips per process. Randomness:
the data order comes from ``DistributedSampler`` seeded with ``seed`` (+ epoch), the references from the dataset's
own seed, and sigma/noise of micro-batch ``m`` on process ``r`` from a CPU generator seeded with (seed, r, m). So a
run resumed from a checkpoint repeats exactly what the uninterrupted run would have done.

    >>> result = train(load_train_config("examples/train_config.toml"))   # doctest: +SKIP
    >>> result.losses[-1], result.checkpoint                                # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import csv
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from lvcd.config import LVCDConfig, get_config
from lvcd.errors import WeightsError
from lvcd.model import PART_PREFIXES, Conditioning, LVCDModel
from lvcd.train import checkpoint as ckpt
from lvcd.train.config import TrainConfig, TrainConfigError, config_source
from lvcd.train.ema import WeightAverage
from lvcd.train.loss import build_conditioning, diffusion_loss, draw_sigma_and_noise
from lvcd.train.run_dir import check_run_output_dir, continue_csv_log
from lvcd.train.trainable import (
    build_from_scratch,
    enable_gradient_checkpointing,
    init_controlnet_from_unet,
    set_trainable,
)
from lvcd.weights import WeightsFile, load_model

BATCH_TENSOR_KEYS = ("latents", "control_hint", "reference", "fps_id", "motion_bucket_id", "cond_aug")
LOG_NAME = "train_log.csv"
LOG_COLUMNS = ("step", "epoch", "samples", "loss", "lr", "seconds")


# ------------------------------------------------------------------------------------------------ models


def resolve_model_config(section) -> LVCDConfig:
    """``model.config`` if given, else the config the ``model.svd`` file carries (our files do), else svd-lvcd."""
    if section.config:
        return get_config(section.config)
    if section.svd and Path(section.svd).is_file():
        carried = WeightsFile(section.svd, "svd").model_config()
        if carried is not None:
            return carried
    return get_config(None)


def load_training_models(config: TrainConfig) -> tuple[LVCDModel, LVCDModel, dict[str, Any]]:
    """(denoiser model: UNet + ControlNet, frozen encoders: CLIP + conditioner VAE encoder, info), fp32 on CPU.

    Without ``model.lvcd`` the ControlNet is initialised from the UNet (official ``init_from_unet``); with it, the
    ControlNet and the UNet attention start from those weights (unless ``controlnet_from_unet = true``). With
    ``model.from_scratch`` both networks start from a seeded random init and ``model.svd`` only gives the encoders.
    """
    section = config.model
    if not section.svd:
        raise TrainConfigError(
            "model.svd is required: the path of svd.safetensors (or of a base file of `lvcd train-vae`)."
        )
    model_config = resolve_model_config(section)
    encoders, _ = load_model(section.svd, None, config=model_config, parts=("clip", "cond_encoder"), strict=True)
    if section.from_scratch:
        net = build_from_scratch(model_config, seed=config.seed)
        info: dict[str, Any] = {"controlnet_init": "random (from scratch)"}
    else:
        from_unet = section.controlnet_from_unet if section.controlnet_from_unet is not None else section.lvcd is None
        net, report = load_model(
            section.svd, section.lvcd, config=model_config, parts=("unet", "controlnet"), strict=False
        )
        allowed = PART_PREFIXES["controlnet"] if section.lvcd is None else None
        missing = [k for k in report.missing if allowed is None or not k.startswith(allowed)]
        if missing or report.unexpected or report.shape_mismatch:
            raise WeightsError(
                f"The training weights do not fit the '{model_config.name}' model.\n{report.summary()}"
                + (f"\n{len(missing)} missing that no init provides: {', '.join(missing[:5])}" if missing else "")
            )
        info = {"controlnet_init": "unet" if from_unet else "weights"}
        if from_unet:
            init_controlnet_from_unet(net, seed=config.seed)
    info["trainable"] = set_trainable(net, config.train.trainable)
    return net, encoders, info


class TrainingModule(nn.Module):
    """What data parallelism wraps: the UNet + ControlNet and the loss (conditioning comes in precomputed)."""

    def __init__(self, net: LVCDModel):
        super().__init__()
        self.net = net

    def forward(self, latents, concat, crossattn, vector, hint, sigma, noise) -> tuple[torch.Tensor, torch.Tensor]:
        out = diffusion_loss(self.net, latents, Conditioning(concat, crossattn, vector, hint), sigma=sigma, noise=noise)
        return out.loss, out.frame_losses


# ------------------------------------------------------------------------------------------------ data


def build_dataset(config: TrainConfig) -> Dataset:
    from lvcd.data.dataset import LVCDClipDataset

    d = config.data
    if not d.root:
        raise TrainConfigError("data.root is required: an LVCD training root (see `lvcd data prepare`).")
    return LVCDClipDataset(d.root, size=d.size, num_frames=d.num_frames, nframe_range=d.nframe_range, seed=config.seed)


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (per-epoch shuffle from ``seed + epoch``, one shard per process) that can start
    ``start_index`` samples into its epoch, so a resumed run skips what was consumed without loading it."""

    start_index = 0

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.start_index :])

    def __len__(self) -> int:
        return self.num_samples - self.start_index


def _micro_batches(
    loader: DataLoader, sampler: ResumableSampler, batches_per_epoch: int, start: int
) -> Iterator[tuple[int, dict]]:
    epoch, offset = divmod(start, batches_per_epoch)
    while True:
        sampler.set_epoch(epoch)
        sampler.start_index = offset * loader.batch_size
        if hasattr(loader.dataset, "set_epoch"):
            loader.dataset.set_epoch(epoch)  # new reference draws per epoch (workers copy the dataset per epoch)
        for batch in loader:
            yield epoch, batch
        epoch, offset = epoch + 1, 0


def _to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    moved = {}
    for key in BATCH_TENSOR_KEYS:
        if key in batch:
            moved[key] = batch[key].to(device, non_blocking=True)
    return moved


def _check_batch(batch: Mapping[str, Any], size_multiple: int) -> None:
    for key in ("latents", "control_hint", "reference"):
        if key not in batch:
            raise TrainConfigError(
                f"Training items need '{key}' (latents, control_hint, reference); this dataset has {sorted(batch)}."
            )
    height, width = batch["control_hint"].shape[-2:]
    if height % size_multiple or width % size_multiple:
        raise TrainConfigError(
            f"Training frames are {height}x{width}; both sides must be multiples of {size_multiple}."
        )


def _make_loader(config: TrainConfig, dataset: Dataset, accelerator) -> tuple[DataLoader, ResumableSampler, int]:
    """This process's loader over its shard; returns (loader, sampler, batches per epoch)."""
    batch_size = config.train.batch_size
    sampler = ResumableSampler(
        dataset,
        num_replicas=accelerator.num_processes,
        rank=accelerator.process_index,
        shuffle=config.data.shuffle,
        seed=config.seed,
    )
    batches_per_epoch = sampler.num_samples // batch_size
    if batches_per_epoch == 0:
        raise TrainConfigError(
            f"The dataset has {len(dataset)} samples: fewer than batch_size {batch_size} x "
            f"{accelerator.num_processes} process(es)."
        )
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=config.data.num_workers,
        drop_last=True,
        pin_memory=accelerator.device.type == "cuda",
    )
    return loader, sampler, batches_per_epoch


def _warmup_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_steps``, then constant (the official: constant from step 0)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
    )


def _apply_learning_rate(optimizer, scheduler, learning_rate: float) -> float | None:
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


def _noise_generator(seed: int, process_index: int, micro_step: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, process_index, micro_step]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & ((1 << 63) - 1))


# ------------------------------------------------------------------------------------------------ logging


class _Loggers:
    """CSV (always readable, cut back to the resumed step, then appended to) and TensorBoard, on the main process
    only."""

    def __init__(self, config: TrainConfig, output_dir: Path, start_step: int, enabled: bool):
        self.csv_path = output_dir / "logs" / LOG_NAME
        self.writer = None
        self.file = None
        if not enabled:
            return
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)
        if "csv" in config.log.trackers:
            continue_csv_log(self.csv_path, LOG_COLUMNS, start_step)
            self.file = self.csv_path.open("a", newline="")
            self.csv = csv.DictWriter(self.file, fieldnames=LOG_COLUMNS)
        if "tensorboard" in config.log.trackers:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                raise TrainConfigError(
                    "log.trackers has 'tensorboard' but it is not installed: pip install 'lvcd[train]'."
                ) from err
            self.writer = SummaryWriter(str(output_dir / "logs" / "tensorboard"), purge_step=start_step + 1)

    def log(self, row: dict[str, Any]) -> None:
        if self.file is not None:
            self.csv.writerow(row)
            self.file.flush()
        if self.writer is not None:
            for key in ("loss", "lr"):
                self.writer.add_scalar(f"train/{key}", row[key], row["step"])

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.writer is not None:
            self.writer.close()


# ------------------------------------------------------------------------------------------------ loop


@dataclass
class TrainResult:
    output_dir: Path
    start_step: int
    step: int
    losses: list[float] = field(
        default_factory=list
    )  # one per optimizer step run here (mean over micro-batches, processes)
    checkpoint: Path | None = None  # the last checkpoint written
    trainable_parameters: int = 0
    is_main_process: bool = True  # False on the other processes of a data-parallel run
    stopped_by_time: bool = False  # train.max_minutes ended the run before max_steps


def _run_inputs(config: TrainConfig) -> dict[str, object]:
    """The files and folders a run reads, by setting name: output_dir must spare them."""
    model = config.model
    return {
        "--config": config_source(config),
        "model.svd": model.svd,
        "model.lvcd": model.lvcd,
        "model.config": model.config if model.config and Path(model.config).exists() else None,  # or a preset name
        "data.root": config.data.root,
    }


def _make_accelerator(config: TrainConfig, output_dir: Path):
    try:
        from accelerate import Accelerator
        from accelerate.utils import ProjectConfiguration
    except ImportError as err:
        raise TrainConfigError("Training needs accelerate: pip install 'lvcd[train]'.") from err
    precision = config.train.mixed_precision
    if precision == "fp16" and not torch.cuda.is_available():
        raise TrainConfigError("train.mixed_precision = 'fp16' needs a GPU; use 'bf16' or 'no' on CPU.")
    return Accelerator(
        mixed_precision=precision,
        project_config=ProjectConfiguration(project_dir=str(output_dir), automatic_checkpoint_naming=False),
    )


def _save_checkpoint(
    accelerator,
    module: nn.Module,
    net: LVCDModel,
    state: ckpt.TrainState,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    config: TrainConfig,
    output_dir: Path,
    ema: WeightAverage | None = None,
) -> Path:
    staging = ckpt.staging_dir(output_dir, state.step)
    final = ckpt.checkpoints_root(output_dir) / ckpt.step_dir_name(state.step)
    if accelerator.is_main_process:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging / ckpt.STATE_DIR))
    full_state = accelerator.get_state_dict(module)  # every process takes part (gathers under FSDP)
    if accelerator.is_main_process:
        which = config.train.trainable
        trained = ckpt.trained_state(full_state, net, prefix="net.", which=which)
        ckpt.save_trained_weights(trained, staging / ckpt.WEIGHTS_NAME, state.step, net.config, which)
        if ema is not None:  # the average of the optimized tensors; the others never change
            averaged = {**trained, **ema.state()}
            ckpt.save_trained_weights(averaged, staging / ckpt.EMA_NAME, state.step, net.config, which)
        ckpt.save_resume_state(staging, state, scheduler)  # JSON: the scheduler and state are not accelerate's
        ckpt.write_json_atomic(staging / "config.json", config.to_dict())
        ckpt.publish(staging, final)
        ckpt.prune_checkpoints(output_dir, config.checkpoint.keep)
    accelerator.wait_for_everyone()
    return final


def _accumulate_gradients(
    accelerator, module: nn.Module, encoders: LVCDModel, batches, state: ckpt.TrainState, config: TrainConfig, p: tuple
) -> torch.Tensor:
    """Forward + backward of ``gradient_accumulation_steps`` micro-batches (gradients synchronised on the last one);
    returns this process's mean loss."""
    accumulation = config.train.gradient_accumulation_steps
    loss_sum = torch.zeros((), device=accelerator.device)
    for micro in range(accumulation):
        epoch, batch = next(batches)
        if state.micro_step == 0 or micro == 0:
            _check_batch(batch, encoders.config.size_multiple)
        batch = _to_device(batch, accelerator.device)
        cond = build_conditioning(encoders, batch)
        generator = _noise_generator(config.seed, accelerator.process_index, state.micro_step)
        sigma, noise = draw_sigma_and_noise(batch["latents"], p[0], p[1], generator)
        last = micro == accumulation - 1
        with contextlib.nullcontext() if last else accelerator.no_sync(module):
            with accelerator.autocast():
                loss, _ = module(batch["latents"], cond.concat, cond.crossattn, cond.vector, cond.hint, sigma, noise)
            accelerator.backward(loss / accumulation)
        loss_sum += loss.detach().float()
        state.micro_step += 1
        state.epoch = epoch
    return loss_sum / accumulation


def train(
    config: TrainConfig,
    resume: str | Path | None = None,
    dataset: Dataset | None = None,
    progress: bool = True,
) -> TrainResult:
    """Fine-tune LVCD as configured; ``resume`` = a checkpoint folder or 'latest'. Returns the losses and the last
    checkpoint. ``dataset`` replaces the config's data root (any map-style dataset with LVCDClipDataset's items)."""
    config = config.validate()
    output_dir = Path(config.output_dir)
    resume_from = ckpt.find_checkpoint(output_dir, resume) if resume is not None else None
    saved_state, saved_scheduler = ckpt.read_resume_state(resume_from) if resume_from is not None else ({}, {})
    check_run_output_dir(output_dir, _run_inputs(config), resume_from, saved_state.get("step", 0))
    accelerator = _make_accelerator(config, output_dir)
    if resume_from is not None:
        ckpt.check_weights_only_loading(accelerator)
    from accelerate.utils import DistributedType, set_seed

    set_seed(config.seed)
    multiple = resolve_model_config(config.model).size_multiple
    if dataset is None and any(side % multiple for side in config.data.size):
        raise TrainConfigError(f"data.size {list(config.data.size)}: both sides must be multiples of {multiple}.")

    net, encoders, info = load_training_models(config)
    which = config.train.trainable
    if resume_from is not None:
        ckpt.load_trained_weights(net, resume_from / ckpt.WEIGHTS_NAME, which)
    optimized_names = [name for name, p in net.named_parameters() if p.requires_grad]
    ema = WeightAverage(net, optimized_names, config.train.ema_decay) if config.train.ema_decay else None
    if config.train.gradient_checkpointing:
        enable_gradient_checkpointing(net)
    trainable = [p for p in net.parameters() if p.requires_grad]  # the LVCD set minus the zero-gradient tensors

    dataset = dataset if dataset is not None else build_dataset(config)
    tcfg, o = config.train, config.optim
    loader, sampler, batches_per_epoch = _make_loader(config, dataset, accelerator)
    optimizer = torch.optim.AdamW(trainable, lr=o.learning_rate, betas=o.betas, eps=o.eps, weight_decay=o.weight_decay)
    scheduler = _warmup_scheduler(optimizer, o.warmup_steps)

    module = TrainingModule(net)
    module, optimizer = accelerator.prepare(module, optimizer)
    encoders.to(accelerator.device)
    if ema is not None:
        ema.model.to(accelerator.device)
    state = ckpt.TrainState(
        batches_per_epoch=batches_per_epoch, world_size=accelerator.num_processes, batch_size=tcfg.batch_size
    )
    # The scheduler is not prepared (prepared schedulers step once per process) and, like the train state, not
    # registered with accelerate: accelerate would save them as pickles and load them without weights_only. Both go
    # to the checkpoint's JSON files (ckpt.save_resume_state) instead.
    if accelerator.distributed_type != DistributedType.FSDP:
        # The weights go to lvcd.safetensors (trained keys only); keep accelerate from writing the whole model.
        accelerator.register_save_state_pre_hook(lambda models, weights, output: weights.clear())
        accelerator.register_load_state_pre_hook(lambda models, input_dir: models.clear())
    if resume_from is not None:
        with ckpt.accelerate_state_view(resume_from / ckpt.STATE_DIR) as state_dir:
            accelerator.load_state(str(state_dir))  # optimizer, RNG states, grad scaler
        state.load_state_dict(saved_state)
        ckpt.restore_scheduler(scheduler, saved_scheduler, resume_from)
        if state.batches_per_epoch != batches_per_epoch:
            accelerator.print(
                f"warning: the data layout changed since the checkpoint ({state.batches_per_epoch} -> {batches_per_epoch} "
                "batches per epoch and process); the data position is approximate."
            )
            state.batches_per_epoch = batches_per_epoch
        previous_lr = _apply_learning_rate(optimizer, scheduler, o.learning_rate)
        if previous_lr is not None:
            accelerator.print(
                f"optim.learning_rate: {previous_lr:g} in the checkpoint, {o.learning_rate:g} from now on."
            )
    if ema is not None and resume_from is not None:
        ema_file = resume_from / ckpt.EMA_NAME
        if ema_file.is_file():
            ema.load({k: WeightsFile(ema_file, "lvcd").get(k) for k in optimized_names}, updates=state.step)
        else:
            accelerator.print(
                f"warning: {resume_from} has no {ckpt.EMA_NAME}; the weight average restarts from the weights."
            )
            ema.load({k: v.detach() for k, v in net.named_parameters() if k in set(optimized_names)}, updates=0)

    start_step = state.step
    evaluator = _make_evaluator(config, output_dir, start_step) if accelerator.is_main_process else None
    loggers = _Loggers(config, output_dir, start_step, enabled=accelerator.is_main_process)
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        ckpt.write_json_atomic(output_dir / "config.json", config.to_dict())
    result = TrainResult(
        output_dir,
        start_step,
        start_step,
        trainable_parameters=sum(p.numel() for p in trainable),
        is_main_process=accelerator.is_main_process,
    )
    accelerator.print(
        f"lvcd train: {len(info['trainable'])} trained tensors ({len(trainable)} optimized, "
        f"{result.trainable_parameters:,} parameters), ControlNet from {info['controlnet_init']}; "
        f"{len(dataset)} samples, {accelerator.num_processes} process(es) x {tcfg.batch_size} clips x "
        f"{tcfg.gradient_accumulation_steps} accumulation; steps {start_step} -> {tcfg.max_steps}"
        + (f" (resumed from {resume_from})" if resume_from is not None else "")
    )

    p_mean = tcfg.p_mean if tcfg.p_mean is not None else net.config.sampling.p_mean
    p_std = tcfg.p_std if tcfg.p_std is not None else net.config.sampling.p_std
    batches = _micro_batches(loader, sampler, batches_per_epoch, state.micro_step)
    bar = None
    if progress and accelerator.is_local_main_process:
        from tqdm.auto import tqdm

        bar = tqdm(total=tcfg.max_steps, initial=start_step, desc="train", unit="step", dynamic_ncols=True)
    deadline = time.monotonic() + 60 * tcfg.max_minutes if tcfg.max_minutes is not None else None
    # Losses stay on the device until read in a batch (at log steps, every step only when a bar shows them): reading
    # one every step would make the host wait for the GPU each step instead of queueing the next.
    pending: list[torch.Tensor] = []
    interval = (time.perf_counter(), state.step)  # when and at which step the current log interval began
    try:
        while state.step < tcfg.max_steps:
            step_loss = _accumulate_gradients(accelerator, module, encoders, batches, state, config, (p_mean, p_std))
            if o.max_grad_norm is not None:
                accelerator.clip_grad_norm_(trainable, o.max_grad_norm)
            lr = optimizer.param_groups[0]["lr"]
            optimizer.step()
            # fp16: a step whose gradients overflowed changed no weight (the GradScaler skipped it): the schedule and
            # the average do not advance either
            skipped = accelerator.optimizer_step_was_skipped
            if not skipped:
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            state.step += 1
            if ema is not None and not skipped:
                ema.update(net)

            pending.append(accelerator.reduce(step_loss.detach(), reduction="mean"))
            result.step = state.step
            out_of_time = deadline is not None and _past(accelerator, deadline)
            last = state.step == tcfg.max_steps or out_of_time
            log_now = state.step % config.log.every == 0 or last
            if bar is not None or log_now:
                step_loss = _read_losses(accelerator, pending, state.step, result.losses)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{step_loss:.4f}", epoch=state.epoch)
            if log_now:
                samples = state.micro_step * tcfg.batch_size * accelerator.num_processes
                seconds = (time.perf_counter() - interval[0]) / (state.step - interval[1])
                loggers.log(
                    {
                        "step": state.step,
                        "epoch": state.epoch,
                        "samples": samples,
                        "loss": f"{step_loss:.6g}",
                        "lr": f"{lr:.6g}",
                        "seconds": f"{seconds:.3f}",  # per step, over the steps since the last log
                    }  # fmt: skip
                )
                interval = (time.perf_counter(), state.step)
            if state.step % config.checkpoint.every == 0 or last:
                result.checkpoint = _save_checkpoint(
                    accelerator, module, net, state, scheduler, config, output_dir, ema
                )
            if evaluator is not None and (state.step % config.eval.every == 0 or last):
                scores = evaluator.run(ema.model if ema is not None else net, accelerator.device, state.step)
                accelerator.print(
                    f"eval step {state.step}: psnr {scores['psnr']:.2f} dB, region {scores['region']:.3f}"
                    + (" (weight average)" if ema is not None else "")
                )
            if out_of_time:
                result.stopped_by_time = True
                accelerator.print(
                    f"lvcd train: train.max_minutes ({tcfg.max_minutes:g}) reached at step {state.step}; checkpoint "
                    f"{result.checkpoint}. Continue with --resume latest."
                )
                break
    finally:
        if bar is not None:
            bar.close()
        loggers.close()
    accelerator.end_training()
    return result


def _read_losses(accelerator, pending: list[torch.Tensor], step: int, losses: list[float]) -> float:
    """Move the device-side losses of the steps up to ``step`` into ``losses`` (one read); returns the last one."""
    values = torch.stack(pending).tolist()
    pending.clear()
    for offset, value in enumerate(values):
        if not math.isfinite(value):
            accelerator.print(f"warning: non-finite loss {value} at step {step - len(values) + 1 + offset}")
    losses.extend(values)
    return values[-1]


def _past(accelerator, deadline: float) -> bool:
    """Whether any process is past ``deadline`` (all processes then stop at the same step)."""
    past = time.monotonic() >= deadline
    if accelerator.num_processes == 1:
        return past
    flag = torch.tensor(float(past), device=accelerator.device)
    return bool(accelerator.reduce(flag, reduction="max").item())


class _Evaluation:
    """The sampling evaluation of ``[eval]`` with what it needs loaded once: the VAE and the frozen encoders."""

    def __init__(self, config: TrainConfig, output_dir: Path, start_step: int):
        from lvcd.train.sample_eval import SampleEvaluator

        model_config = resolve_model_config(config.model)
        self.parts, _ = load_model(
            config.model.svd, None, config=model_config, parts=("clip", "cond_encoder", "first_stage"), strict=True
        )
        self.evaluator = SampleEvaluator(config.eval, tuple(config.data.size), output_dir, start_step)

    def run(self, net: LVCDModel, device: torch.device, step: int) -> dict[str, float]:
        self.parts.to(device)
        was_training = net.training
        net.eval()
        try:
            return self.evaluator(LVCDModel.from_parts(net, self.parts), device, step)
        finally:
            net.train(was_training)  # the net holds only the UNet and ControlNet, which set_trainable puts in train


def _make_evaluator(config: TrainConfig, output_dir: Path, start_step: int) -> _Evaluation | None:
    return _Evaluation(config, output_dir, start_step) if config.eval.every > 0 else None


def read_log(output_dir: str | Path) -> list[dict[str, float]]:
    """The CSV log of a run as numbers."""
    with (Path(output_dir) / "logs" / LOG_NAME).open(newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
