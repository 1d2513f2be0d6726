"""A damaged or crafted checkpoint, config or training input stops `lvcd train` / `lvcd train-vae` with one line that
names the file and what to do, before any model loads where the damage can be seen then; nothing is unpickled that
could run code, and a resume is never silently inexact (accelerate itself skips an RNG file it cannot read)."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from lvcd.errors import InputError, WeightsError
from lvcd.train import checkpoint as ckpt
from lvcd.train.batches import one_line_worker_errors
from lvcd.train.config import TrainConfigError, load_train_config
from lvcd.train.logs import read_log
from lvcd.train.loop import train

from .conftest import SyntheticClips, tiny_train_config


@pytest.fixture(scope="module")
def run(tiny_weights, tmp_path_factory):
    """2 steps with a checkpoint at each, and the weight average (so ema.safetensors is there too)."""
    dataset = SyntheticClips(num_clips=2, num_frames=4, seed=5)
    config = tiny_train_config(tiny_weights, tmp_path_factory.mktemp("damaged") / "run", max_steps=2, ema_decay=0.5)
    config = config.replace(checkpoint=dataclasses.replace(config.checkpoint, every=1))
    train(config, dataset=dataset, progress=False)
    return config, dataset


def _copy(run, tmp_path: Path, step: int = 1) -> Path:
    config, _ = run
    target = tmp_path / "old" / "checkpoints" / ckpt.step_dir_name(step)
    shutil.copytree(ckpt.checkpoints_root(config.output_dir) / ckpt.step_dir_name(step), target)
    return target


def _resume_refused(run, tmp_path: Path, checkpoint: Path, file: Path, *expected: str) -> str:
    config, dataset = run
    with pytest.raises(ckpt.CheckpointError) as refused:
        train(config.replace(output_dir=str(tmp_path / "resumed")), resume=checkpoint, dataset=dataset)
    message = str(refused.value)
    assert message.startswith(str(file)) and "\n" not in message, message
    for text in expected:
        assert text in message, message
    assert not (tmp_path / "resumed").exists()
    return message


def _truncate(path: Path, size: int = 100) -> None:
    path.write_bytes(path.read_bytes()[:size])


RNG = f"{ckpt.STATE_DIR}/random_states_0.pkl"
EXAMPLES = Path(__file__).parents[2] / "examples" / "demo"


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (lambda path: path.unlink(), "is missing"),
        (_truncate, "cannot be read (PytorchStreamReader failed reading zip archive"),
        (lambda path: path.write_bytes(b"not a pickle"), "is damaged (not a torch.save archive, 12 bytes)"),
        (lambda path: path.write_bytes(b"junk"), "cannot be read (unpack requires a buffer of 4 bytes)"),
        (
            lambda path: torch.save({"random_state": (3, (1, 2), None)}, path),
            "does not hold usable random states",
        ),
    ],
    ids=["missing", "truncated", "garbage", "four-bytes", "wrong-content"],
)
def test_an_unusable_rng_file_is_said_and_the_resume_still_repeats_the_run(run, tmp_path, capfd, damage, says):
    """accelerate skips an RNG file it cannot read with a log line only: lvcd says so, one line per process, and
    resumes; its data order, references and noise come from their own seeded generators, so the resumed run's loss
    is the uninterrupted run's (refusing such a checkpoint, as a first version did, lost the run for nothing)."""
    config, dataset = run
    checkpoint = _copy(run, tmp_path)
    damage(checkpoint / RNG)
    resumed = train(config.replace(output_dir=str(tmp_path / "resumed")), resume=checkpoint, dataset=dataset,
                    progress=False)  # fmt: skip
    warned = [line for line in capfd.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and warned[0].startswith(f"warning: {checkpoint / RNG} {says}"), warned
    assert "the global random generators start afresh" in warned[0]
    uninterrupted = [row["loss"] for row in read_log(config.output_dir) if row["step"] == 2]
    assert (resumed.start_step, resumed.step) == (1, 2)
    assert resumed.losses == pytest.approx(uninterrupted, rel=1e-5)  # the log keeps 6 digits


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('{"base_lrs": "x", "last_epoch": 1}', "base_lrs is 'x', not a list of 1"),
        ('{"base_lrs": [0.001], "last_epoch": "1"}', "last_epoch is '1', not a whole number"),
        ('{"base_lrs": [], "last_epoch": 1}', "base_lrs is [], not a list of 1"),
        ('{"base_lrs": [NaN], "last_epoch": 1}', "not a list of 1 (each a finite number)"),
        ('{"base_lrs": [0.001], "last_epoch": -4}', "last_epoch is -4, not a whole number >= 0"),
        ('{"base_lrs": [0.001], "last_epoch": 1, "_step_count": 2.5}', "_step_count is 2.5, not a whole number"),
    ],
)
def test_a_crafted_scheduler_json_is_one_line_before_the_models_load(run, tmp_path, no_model_loading, text, says):
    checkpoint = _copy(run, tmp_path)
    (checkpoint / ckpt.SCHEDULER_NAME).write_text(text)
    _resume_refused(run, tmp_path, checkpoint, checkpoint / ckpt.SCHEDULER_NAME, says, "resume from another")


@pytest.mark.parametrize(
    ("state", "says"),
    [
        ({"step": 1, "micro_step": -5}, "no whole-number micro_step >= 0 (it holds -5)"),
        ({"step": -2}, "no whole-number step >= 0 (it holds -2)"),
        ({"step": 1, "batches_per_epoch": 0}, "no whole-number batches_per_epoch >= 1"),
        ({"step": 7, "micro_step": 7}, "says step 7 but the folder is step_000001"),
    ],
)
def test_a_crafted_train_state_json_is_one_line_before_the_models_load(run, tmp_path, no_model_loading, state, says):
    checkpoint = _copy(run, tmp_path)
    saved = json.loads((checkpoint / ckpt.TRAIN_STATE_NAME).read_text())
    (checkpoint / ckpt.TRAIN_STATE_NAME).write_text(json.dumps({**saved, **state}))
    _resume_refused(run, tmp_path, checkpoint, checkpoint / ckpt.TRAIN_STATE_NAME, says)


@pytest.mark.parametrize(
    ("name", "damage", "says"),
    [
        (f"{ckpt.STATE_DIR}/optimizer.bin", _truncate, "is damaged (File is not a zip file; 100 bytes)"),
        (f"{ckpt.STATE_DIR}/optimizer.bin", lambda path: path.unlink(), "is missing: the checkpoint is incomplete"),
        (ckpt.WEIGHTS_NAME, _truncate, "is damaged (Error while deserializing header"),
        (ckpt.EMA_NAME, _truncate, "is damaged (Error while deserializing header"),
    ],
    ids=["optimizer-truncated", "optimizer-missing", "weights-truncated", "average-truncated"],
)
def test_damaged_checkpoint_files_are_one_line_before_the_models_load(
    run, tmp_path, no_model_loading, name, damage, says
):
    checkpoint = _copy(run, tmp_path)
    damage(checkpoint / name)
    _resume_refused(run, tmp_path, checkpoint, checkpoint / name, says, "resume from another (earlier) checkpoint")


def test_an_optimizer_state_that_does_not_fit_is_one_line(run, tmp_path):
    """Damage inside an intact archive shows only when accelerate loads it (after the models)."""
    checkpoint = _copy(run, tmp_path)
    optimizer = checkpoint / ckpt.STATE_DIR / "optimizer.bin"
    state = torch.load(optimizer, weights_only=True)
    state["param_groups"][0]["params"] = state["param_groups"][0]["params"][:3]
    torch.save(state, optimizer)
    _resume_refused(run, tmp_path, checkpoint, checkpoint / ckpt.STATE_DIR, "does not load into this run (loaded state")


def test_an_incomplete_newest_checkpoint_is_named_by_resume_latest(run, tmp_path, no_model_loading):
    config, dataset = run
    output_dir = tmp_path / "run"
    shutil.copytree(config.output_dir, output_dir)
    newest = ckpt.checkpoints_root(output_dir) / ckpt.step_dir_name(2)
    (newest / ckpt.WEIGHTS_NAME).unlink()
    with pytest.raises(ckpt.CheckpointError) as refused:  # was: "... use --resume latest", which it was
        train(config.replace(output_dir=str(output_dir)), resume="latest", dataset=dataset)
    assert str(refused.value) == (
        f"--resume latest: the newest checkpoint {newest} is incomplete or not this command's (no lvcd.safetensors); "
        f"move it out of {newest.parent}; --resume latest then continues from step_000001."
    )
    with pytest.raises(ckpt.CheckpointError, match=re.escape(f"{newest} is incomplete (no lvcd.safetensors)")):
        train(config.replace(output_dir=str(tmp_path / "elsewhere")), resume=newest, dataset=dataset)


@pytest.mark.parametrize(
    ("override", "says"),
    [
        ("seed=-1", "seed must be between 0 and 2**32 - 1"),
        ("optim.betas=[2.0, 0.5]", "optim.betas must both be >= 0 and < 1"),
        ("optim.eps=-1.0", "optim.eps must be >= 0"),
        ("optim.weight_decay=-0.1", "optim.weight_decay must be >= 0"),
        ("train.p_mean=nan", "train.p_mean: expected a finite number, got nan"),
        ("optim.learning_rate=inf", "optim.learning_rate: expected a finite number, got inf"),
        ("data.size=[0, 0]", "data.size must be positive"),
        ("data.nframe_range=[15, 5]", "data.nframe_range must be [shortest, longest]"),
    ],
)
def test_config_values_that_would_fail_after_the_models_loaded_are_refused_when_read(tmp_path, override, says):
    config_file = tmp_path / "train.toml"
    config_file.write_text('[model]\nsvd = "svd.safetensors"\n[data]\nroot = "data"\n')
    with pytest.raises(TrainConfigError, match=re.escape(says)):
        load_train_config(config_file, [override])


def test_an_unreadable_config_or_model_config_is_one_line(run, tmp_path, no_model_loading):
    config_file = tmp_path / "train.toml"
    config_file.write_bytes(b"\xff\xfe[model]\n")
    with pytest.raises(TrainConfigError, match=r"train.toml is not UTF-8 text .*save it as UTF-8"):
        load_train_config(config_file)
    config, dataset = run
    for value, says in (("nope", "Unknown config 'nope'"), (str(tmp_path / "none.json"), "does not exist")):
        model = dataclasses.replace(config.model, config=value)
        with pytest.raises(TrainConfigError, match=f"model.config '.*': .*{says}"):
            train(config.replace(output_dir=str(tmp_path / "out"), model=model), dataset=dataset)


class _Refusing(Dataset):
    def __len__(self) -> int:
        return 2

    def __getitem__(self, index: int):
        raise InputError(f"Latent file x/{index}.safetensors is unreadable (cut short); delete it, then run it again.")


def test_an_error_in_a_data_loader_worker_stays_one_line():
    """torch re-raises a worker's error with the worker's whole traceback as its message."""
    with pytest.raises(InputError) as refused:
        list(one_line_worker_errors(DataLoader(_Refusing(), num_workers=1)))
    assert str(refused.value) == "Latent file x/0.safetensors is unreadable (cut short); delete it, then run it again."


# ------------------------------------------------------------------------------------------------ train-vae


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory):
    """`lvcd train-vae` on one synthetic shot at 32x32: 2 steps, a checkpoint after each."""
    from lvcd.data.synth_set import write_synthetic_set
    from lvcd.train.vae import VAETrainConfig, train_vae

    base = tmp_path_factory.mktemp("vae")
    write_synthetic_set(base / "synth", shots=1, num_frames=15, size_hw=(32, 32), progress=False)
    overrides = [
        f"output_dir={json.dumps(str(base / 'run'))}", f"data.root={json.dumps(str(base / 'synth'))}",
        "data.size=[32, 32]", "data.crop=16", "train.max_steps=2", "train.batch_size=2", "train.scale_frames=2",
        "checkpoint.every=1", "log.every=1",
    ]  # fmt: skip
    config = load_train_config(EXAMPLES / "vae.toml", overrides, root_cls=VAETrainConfig)
    train_vae(config, progress=False)
    return config


def test_train_vae_refuses_a_damaged_checkpoint_in_one_line(vae_run, tmp_path):
    from lvcd.train.vae import OPTIMIZER_NAME, VAE_WEIGHTS_NAME, train_vae

    checkpoint = tmp_path / ckpt.step_dir_name(1)
    shutil.copytree(ckpt.checkpoints_root(vae_run.output_dir) / ckpt.step_dir_name(1), checkpoint)
    resumed = dataclasses.replace(vae_run, output_dir=str(tmp_path / "resumed"))
    optimizer = checkpoint / OPTIMIZER_NAME
    state = torch.load(optimizer, weights_only=True)
    for name, says in ((VAE_WEIGHTS_NAME, "is damaged (Error while deserializing header"),
                       (OPTIMIZER_NAME, "is damaged (File is not a zip file; 100 bytes)")):  # fmt: skip
        original = (checkpoint / name).read_bytes()
        _truncate(checkpoint / name)
        with pytest.raises(ckpt.CheckpointError) as refused:
            train_vae(resumed, resume=str(checkpoint), progress=False)
        assert str(refused.value).startswith(f"{checkpoint / name} {says}") and "\n" not in str(refused.value)
        assert not (tmp_path / "resumed").exists()  # before anything was written
        (checkpoint / name).write_bytes(original)
    state["param_groups"][0]["params"] = state["param_groups"][0]["params"][:2]  # an intact file of another model
    torch.save(state, optimizer)
    with pytest.raises(ckpt.CheckpointError, match=re.escape(f"{optimizer} does not fit this VAE (loaded state")):
        train_vae(resumed, resume=str(checkpoint), progress=False)
    with pytest.raises(TrainConfigError, match="model.config 'nope': Unknown config"):
        model = dataclasses.replace(vae_run.model, config="nope")
        train_vae(dataclasses.replace(vae_run, output_dir=str(tmp_path / "other"), model=model), progress=False)


def test_a_checkpoint_written_after_a_resume_records_this_runs_processes(run, tmp_path, capfd):
    """A run resumed with another process count wrote the old count into its own checkpoints, so their next resume
    warned about a difference that was not there and skipped the RNG files of the added processes."""
    config, dataset = run
    checkpoint = _copy(run, tmp_path)
    state = json.loads((checkpoint / ckpt.TRAIN_STATE_NAME).read_text())
    (checkpoint / ckpt.TRAIN_STATE_NAME).write_text(json.dumps({**state, "world_size": 2}))
    resumed = train(config.replace(output_dir=str(tmp_path / "resumed")), resume=checkpoint, dataset=dataset,
                    progress=False)  # fmt: skip
    assert "was written by 2 process(es), this run has 1" in capfd.readouterr().out
    written = json.loads((resumed.checkpoint / ckpt.TRAIN_STATE_NAME).read_text())
    assert written["world_size"] == 1 and written["batch_size"] == config.train.batch_size


def test_training_weights_of_another_model_are_one_line(tiny_weights, tmp_path):
    """The message listed every file loaded and ignored over several lines; now one line naming the files, the
    tensors that do not fit (an example of each kind) and what to do."""
    state = torch.load(tiny_weights["lvcd"], map_location="cpu", weights_only=True)
    state = state.get("state_dict", state)
    key = "control_model.input_blocks.0.0.bias"
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {**state, key: torch.zeros(3)}}, other)
    config = tiny_train_config({**tiny_weights, "lvcd": other}, tmp_path / "run")
    with pytest.raises(WeightsError) as refused:
        train(config, dataset=SyntheticClips(num_clips=2, num_frames=4, seed=5), progress=False)
    message = str(refused.value)
    assert "\n" not in message and str(other) in message and "do not fit the 'tiny_config' model" in message
    assert f"shape mismatch {key}: file (3,) vs model (32,)" in message and "model.config" in message
