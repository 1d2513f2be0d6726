"""The accelerate training loop on CPU: it learns, its checkpoints are lvcd.ckpt-compatible, and resuming repeats
the uninterrupted run exactly."""

from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch

from lvcd.train import checkpoint as ckpt
from lvcd.train.logs import read_log
from lvcd.train.loop import train
from lvcd.train.loss import build_conditioning, diffusion_loss
from lvcd.weights import WeightsFile, load_model, lvcd_trained_keys

from .conftest import TINY_CONFIG, SyntheticClips, tiny_train_config

FRAMES = 4  # 1 reference + 3 targets at 64x64: the same code path as 15 frames, a quarter of the cost


def evaluation_loss(net, encoders, dataset, draws: int = 6) -> float:
    """Mean loss over fixed sigmas (spread over the training distribution) and fixed noise."""
    batch = {key: value[None] for key, value in dataset[0].items()}
    cond = build_conditioning(encoders, batch)
    generator = torch.Generator().manual_seed(123)
    total = 0.0
    with torch.no_grad():
        for sigma in torch.logspace(-0.5, 1.0, draws):
            noise = torch.randn((FRAMES, 4, 8, 8), generator=generator)
            total += diffusion_loss(net, batch["latents"], cond, sigma=sigma[None], noise=noise).loss.item()
    return total / draws


@pytest.fixture(scope="module")
def thirty_step_run(tiny_weights, tmp_path_factory):
    """30 steps on ONE synthetic clip, from the official init (ControlNet copied from the UNet)."""
    config = tiny_train_config(tiny_weights, tmp_path_factory.mktemp("run30"), max_steps=30, learning_rate=1e-3)
    config = config.replace(model=dataclasses.replace(config.model, controlnet_from_unet=True))
    config = config.replace(checkpoint=dataclasses.replace(config.checkpoint, every=15, keep=1))
    dataset = SyntheticClips(num_clips=1, num_frames=FRAMES)
    return config, dataset, train(config, dataset=dataset, progress=False)


def test_thirty_steps_lower_the_loss(thirty_step_run, tiny_parts):
    config, dataset, result = thirty_step_run
    net, encoders = tiny_parts
    initial = copy.deepcopy(net)
    from lvcd.train.trainable import init_controlnet_from_unet

    init_controlnet_from_unet(initial, seed=config.seed)
    trained = copy.deepcopy(net)
    ckpt.load_trained_weights(trained, result.checkpoint / ckpt.WEIGHTS_NAME)
    before, after = evaluation_loss(initial, encoders, dataset), evaluation_loss(trained, encoders, dataset)
    print(f"evaluation loss {before:.4f} -> {after:.4f}; training losses {[round(x, 3) for x in result.losses]}")
    assert len(result.losses) == 30 and all(torch.isfinite(torch.tensor(result.losses)))
    assert after < 0.75 * before
    # The training losses fall too (noisy: one random sigma per step).
    assert sum(result.losses[-10:]) < sum(result.losses[:10])


def test_checkpoint_holds_the_lvcd_key_set_and_loads_as_lvcd_weights(thirty_step_run, tiny_weights):
    config, _, result = thirty_step_run
    checkpoints = ckpt.list_checkpoints(config.output_dir)
    assert [step for step, _ in checkpoints] == [30]  # keep = 1 pruned step 15
    folder = result.checkpoint
    assert folder.name == "step_000030" and not list(folder.parent.glob(".*"))  # no staging leftovers
    weights = WeightsFile(folder / ckpt.WEIGHTS_NAME, "lvcd")
    assert weights.kind() == "lvcd"
    model, report = load_model(tiny_weights["svd"], folder / ckpt.WEIGHTS_NAME, config=TINY_CONFIG)
    assert report.ok, report.summary()
    assert sorted(weights.keys()) == sorted(lvcd_trained_keys(model))
    state = model.state_dict()
    assert all(torch.equal(state[key], weights.get(key)) for key in weights.keys())
    assert json.loads((folder / ckpt.TRAIN_STATE_NAME).read_text())["step"] == 30
    assert (folder / ckpt.STATE_DIR / "optimizer.bin").is_file() or (
        folder / ckpt.STATE_DIR / "optimizer.safetensors"
    ).is_file()
    assert not list((folder / ckpt.STATE_DIR).glob("model*"))  # the weights live in lvcd.safetensors only
    log = read_log(config.output_dir)
    assert [row["step"] for row in log] == list(range(1, 31))
    torch.testing.assert_close(
        torch.tensor([row["loss"] for row in log]), torch.tensor(result.losses), rtol=1e-5, atol=0
    )


def test_colorize_pipeline_loads_the_checkpoint(thirty_step_run, tiny_weights):
    import lvcd.pipeline as pipeline_module

    _, _, result = thirty_step_run
    weights = WeightsFile(result.checkpoint / ckpt.WEIGHTS_NAME, "lvcd")
    pipeline = pipeline_module.LVCDPipeline.from_single_file(
        tiny_weights["svd"], result.checkpoint / ckpt.WEIGHTS_NAME, config=TINY_CONFIG, device="cpu"
    )
    state = pipeline.model.state_dict()
    assert all(torch.equal(state[key], weights.get(key)) for key in weights.keys())


def test_resume_repeats_the_uninterrupted_run(tiny_weights, tmp_path):
    """4 steps with a checkpoint at 2 (2 clips per step via accumulation, 3 clips: epochs wrap mid-step), then
    resume from step 2 in a fresh run: steps 3-4 give the same losses and the same weights."""
    dataset = SyntheticClips(num_clips=3, num_frames=FRAMES, seed=1)
    config = tiny_train_config(
        tiny_weights, tmp_path / "run", max_steps=4, gradient_accumulation_steps=2, warmup_steps=3
    )
    config = config.replace(checkpoint=dataclasses.replace(config.checkpoint, every=2))
    full = train(config, dataset=dataset, progress=False)
    assert [step for step, _ in ckpt.list_checkpoints(config.output_dir)] == [2, 4]
    final_weights = WeightsFile(full.checkpoint / ckpt.WEIGHTS_NAME, "lvcd")

    step2 = ckpt.checkpoints_root(config.output_dir) / "step_000002"
    resumed_config = config.replace(output_dir=str(tmp_path / "resumed"))
    resumed = train(resumed_config, resume=step2, dataset=dataset, progress=False)
    assert resumed.start_step == 2 and resumed.step == 4
    print(f"uninterrupted {full.losses}; resumed {resumed.losses}")
    torch.testing.assert_close(torch.tensor(resumed.losses), torch.tensor(full.losses[2:]), rtol=1e-6, atol=0)
    resumed_weights = WeightsFile(resumed.checkpoint / ckpt.WEIGHTS_NAME, "lvcd")
    for key in final_weights.keys():
        torch.testing.assert_close(resumed_weights.get(key), final_weights.get(key), rtol=1e-5, atol=1e-7, msg=key)

    # --resume latest in the same output folder continues after the last checkpoint; the log keeps steps 1-4 once.
    more = train(
        config.replace(train=dataclasses.replace(config.train, max_steps=5)),
        resume="latest",
        dataset=dataset,
        progress=False,
    )
    assert more.start_step == 4 and len(more.losses) == 1
    assert [row["step"] for row in read_log(config.output_dir)] == [1, 2, 3, 4, 5]


def test_max_minutes_stops_cleanly_with_a_checkpoint_and_resume_continues(tiny_weights, tmp_path):
    """A wall-clock limit (cluster jobs, the device machine's 10 minutes): the step in flight finishes, a checkpoint
    is written at that step (not only at multiples of checkpoint.every) and `--resume latest` goes on from it."""
    dataset = SyntheticClips(num_clips=2, num_frames=FRAMES, seed=2)
    config = tiny_train_config(tiny_weights, tmp_path / "run", max_steps=3)
    config = config.replace(
        train=dataclasses.replace(config.train, max_minutes=1e-9),  # past the deadline after the first step
        checkpoint=dataclasses.replace(config.checkpoint, every=100),
    )
    stopped = train(config, dataset=dataset, progress=False)
    assert stopped.stopped_by_time and stopped.step == 1 and len(stopped.losses) == 1
    assert [step for step, _ in ckpt.list_checkpoints(config.output_dir)] == [1]
    assert [row["step"] for row in read_log(config.output_dir)] == [1]
    unlimited = config.replace(train=dataclasses.replace(config.train, max_minutes=None))
    resumed = train(unlimited, resume="latest", dataset=dataset, progress=False)
    assert not resumed.stopped_by_time and (resumed.start_step, resumed.step) == (1, 3)
    assert [step for step, _ in ckpt.list_checkpoints(config.output_dir)] == [1, 3]
    with pytest.raises(Exception, match="train.max_minutes must be > 0"):
        config.replace(train=dataclasses.replace(config.train, max_minutes=0)).validate()


def test_resume_takes_the_configured_learning_rate(tiny_weights, tmp_path):
    """Resuming with another optim.learning_rate (a cool-down) uses it from the next step on; the checkpoint's own
    rate must not silently win."""
    dataset = SyntheticClips(num_clips=2, num_frames=FRAMES, seed=3)
    config = tiny_train_config(tiny_weights, tmp_path / "run", max_steps=2, learning_rate=1e-3)
    train(config, dataset=dataset, progress=False)
    cooler = config.replace(
        train=dataclasses.replace(config.train, max_steps=4),
        optim=dataclasses.replace(config.optim, learning_rate=1e-4),
    )
    train(cooler, resume="latest", dataset=dataset, progress=False)
    rates = {row["step"]: float(row["lr"]) for row in read_log(config.output_dir)}
    assert rates[1] == rates[2] == pytest.approx(1e-3)
    assert rates[3] == rates[4] == pytest.approx(1e-4)
    same = train(cooler.replace(train=dataclasses.replace(cooler.train, max_steps=5)), resume="latest", dataset=dataset,
                 progress=False)  # fmt: skip
    assert same.step == 5 and {row["step"]: float(row["lr"]) for row in read_log(config.output_dir)}[
        5
    ] == pytest.approx(1e-4)


def test_losses_read_in_batches_at_log_steps_are_the_same_losses(tiny_weights, tmp_path):
    """Losses stay on the device between log steps (no host wait per step): every step's loss still reaches the
    result, the log rows carry the loss of their step and the mean seconds per step of their interval."""
    dataset = SyntheticClips(num_clips=2, num_frames=FRAMES, seed=3)
    runs = {}
    for every in (1, 3):
        config = tiny_train_config(tiny_weights, tmp_path / f"every{every}", max_steps=5)
        config = config.replace(log=dataclasses.replace(config.log, every=every))
        runs[every] = (train(config, dataset=dataset, progress=False), read_log(config.output_dir))
    (each, _), (batched, batched_log) = runs[1], runs[3]
    assert len(batched.losses) == 5 and batched.losses == each.losses
    assert [row["step"] for row in batched_log] == [3, 5]  # every 3 steps, and the last
    logged = [float(row["loss"]) for row in batched_log]
    assert logged == pytest.approx([batched.losses[2], batched.losses[4]], rel=1e-5)  # 6 significant digits
    assert all(float(row["seconds"]) > 0 for row in batched_log)


def test_a_skipped_optimizer_step_advances_neither_the_schedule_nor_the_average(tiny_weights, tmp_path, monkeypatch):
    """fp16's GradScaler skips a step whose gradients overflowed (no GPU here: accelerate's flag is stood in for)."""
    import accelerate

    from lvcd.weights import WeightsFile

    monkeypatch.setattr(accelerate.Accelerator, "optimizer_step_was_skipped", property(lambda self: True))
    dataset = SyntheticClips(num_clips=2, num_frames=FRAMES, seed=4)
    config = tiny_train_config(tiny_weights, tmp_path / "run", max_steps=2, ema_decay=0.5, warmup_steps=10)
    result = train(config, dataset=dataset, progress=False)
    averaged = WeightsFile(result.checkpoint / ckpt.EMA_NAME, "lvcd")
    start = WeightsFile(tiny_weights["lvcd"], "lvcd")
    assert all(torch.equal(averaged.get(key), start.get(key)) for key in averaged.keys())  # never averaged in
    learning_rates = [float(row["lr"]) for row in read_log(config.output_dir)]
    assert learning_rates[0] == learning_rates[1] > 0  # the warm-up stays at its first step
