"""Resuming never runs code from a checkpoint, and a run never damages an input or another run in its output_dir.

A checkpoint's scheduler and train state are JSON (earlier versions: accelerate custom-object pickles, read here
weights-only); a fresh run refuses an output_dir that holds a run, a resumed one an output_dir where its checkpoints
would mix with another run's; no output_dir may be, hold or sit inside an input. Each refusal comes before any model
loads."""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
from pathlib import Path

import pytest
import torch

from lvcd.errors import InputError
from lvcd.train import checkpoint as ckpt
from lvcd.train.config import TrainConfigError, load_train_config
from lvcd.train.logs import read_log
from lvcd.train.loop import train
from lvcd.weights import WeightsFile

from .conftest import TINY_CONFIG, SyntheticClips, tiny_train_config

FRAMES = 4


class _SystemCall:
    """A pickle payload: unpickling it calls os.system (here: creating a marker file)."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.fixture(scope="module")
def full_run(tiny_weights, tmp_path_factory):
    """4 steps with checkpoints at 2 and 4 (accumulation 2 over 3 clips, warm-up 3: the scheduler state matters)."""
    dataset = SyntheticClips(num_clips=3, num_frames=FRAMES, seed=1)
    config = tiny_train_config(
        tiny_weights, tmp_path_factory.mktemp("safety") / "run", max_steps=4, gradient_accumulation_steps=2,
        warmup_steps=3,
    )  # fmt: skip
    config = config.replace(checkpoint=dataclasses.replace(config.checkpoint, every=2))
    return config, dataset, train(config, dataset=dataset, progress=False)


def _copy_checkpoint(full_run, tmp_path: Path, step: int) -> Path:
    config, _, _ = full_run
    source = ckpt.checkpoints_root(config.output_dir) / ckpt.step_dir_name(step)
    target = ckpt.checkpoints_root(tmp_path / "old") / ckpt.step_dir_name(step)
    shutil.copytree(source, target)
    return target


def _make_legacy(checkpoint: Path) -> None:
    """Rewrite a checkpoint as earlier versions wrote it: the scheduler and the train state as accelerate custom
    objects (torch.save of their plain state dicts), no scheduler.json."""
    scheduler_state = json.loads((checkpoint / ckpt.SCHEDULER_NAME).read_text())
    train_state = json.loads((checkpoint / ckpt.TRAIN_STATE_NAME).read_text())
    torch.save(scheduler_state, checkpoint / ckpt.STATE_DIR / "custom_checkpoint_0.pkl")
    torch.save(train_state, checkpoint / ckpt.STATE_DIR / "custom_checkpoint_1.pkl")
    (checkpoint / ckpt.SCHEDULER_NAME).unlink()


def test_checkpoints_hold_no_custom_pickles(full_run):
    config, _, result = full_run
    state_files = sorted(p.name for p in (result.checkpoint / ckpt.STATE_DIR).iterdir())
    assert not [name for name in state_files if name.startswith("custom_checkpoint")], state_files
    assert "optimizer.bin" in state_files
    scheduler_state = json.loads((result.checkpoint / ckpt.SCHEDULER_NAME).read_text())
    assert scheduler_state["last_epoch"] == 4 and scheduler_state["base_lrs"] == [config.optim.learning_rate]
    assert json.loads((result.checkpoint / ckpt.TRAIN_STATE_NAME).read_text())["step"] == 4


@pytest.mark.parametrize("pickle_name", ["custom_checkpoint_0.pkl", "custom_checkpoint_1.pkl"])
def test_a_legacy_checkpoint_whose_pickle_runs_code_is_refused_unrun(full_run, tmp_path, pickle_name, no_model_loading):
    checkpoint = _copy_checkpoint(full_run, tmp_path, 2)
    _make_legacy(checkpoint)
    marker = tmp_path / "payload-ran"
    payload = checkpoint / ckpt.STATE_DIR / pickle_name
    torch.save({"step": 2, "evil": _SystemCall(f"touch {shlex.quote(str(marker))}")}, payload)
    config, dataset, _ = full_run
    with pytest.raises(ckpt.CheckpointError, match="is not a plain checkpoint") as refused:
        train(config.replace(output_dir=str(tmp_path / "resumed")), resume=checkpoint, dataset=dataset)
    assert "could run code" in str(refused.value) and "\n" not in str(refused.value)
    assert not marker.exists()
    assert not (tmp_path / "resumed").exists()  # refused before anything was written
    # The payload is live: the unrestricted load accelerate used to do would have run it.
    torch.load(payload, weights_only=False)
    assert marker.exists()


def test_a_pickle_planted_in_a_new_checkpoint_is_never_read(full_run, tmp_path):
    """accelerate's load_state would unpickle any custom_checkpoint_N.pkl it finds: it never sees one."""
    config, dataset, _ = full_run
    checkpoint = _copy_checkpoint(full_run, tmp_path, 2)
    marker = tmp_path / "payload-ran"
    torch.save(
        _SystemCall(f"touch {shlex.quote(str(marker))}"), checkpoint / ckpt.STATE_DIR / "custom_checkpoint_0.pkl"
    )
    resumed = train(config.replace(output_dir=str(tmp_path / "resumed")), resume=checkpoint, dataset=dataset,
                    progress=False)  # fmt: skip
    assert resumed.step == 4 and not marker.exists()


def test_a_legacy_checkpoint_resumes_exactly(full_run, tmp_path):
    config, dataset, full = full_run
    checkpoint = _copy_checkpoint(full_run, tmp_path, 2)
    _make_legacy(checkpoint)
    resumed = train(config.replace(output_dir=str(tmp_path / "resumed")), resume=checkpoint, dataset=dataset,
                    progress=False)  # fmt: skip
    assert (resumed.start_step, resumed.step) == (2, 4)
    torch.testing.assert_close(torch.tensor(resumed.losses), torch.tensor(full.losses[2:]), rtol=1e-6, atol=0)
    final, again = (WeightsFile(r.checkpoint / ckpt.WEIGHTS_NAME, "lvcd") for r in (full, resumed))
    for key in final.keys():
        torch.testing.assert_close(again.get(key), final.get(key), rtol=1e-5, atol=1e-7, msg=key)
    # what it writes is the new layout
    assert (resumed.checkpoint / ckpt.SCHEDULER_NAME).is_file()
    assert not list((resumed.checkpoint / ckpt.STATE_DIR).glob("custom_checkpoint_*"))
    # the legacy folder is left as it was (accelerate read a view of it without the pickles)
    assert (checkpoint / ckpt.STATE_DIR / "custom_checkpoint_0.pkl").is_file()


def test_resume_state_files_are_checked(full_run, tmp_path, no_model_loading):
    config, dataset, _ = full_run
    resumed = config.replace(output_dir=str(tmp_path / "resumed"))
    checkpoint = _copy_checkpoint(full_run, tmp_path, 2)
    (checkpoint / ckpt.TRAIN_STATE_NAME).write_text('{"step": "2"}')
    with pytest.raises(ckpt.CheckpointError, match="no whole-number step"):
        train(resumed, resume=checkpoint, dataset=dataset)
    (checkpoint / ckpt.SCHEDULER_NAME).unlink()  # and no legacy pickles either
    with pytest.raises(ckpt.CheckpointError, match="is incomplete"):
        train(resumed, resume=checkpoint, dataset=dataset)


def test_resume_refuses_loaders_that_unpickle(full_run, tmp_path, monkeypatch, no_model_loading):
    """accelerate < 1.1 with torch < 2.6 would read optimizer.bin and the RNG states with an unrestricted pickle."""
    import accelerate

    config, dataset, _ = full_run
    checkpoint = _copy_checkpoint(full_run, tmp_path, 2)
    monkeypatch.setattr(accelerate, "__version__", "1.0.1")
    monkeypatch.setattr(torch, "__version__", "2.5.1+cpu")
    with pytest.raises(ckpt.CheckpointError, match=r"accelerate 1\.0\.1 and torch 2\.5\.1\+cpu .*accelerate>=1\.1"):
        train(config.replace(output_dir=str(tmp_path / "resumed")), resume=checkpoint, dataset=dataset)
    monkeypatch.setattr(torch, "__version__", "2.6.0")  # torch.load is weights-only by default from 2.6
    with pytest.raises(AssertionError, match="models were loaded"):
        train(config.replace(output_dir=str(tmp_path / "resumed")), resume=checkpoint, dataset=dataset)


# ------------------------------------------------------------------------------------------------ output_dir


def test_a_fresh_run_refuses_an_output_dir_holding_a_run(full_run, no_model_loading):
    config, dataset, _ = full_run
    log_before = (Path(config.output_dir) / "logs" / "train_log.csv").read_bytes()
    with pytest.raises(TrainConfigError, match="already holds a training run .*--resume latest") as refused:
        train(config.replace(train=dataclasses.replace(config.train, max_steps=1)), dataset=dataset)
    assert "\n" not in str(refused.value)
    assert [step for step, _ in ckpt.list_checkpoints(config.output_dir)] == [2, 4]
    assert (Path(config.output_dir) / "logs" / "train_log.csv").read_bytes() == log_before


def test_a_fresh_run_refuses_the_logs_of_a_run_without_checkpoints(full_run, tmp_path, no_model_loading):
    config, dataset, _ = full_run
    logs = tmp_path / "run" / "logs"
    logs.mkdir(parents=True)
    shutil.copy(Path(config.output_dir) / "logs" / "train_log.csv", logs)
    with pytest.raises(TrainConfigError, match=r"already holds another run \(logs/train_log.csv\)"):
        train(config.replace(output_dir=str(tmp_path / "run")), dataset=dataset)
    # a log holding only its header (a run that stopped before its first step) is no run
    (logs / "train_log.csv").write_text("step,epoch,samples,loss,lr,seconds\n")
    with pytest.raises(AssertionError, match="models were loaded"):  # got past the checks
        train(config.replace(output_dir=str(tmp_path / "run")), dataset=dataset)


def test_resume_refuses_to_mix_with_another_run(full_run, tmp_path, no_model_loading):
    config, dataset, _ = full_run
    step2 = ckpt.checkpoints_root(config.output_dir) / ckpt.step_dir_name(2)
    with pytest.raises(TrainConfigError, match="already holds later checkpoints .*up to step 4"):
        train(config, resume=step2, dataset=dataset)
    elsewhere = _copy_checkpoint(full_run, tmp_path, 2)
    with pytest.raises(TrainConfigError, match="already holds a training run"):
        train(config, resume=elsewhere, dataset=dataset)


def test_output_dir_must_spare_the_inputs(tiny_weights, tmp_path, no_model_loading):
    dataset = SyntheticClips(num_clips=1, num_frames=FRAMES)
    base = tiny_train_config(tiny_weights, tmp_path / "run")
    data_root = tmp_path / "data"
    data_root.mkdir()
    for output_dir, data, message in (
        (data_root, str(data_root), "would write onto or into data.root"),  # is the data root
        (data_root / "runs" / "x", str(data_root), "would write onto or into data.root"),  # inside it
    ):
        config = base.replace(output_dir=str(output_dir), data=dataclasses.replace(base.data, root=data))
        with pytest.raises(InputError, match=message) as refused:
            train(config, dataset=dataset)
        assert "\n" not in str(refused.value) and "output_dir" in str(refused.value)
    # a config file in output_dir: fine beside what the run writes (runs/x/train.json), refused where it writes
    for name, refused_at in (("config.json", "config.json"), ("checkpoints/train.json", "checkpoints")):
        config_file = tmp_path / "exp" / name
        config_file.parent.mkdir(parents=True, exist_ok=True)
        config_file.write_text(json.dumps({
            "output_dir": str(tmp_path / "exp"),
            "model": {"svd": str(tiny_weights["svd"]), "lvcd": str(tiny_weights["lvcd"]), "config": str(TINY_CONFIG)},
        }))  # fmt: skip
        with pytest.raises(InputError, match=rf"--config .*{name}.* lies where this run writes .*{refused_at}"):
            train(load_train_config(config_file), dataset=dataset)


def test_a_config_file_beside_the_run_in_output_dir_is_fine(tiny_weights, tmp_path, no_model_loading):
    """runs/x/train.json with output_dir runs/x (a common layout, and runs made so must resume): the run only adds
    config.json, logs/ and checkpoints/ beside it."""
    from lvcd.train.run_dir import check_run_output_dir

    config_file = tmp_path / "exp" / "train.json"
    config_file.parent.mkdir()
    config_file.write_text("{}")
    weights = tmp_path / "exp" / "base_model.safetensors"
    weights.write_bytes(b"x")
    check_run_output_dir(tmp_path / "exp", {"--config": config_file, "model.svd": weights}, None)


def test_resume_latest_after_a_crash_keeps_each_log_row_once(full_run, tmp_path):
    """A run that stopped after its last checkpoint logged steps past it; resuming cuts the log back to the
    checkpoint's step and appends: every step once, the old rows as they were."""
    config, dataset, _ = full_run
    run = tmp_path / "run"
    shutil.copytree(config.output_dir, run)
    shutil.rmtree(ckpt.checkpoints_root(run) / ckpt.step_dir_name(4))  # as if killed between steps 3-4 and 4's save
    before = (run / "logs" / "train_log.csv").read_text().splitlines()
    resumed = train(config.replace(output_dir=str(run)), resume="latest", dataset=dataset, progress=False)
    assert (resumed.start_step, resumed.step) == (2, 4)
    after = (run / "logs" / "train_log.csv").read_text().splitlines()
    assert [row["step"] for row in read_log(run)] == [1, 2, 3, 4]
    assert after[:3] == before[:3]  # header, steps 1-2 untouched
    assert [p.name for p in (run / "logs").iterdir()] == ["train_log.csv"]  # no temporary left behind
