"""The LVCD fine-tuning loop: plain PyTorch on accelerate (single device, multi-GPU and multi-node data parallel).

One optimizer step = ``gradient_accumulation_steps`` micro-batches of ``batch_size`` clips per process. Randomness:
the data order comes from ``DistributedSampler`` seeded with ``seed`` (+ epoch), the references from the dataset's
own seed, and sigma/noise of micro-batch ``m`` on process ``r`` from a CPU generator seeded with (seed, r, m). So a
run resumed from a checkpoint repeats exactly what the uninterrupted run would have done.

The parts live beside it: the networks (``networks.py``), the data and noise (``batches.py``), the logs
(``logs.py``), the sampling evaluation (``sample_eval.py``), writing checkpoints (``checkpoint.py``) and reading them
back (``resume.py``).

    >>> result = train(load_train_config("examples/train_config.toml"))   # doctest: +SKIP
    >>> result.losses[-1], result.checkpoint                                # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from lvcd.config import LVCDConfig
from lvcd.model import LVCDModel
from lvcd.train import checkpoint as ckpt
from lvcd.train.batches import build_dataset, check_batch, make_loader, micro_batches, noise_generator, to_device
from lvcd.train.config import TrainConfig, TrainConfigError, config_source
from lvcd.train.ema import WeightAverage
from lvcd.train.logs import RunLoggers
from lvcd.train.loss import build_conditioning, draw_sigma_and_noise
from lvcd.train.networks import TrainingModule, load_training_models, resolve_model_config
from lvcd.train.resume import (
    apply_learning_rate,
    check_accelerate_state,
    check_weights_only_loading,
    load_accelerate_state,
    read_resume_state,
    restore_scheduler,
)
from lvcd.train.run_dir import (
    TRAIN_LOGS,
    RunLock,
    check_run_output_dir,
    clear_own_logs,
    remove_abandoned_staging,
    run_output_path,
)
from lvcd.train.sample_eval import make_evaluator
from lvcd.train.trainable import enable_gradient_checkpointing


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


def _check_model_files(config: TrainConfig) -> None:
    """model.svd is given and is a file, and so is model.lvcd when given: checked first (the model config and
    data.size checks read model.svd; model.lvcd would be found missing only once the encoders were read)."""
    svd, lvcd = config.model.svd, config.model.lvcd
    if not svd:
        raise TrainConfigError(
            "model.svd is required: the path of svd.safetensors (or of a base file of `lvcd train-vae`)."
        )
    if not Path(svd).is_file():
        what = "is a folder" if Path(svd).is_dir() else "does not exist"
        raise TrainConfigError(
            f"model.svd {svd} {what}: give the path of svd.safetensors (or of a base file of `lvcd train-vae`)."
        )
    if lvcd and not Path(lvcd).is_file():
        what = "is a folder" if Path(lvcd).is_dir() else "does not exist"
        raise TrainConfigError(
            f"model.lvcd {lvcd} {what}: give the path of lvcd.ckpt (or a checkpoint's lvcd.safetensors), or leave "
            "model.lvcd out to start the ControlNet from the UNet."
        )


def _check_checkpoint_files(
    accelerator, config: TrainConfig, checkpoint: Path, saved_state: dict, model_config: LVCDConfig
) -> None:
    """Before any model loads: the headers of the checkpoint's weights (their key set against the one this config
    trains), accelerate's optimizer and scaler archives and this process's random states (see
    :mod:`lvcd.train.resume`)."""
    from accelerate.utils import OPTIMIZER_NAME, SCALER_NAME, DistributedType

    weights = ckpt.open_checkpoint_weights(checkpoint / ckpt.WEIGHTS_NAME)
    ckpt.check_trained_key_set(weights, model_config, config.train.trainable)
    if config.train.ema_decay and (checkpoint / ckpt.EMA_NAME).is_file():
        ckpt.open_checkpoint_weights(checkpoint / ckpt.EMA_NAME)
    archives = () if accelerator.distributed_type == DistributedType.FSDP else (f"{OPTIMIZER_NAME}.bin",)
    archives += (SCALER_NAME,) if accelerator.scaler is not None else ()
    saved_processes = saved_state.get("world_size", accelerator.num_processes)
    refused = warning = None
    try:  # each process reads its own RNG file: all stop together, or the others would wait for it forever
        warning = check_accelerate_state(
            checkpoint / ckpt.STATE_DIR, accelerator.process_index, saved_processes, archives
        )
    except ckpt.CheckpointError as err:
        refused = err
    if warning is not None:
        print(warning, file=sys.stderr, flush=True)  # every process has its own file: each says so
    if accelerator.num_processes > 1:
        flag = torch.tensor(float(refused is not None), device=accelerator.device)
        if accelerator.reduce(flag, reduction="max").item() and refused is None:
            refused = ckpt.CheckpointError(
                f"{checkpoint}: another process cannot read its files (its error says which); {ckpt.ANOTHER}."
            )
    if refused is not None:
        raise refused
    if saved_processes != accelerator.num_processes:
        accelerator.print(
            f"warning: {checkpoint} was written by {saved_processes} process(es), this run has "
            f"{accelerator.num_processes}: the data order and the random states differ from the uninterrupted run."
        )


def _warmup_scheduler(optimizer: torch.optim.Optimizer, warmup_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up over ``warmup_steps``, then constant (the official: constant from step 0)."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps else 1.0
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
            check_batch(batch, encoders.config.size_multiple)
        batch = to_device(batch, accelerator.device)
        cond = build_conditioning(encoders, batch)
        generator = noise_generator(config.seed, accelerator.process_index, state.micro_step)
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
    checkpoint. ``dataset`` replaces the config's data root (any map-style dataset with LVCDClipDataset's items).
    output_dir is locked for the run (a second run there is refused)."""
    with RunLock() as lock:
        return _train(config, resume, dataset, progress, lock)


def _train(
    config: TrainConfig, resume: str | Path | None, dataset: Dataset | None, progress: bool, lock: RunLock
) -> TrainResult:
    config = config.validate()
    output_dir = run_output_path(config.output_dir)  # an empty one refused: it would train into the working folder
    _check_model_files(config)
    # --resume latest where no checkpoint was written yet (a run stopped before its first one): start afresh
    restart = resume is not None and str(resume) == "latest" and not ckpt.list_checkpoints(output_dir, None)
    resume_from = ckpt.find_checkpoint(output_dir, resume) if resume is not None and not restart else None
    saved_state, saved_scheduler = read_resume_state(resume_from) if resume_from is not None else ({}, {})
    restart_note = check_run_output_dir(
        output_dir, _run_inputs(config), resume_from, saved_state.get("step", 0), restart=restart
    )
    accelerator = _make_accelerator(config, output_dir)
    from accelerate.utils import DistributedType, set_seed

    if restart_note is not None:
        accelerator.print(restart_note)
    model_config = resolve_model_config(config.model)
    if resume_from is not None:  # every file of the checkpoint, before the slow work
        check_weights_only_loading(accelerator)
        _check_checkpoint_files(accelerator, config, resume_from, saved_state, model_config)
    # a checkpoint folder a killed run was writing: removed (only when it holds lvcd's files alone)
    lock.take(output_dir)  # after the checks, before anything is written or removed there
    remove_abandoned_staging(output_dir, ckpt.STAGED_NAMES, remove=accelerator.is_main_process)
    if resume_from is not None and restart_note is not None and accelerator.is_main_process:
        clear_own_logs(output_dir, TRAIN_LOGS)  # another folder's checkpoint resumed over a run that never saved one
    set_seed(config.seed)
    multiple = model_config.size_multiple
    if dataset is None and any(side % multiple for side in config.data.size):
        raise TrainConfigError(f"data.size {list(config.data.size)}: both sides must be multiples of {multiple}.")
    dataset = dataset if dataset is not None else build_dataset(config)  # reads the root's index: before the models
    # refuses a batch_size larger than this process's share of the data set: before the models load too
    loader, sampler, batches_per_epoch = make_loader(config, dataset, accelerator)

    net, encoders, info = load_training_models(config)
    which = config.train.trainable
    if resume_from is not None:
        ckpt.load_trained_weights(net, resume_from / ckpt.WEIGHTS_NAME, which)
    optimized_names = [name for name, p in net.named_parameters() if p.requires_grad]
    ema = WeightAverage(net, optimized_names, config.train.ema_decay) if config.train.ema_decay else None
    if config.train.gradient_checkpointing:
        enable_gradient_checkpointing(net)
    trainable = [p for p in net.parameters() if p.requires_grad]  # the LVCD set minus the zero-gradient tensors

    tcfg, o = config.train, config.optim
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
        load_accelerate_state(accelerator, resume_from / ckpt.STATE_DIR)  # optimizer, RNG states, grad scaler
        state.load_state_dict(saved_state)
        # the next checkpoint records this run's processes (whose RNG files it writes) and batch size
        state.world_size, state.batch_size = accelerator.num_processes, tcfg.batch_size
        restore_scheduler(scheduler, saved_scheduler)
        if state.batches_per_epoch != batches_per_epoch:
            accelerator.print(
                f"warning: the data layout changed since the checkpoint ({state.batches_per_epoch} -> "
                f"{batches_per_epoch} batches per epoch and process); the data position is approximate."
            )
            state.batches_per_epoch = batches_per_epoch
        previous_lr = apply_learning_rate(optimizer, scheduler, o.learning_rate)
        if previous_lr is not None:
            accelerator.print(
                f"optim.learning_rate: {previous_lr:g} in the checkpoint, {o.learning_rate:g} from now on."
            )
    if ema is not None and resume_from is not None:
        ema_file = resume_from / ckpt.EMA_NAME
        if ema_file.is_file():
            ema.load(ckpt.read_checkpoint_tensors(ckpt.open_checkpoint_weights(ema_file), optimized_names),
                     updates=state.step)  # fmt: skip
        else:
            accelerator.print(
                f"warning: {resume_from} has no {ckpt.EMA_NAME}; the weight average restarts from the weights."
            )
            ema.load({k: v.detach() for k, v in net.named_parameters() if k in set(optimized_names)}, updates=0)

    start_step = state.step
    evaluator = make_evaluator(config, output_dir, start_step) if accelerator.is_main_process else None
    if evaluator is not None and _eval_missing(evaluator, config, start_step):
        # the run that wrote this checkpoint stopped during the step's eval: it runs now, where it would have run
        # (after the checkpoint, before the next step), so the logs equal the uninterrupted run's
        scores = evaluator.run(ema.model if ema is not None else net, accelerator.device, start_step)
        accelerator.print(
            f"eval step {start_step} (missing from the log: the run stopped during it): psnr {scores['psnr']:.2f} dB, "
            f"region {scores['region']:.3f}" + (" (weight average)" if ema is not None else "")
        )
    loggers = RunLoggers(config, output_dir, start_step, enabled=accelerator.is_main_process)
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
    batches = micro_batches(loader, sampler, batches_per_epoch, state.micro_step)
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


def _eval_missing(evaluator, config: TrainConfig, step: int) -> bool:
    """Whether the eval of the resumed checkpoint's ``step`` was due (every eval.every steps, and at the last step)
    but has no row in the eval log."""
    due = step % config.eval.every == 0 or step == config.train.max_steps
    return step > 0 and due and not evaluator.has_row(step)


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
