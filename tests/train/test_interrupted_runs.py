"""A run stopped before its first checkpoint, or during the eval of a checkpoint step, goes on correctly; a resume
with another train.trainable, a missing model.svd and bad train-vae settings are refused before any slow work."""

from __future__ import annotations

import csv
import dataclasses
import shutil
from pathlib import Path

import pytest
import torch

from lvcd.errors import WeightsError
from lvcd.train import checkpoint as ckpt
from lvcd.train import loop
from lvcd.train.config import EvalSection, TrainConfigError
from lvcd.train.loop import train
from lvcd.train.vae import VAETrainConfig, train_vae

from .conftest import TINY_CONFIG, SyntheticClips, tiny_train_config

FRAMES = 4


def rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def eval_run(tiny_weights, tmp_path_factory):
    """4 steps, a checkpoint and an eval every 2."""
    dataset = SyntheticClips(num_clips=3, num_frames=FRAMES, seed=1)
    config = tiny_train_config(tiny_weights, tmp_path_factory.mktemp("interrupted") / "ref", max_steps=4)
    config = config.replace(
        checkpoint=dataclasses.replace(config.checkpoint, every=2),
        eval=EvalSection(every=2, shots=1, frames=15, steps=1),
    )
    return config, dataset, train(config, dataset=dataset, progress=False)


def test_a_run_stopped_during_a_checkpoint_steps_eval_evaluates_it_on_resume(eval_run, tmp_path):
    config, dataset, _ = eval_run
    reference = Path(config.output_dir)
    assert [row["step"] for row in rows(reference / "logs" / "eval_log.csv")] == ["2", "4"]
    # what a run killed during the eval of step 2 leaves: checkpoint 2, train rows to 2, no eval row for 2
    stopped = tmp_path / "stopped"
    shutil.copytree(reference / "checkpoints" / "step_000002", stopped / "checkpoints" / "step_000002")
    shutil.copytree(reference / "logs", stopped / "logs")
    (stopped / "logs" / "eval_log.csv").write_text((reference / "logs" / "eval_log.csv").read_text().splitlines()[0])
    train(config.replace(output_dir=str(stopped)), resume="latest", dataset=dataset, progress=False)
    for name in ("eval_log.csv",):
        assert rows(stopped / "logs" / name) == rows(reference / "logs" / name)
    assert [row["loss"] for row in rows(stopped / "logs" / "train_log.csv")] == [
        row["loss"] for row in rows(reference / "logs" / "train_log.csv")
    ]


def test_a_run_stopped_before_its_first_checkpoint_starts_over_with_resume_latest(eval_run, tmp_path, capsys):
    config, dataset, _ = eval_run
    reference = Path(config.output_dir)
    # what a run killed while writing its first checkpoint leaves: logs and the hidden staging folder
    stopped = tmp_path / "stopped"
    shutil.copytree(reference / "logs", stopped / "logs")
    (stopped / "config.json").write_text("{}")
    staging = ckpt.staging_dir(stopped, 2)
    shutil.copytree(reference / "checkpoints" / "step_000002", staging)
    run = config.replace(output_dir=str(stopped))
    with pytest.raises(TrainConfigError, match=r"wrote no checkpoint.*--resume latest") as refused:
        train(run, dataset=dataset, progress=False)  # a fresh run would overwrite its logs
    assert "\n" not in str(refused.value) and staging.is_dir()

    (staging / "notes.txt").write_text("mine")  # a staging folder holding a file lvcd did not write: refused
    with pytest.raises(TrainConfigError, match="notes.txt, which lvcd did not write"):
        train(run, resume="latest", dataset=dataset, progress=False)
    (staging / "notes.txt").unlink()

    capsys.readouterr()
    train(run, resume="latest", dataset=dataset, progress=False)
    said = capsys.readouterr().out
    assert "--resume latest: no checkpoint under" in said and "starting afresh from step 0" in said
    assert not staging.exists()
    assert rows(stopped / "logs" / "eval_log.csv") == rows(reference / "logs" / "eval_log.csv")
    assert [row["loss"] for row in rows(stopped / "logs" / "train_log.csv")] == [
        row["loss"] for row in rows(reference / "logs" / "train_log.csv")
    ]


def test_resume_with_another_trainable_set_is_refused_before_models_load(eval_run, tmp_path, no_model_loading):
    config, dataset, _ = eval_run
    checkpoint = ckpt.checkpoints_root(config.output_dir) / ckpt.step_dir_name(2)
    other = config.replace(output_dir=str(tmp_path / "all"), train=dataclasses.replace(config.train, trainable="all"))
    with pytest.raises(WeightsError, match="does not hold the trained key set 'all'") as refused:
        train(other, resume=checkpoint, dataset=dataset, progress=False)
    assert "\n" not in str(refused.value) and "train.trainable = 'lvcd'" in str(refused.value)


def test_a_missing_svd_file_is_said_first(tiny_weights, tmp_path):
    config = tiny_train_config(tiny_weights, tmp_path / "run")
    config = config.replace(
        model=dataclasses.replace(config.model, svd=str(tmp_path / "nope.safetensors"), config=None),
        data=dataclasses.replace(config.data, size=(32, 32)),
    )
    with pytest.raises(TrainConfigError, match=r"model\.svd .*nope\.safetensors does not exist"):
        train(config, progress=False)


def test_the_interruption_message_says_how_to_go_on(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from lvcd.cli import app

    def interrupted(config, resume=None, progress=True):
        raise KeyboardInterrupt

    monkeypatch.setattr(loop, "train", interrupted)
    config_file = tmp_path / "train.toml"
    config_file.write_text(f'output_dir = "{tmp_path / "run"}"\n[model]\nsvd = "x"\n[data]\nroot = "{tmp_path}"\n')
    before = CliRunner().invoke(app, ["train", "--config", str(config_file)])
    assert before.exit_code == 130, before.output
    assert "before the first checkpoint" in before.output and "--resume latest to start the run over" in before.output
    (tmp_path / "run" / "checkpoints" / "step_000006").mkdir(parents=True)
    (tmp_path / "run" / "checkpoints" / "step_000006" / ckpt.WEIGHTS_NAME).write_bytes(b"")
    after = CliRunner().invoke(app, ["train", "--config", str(config_file)])
    assert after.exit_code == 130 and "--resume latest to continue from its checkpoint of step 6" in after.output


def vae_config(tmp_path, **train) -> VAETrainConfig:
    config = VAETrainConfig(output_dir=str(tmp_path / "vae"))
    return dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, config=str(TINY_CONFIG)),
        data=dataclasses.replace(config.data, root=str(tmp_path / "no-root")),
        train=dataclasses.replace(config.train, **train),
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_train_vae_refuses_an_absent_cuda_device_before_reading_data(tmp_path):
    with pytest.raises(TrainConfigError, match="train.device cuda: .*no CUDA device") as refused:
        train_vae(vae_config(tmp_path, device="cuda"), progress=False)
    assert "\n" not in str(refused.value) and not (tmp_path / "vae").exists()


def test_train_vae_refuses_negative_workers_before_writing(tmp_path):
    config = vae_config(tmp_path)
    config = dataclasses.replace(config, data=dataclasses.replace(config.data, num_workers=-1))
    with pytest.raises(TrainConfigError, match="data.num_workers must be >= 0"):
        train_vae(config, progress=False)
    assert not (tmp_path / "vae").exists()


_HOLD_RUN_LOCK = """
import sys, time
from lvcd.train.run_dir import RunLock
with RunLock() as lock:
    lock.take(sys.argv[1])
    print("holding", flush=True)
    time.sleep(60)
"""


def test_a_second_run_on_a_live_runs_output_dir_is_refused_and_touches_nothing(eval_run, tmp_path):
    """A requeue or a second terminal while a run writes its checkpoint: the second start deleted the staging folder
    the live run was writing (it then died with a FileNotFoundError). The live run's lock refuses it in one line."""
    import subprocess
    import sys

    config, dataset, _ = eval_run
    live = tmp_path / "live"
    shutil.copytree(Path(config.output_dir) / "logs", live / "logs")
    staging = ckpt.staging_dir(live, 2)
    shutil.copytree(Path(config.output_dir) / "checkpoints" / "step_000002", staging)
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_RUN_LOCK, str(live)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(
            TrainConfigError, match=rf"output_dir {live} is in use by a running run \(pid {holder.pid}\)"
        ):
            train(config.replace(output_dir=str(live)), resume="latest", dataset=dataset, progress=False)
        assert staging.is_dir() and sorted(p.name for p in staging.iterdir())  # the live run's checkpoint, untouched
    finally:
        holder.kill()
        holder.wait()


def test_a_run_refused_after_locking_a_folder_it_made_leaves_no_folder(eval_run, tmp_path, monkeypatch):
    config, dataset, _ = eval_run

    def refuse(*args, **kwargs):
        raise TrainConfigError("refused once the lock is held")

    monkeypatch.setattr(loop, "load_training_models", refuse)  # the first step after the lock
    fresh = tmp_path / "fresh"
    with pytest.raises(TrainConfigError, match="refused once the lock is held"):
        train(config.replace(output_dir=str(fresh)), dataset=dataset, progress=False)
    assert not fresh.exists()


def test_resuming_another_folders_checkpoint_over_a_run_without_one_replaces_its_logs(eval_run, tmp_path):
    """The message said the logs "are replaced", but their rows up to the resumed step stayed, mixed with the resumed
    run's (found by review: the old rows of loss 999 stayed before rows 3 and 4)."""
    config, dataset, _ = eval_run
    reference = Path(config.output_dir)
    target = tmp_path / "target"
    (target / "logs").mkdir(parents=True)
    log = (reference / "logs" / "train_log.csv").read_text().splitlines()
    header, columns = log[0], log[0].split(",")
    stale = [",".join("999" if c == "loss" else ("1" if c == "step" else "0") for c in columns)]
    (target / "logs" / "train_log.csv").write_text("\n".join([header, *stale]) + "\n")
    checkpoint = ckpt.checkpoints_root(reference) / ckpt.step_dir_name(2)
    train(config.replace(output_dir=str(target)), resume=checkpoint, dataset=dataset, progress=False)
    resumed = rows(target / "logs" / "train_log.csv")
    assert [row["step"] for row in resumed] == ["3", "4"] and "999" not in {row["loss"] for row in resumed}


@pytest.mark.parametrize("at", ["between", "after"])
def test_a_checkpoint_save_killed_while_replacing_its_step_is_recovered_on_resume(tmp_path, at):
    """A run saving a step folder that already exists, killed between the two moves, left the old folder hidden as
    .step_N.replaced-XXXX and step_N missing: --resume latest went back to an older checkpoint and the hidden copy
    stayed for good. The old folder is now moved back first (a warning says so); killed after the moves, the new one
    is kept and the old one deleted."""
    from lvcd.testing.faults import killed_replacing

    needed = (ckpt.WEIGHTS_NAME, ckpt.TRAIN_STATE_NAME, ckpt.STATE_DIR)
    root = ckpt.checkpoints_root(tmp_path)

    def checkpoint(folder: Path, text: str) -> Path:
        (folder / ckpt.STATE_DIR).mkdir(parents=True)
        for name in needed[:2]:
            (folder / name).write_text(text)
        return folder

    checkpoint(root / ckpt.step_dir_name(50), "older")
    final = checkpoint(root / ckpt.step_dir_name(100), "old")
    staging = checkpoint(ckpt.staging_dir(tmp_path, 100), "new")
    killed_replacing(lambda: ckpt.publish(staging, final), at)
    if at == "between":
        assert not final.exists()
        with pytest.warns(UserWarning, match=r"step_000100: an earlier replacement of it .* was interrupted"):
            assert ckpt.find_checkpoint(tmp_path, "latest") == final
        assert (final / ckpt.WEIGHTS_NAME).read_text() == "old"
        assert [p.name for p in root.iterdir() if p.name.startswith(".")] == [staging.name]  # removed at the start
    else:
        assert ckpt.find_checkpoint(tmp_path, "latest") == final and (final / ckpt.WEIGHTS_NAME).read_text() == "new"
        assert [p.name for p in root.iterdir() if p.name.startswith(".")] == []
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == ["step_000050", "step_000100"]


def test_a_save_over_a_step_a_killed_save_left_moved_aside_replaces_it_and_leaves_nothing_hidden(tmp_path):
    from lvcd.testing.faults import killed_replacing

    root = ckpt.checkpoints_root(tmp_path)
    final = root / ckpt.step_dir_name(100)
    final.mkdir(parents=True)
    (final / ckpt.WEIGHTS_NAME).write_text("old")
    staging = ckpt.staging_dir(tmp_path, 100)

    def save(text: str) -> None:
        staging.mkdir()
        (staging / ckpt.WEIGHTS_NAME).write_text(text)
        ckpt.publish(staging, final)

    killed_replacing(lambda: save("killed"), "between")
    shutil.rmtree(staging)  # as the next run's start does (remove_abandoned_staging)
    with pytest.warns(UserWarning, match="moved back"):
        save("new")
    assert (final / ckpt.WEIGHTS_NAME).read_text() == "new" and [p.name for p in root.iterdir()] == [final.name]
