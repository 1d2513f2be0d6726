"""A run never deletes or overwrites what the user put in its folders, and a damaged log is one line.

Pruning deletes only what lvcd writes into a checkpoint (a folder holding other files keeps them and is said once);
output_dir must be new, empty, hold only the run's inputs, or be an lvcd run directory (of this version or an earlier
one, without the lock), never inside a checkpoint, never empty; a log row without a whole-number step is refused in
one line before any model loads."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from lvcd.train import checkpoint as ckpt
from lvcd.train.config import TrainConfigError
from lvcd.train.loop import train
from lvcd.train.run_dir import RUN_LOCK, continue_csv_log
from lvcd.train.vae import OPTIMIZER_NAME, STATE_NAME, VAE_WEIGHTS_NAME, VAETrainConfig, train_vae

from .conftest import TINY_CONFIG, SyntheticClips, tiny_train_config

FRAMES = 4


@pytest.fixture(scope="module")
def short_run(tiny_weights, tmp_path_factory):
    """2 steps, a checkpoint after each, keep 2."""
    dataset = SyntheticClips(num_clips=2, num_frames=FRAMES, seed=3)
    config = tiny_train_config(tiny_weights, tmp_path_factory.mktemp("dirs") / "run", max_steps=2)
    config = config.replace(checkpoint=dataclasses.replace(config.checkpoint, every=1, keep=2))
    train(config, dataset=dataset, progress=False)
    return config, dataset


def _copy_run(short_run, tmp_path: Path):
    config, dataset = short_run
    run = tmp_path / "run"
    shutil.copytree(config.output_dir, run)
    return config.replace(output_dir=str(run)), dataset, run


def _files(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*") if path.is_file())


# ------------------------------------------------------------------------------------------------ pruning


def test_pruning_keeps_the_users_files_in_a_checkpoint_folder(short_run, tmp_path, capsys):
    config, dataset, run = _copy_run(short_run, tmp_path)
    step1 = ckpt.checkpoints_root(run) / ckpt.step_dir_name(1)
    (step1 / "my_eval_notes.txt").write_text("good colours")
    (step1 / "samples").mkdir()
    (step1 / "samples" / "shot.png").write_bytes(b"png")
    capsys.readouterr()
    longer = config.replace(train=dataclasses.replace(config.train, max_steps=4))
    resumed = train(longer, resume="latest", dataset=dataset, progress=False)
    assert (resumed.start_step, resumed.step) == (2, 4)
    assert _files(step1) == ["my_eval_notes.txt", "samples/shot.png"]  # lvcd's files gone, the user's kept
    assert (step1 / "my_eval_notes.txt").read_text() == "good colours"
    assert not (ckpt.checkpoints_root(run) / ckpt.step_dir_name(2)).exists()  # lvcd's alone: the folder went
    assert [step for step, _ in ckpt.list_checkpoints(run)] == [3, 4]
    note = [line for line in capsys.readouterr().err.splitlines() if str(step1) in line]
    assert len(note) == 1 and "my_eval_notes.txt" in note[0] and "kept" in note[0]
    # the folder left is no checkpoint: later prunes and --resume latest pass it by, and it is not said again
    resumed = train(longer.replace(train=dataclasses.replace(longer.train, max_steps=5)), resume="latest",
                    dataset=dataset, progress=False)  # fmt: skip
    assert (resumed.start_step, resumed.step) == (4, 5)
    assert [step for step, _ in ckpt.list_checkpoints(run)] == [4, 5]
    assert _files(step1) == ["my_eval_notes.txt", "samples/shot.png"]
    assert str(step1) not in capsys.readouterr().err


def _fake_checkpoint(root: Path, step: int, names: list[str]) -> Path:
    folder = ckpt.checkpoints_root(root) / ckpt.step_dir_name(step)
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"x")
    return folder


def test_pruning_removes_exactly_lvcds_names(tmp_path, capsys):
    """The train command's files and accelerate's state/ (a temporary of one included) go; a user's file in state/
    stays with the state/ folder; train-vae's checkpoints prune with their own names."""
    lvcd_files = [ckpt.WEIGHTS_NAME, ckpt.EMA_NAME, ckpt.TRAIN_STATE_NAME, ckpt.SCHEDULER_NAME, "config.json",
                  "state/optimizer.bin", "state/random_states_0.pkl", "state/scaler.pt", "state/custom_checkpoint_0.pkl",
                  "state/.optimizer.bin.partial-0123abcd.bin"]  # fmt: skip
    plain = _fake_checkpoint(tmp_path, 1, lvcd_files)
    user = _fake_checkpoint(tmp_path, 2, [*lvcd_files, "state/mine.txt", "lvcd.safetensors.bak"])
    _fake_checkpoint(tmp_path, 3, lvcd_files)
    removed = ckpt.prune_checkpoints(tmp_path, keep=1)
    assert removed == [plain] and not plain.exists()
    assert _files(user) == ["lvcd.safetensors.bak", "state/mine.txt"]
    assert "lvcd.safetensors.bak and 1 other entry" in capsys.readouterr().err

    vae_root = tmp_path / "vae"
    vae_names = (VAE_WEIGHTS_NAME, OPTIMIZER_NAME, STATE_NAME)
    kept = _fake_checkpoint(vae_root, 1, [*vae_names, "notes.txt"])
    _fake_checkpoint(vae_root, 2, list(vae_names))
    ckpt.prune_checkpoints(vae_root, keep=1, weights_name=VAE_WEIGHTS_NAME, own_names=vae_names)
    assert _files(kept) == ["notes.txt"]
    assert [step for step, _ in ckpt.list_checkpoints(vae_root, VAE_WEIGHTS_NAME)] == [2]


# ------------------------------------------------------------------------------------------------ output_dir


def test_a_folder_of_the_users_files_is_refused_and_untouched(short_run, tmp_path, no_model_loading):
    config, dataset = short_run
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "config.json").write_text('{"mine": true}')
    (folder / "notes.txt").write_text("notes")
    with pytest.raises(
        TrainConfigError,
        match=r"not an lvcd run directory and holds config.json \(which the run would replace.*\) and 1 other entry",
    ) as refused:
        train(config.replace(output_dir=str(folder)), dataset=dataset)
    assert "\n" not in str(refused.value)
    assert _files(folder) == ["config.json", "notes.txt"] and (folder / "config.json").read_text() == '{"mine": true}'
    # an empty folder is fine
    (folder / "config.json").unlink()
    (folder / "notes.txt").unlink()
    with pytest.raises(AssertionError, match="models were loaded"):
        train(config.replace(output_dir=str(folder)), dataset=dataset)


def test_train_vae_refuses_a_folder_of_the_users_files(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    config = VAETrainConfig(output_dir=str(folder))
    config = dataclasses.replace(
        config,
        model=dataclasses.replace(config.model, config=str(TINY_CONFIG)),
        data=dataclasses.replace(config.data, root=str(tmp_path / "no-root")),
    )
    with pytest.raises(TrainConfigError, match="not an lvcd run directory"):
        train_vae(config, progress=False)
    assert _files(folder) == ["config.json"]
    with pytest.raises(TrainConfigError, match="output_dir is empty"):
        train_vae(dataclasses.replace(config, output_dir=""), progress=False)


def test_output_dir_inside_a_checkpoint_or_empty_is_refused(short_run, tmp_path, no_model_loading, monkeypatch):
    config, dataset = short_run
    root = ckpt.checkpoints_root(config.output_dir)
    step2 = root / ckpt.step_dir_name(2)
    before = _files(step2)
    for output_dir, message in (
        (step2, "inside the checkpoint folder"),
        (step2 / "new", "inside the checkpoint folder"),
        (root, "the checkpoints folder of the run"),
        (root / "other", "the checkpoints folder of the run"),
    ):
        with pytest.raises(TrainConfigError, match=message) as refused:
            train(config.replace(output_dir=str(output_dir)), dataset=dataset)
        assert "\n" not in str(refused.value)
    assert _files(step2) == before and not (step2 / "new").exists() and not (root / "other").exists()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TrainConfigError, match="output_dir is empty"):
        train(config.replace(output_dir=""), dataset=dataset)
    assert list(tmp_path.iterdir()) == []


def test_a_run_dir_of_an_earlier_version_and_a_users_note_in_a_run_dir_still_resume(
    short_run, tmp_path, no_model_loading
):
    """Runs made before the lock file existed are run directories by their logs and checkpoints."""
    config, dataset, run = _copy_run(short_run, tmp_path)
    (run / RUN_LOCK).unlink(missing_ok=True)
    (run / "notes.txt").write_text("my notes")
    with pytest.raises(AssertionError, match="models were loaded"):  # got past the checks
        train(config, resume="latest", dataset=dataset)


# ------------------------------------------------------------------------------------------------ damaged logs


def test_a_malformed_log_row_is_one_line_before_models_load(short_run, tmp_path, no_model_loading):
    config, dataset, run = _copy_run(short_run, tmp_path)
    log = run / "logs" / "train_log.csv"
    lines = log.read_text().splitlines()
    lines[2] = "two," + lines[2].split(",", 1)[1]
    log.write_text("\n".join(lines) + "\n")
    with pytest.raises(TrainConfigError, match=r"train_log.csv line 3: the step 'two' .*fix or delete") as refused:
        train(config, resume="latest", dataset=dataset)
    assert "\n" not in str(refused.value)


def test_a_restart_replaces_a_damaged_log(tmp_path):
    """--resume latest without a checkpoint starts from step 0: the old rows are dropped unread."""
    log = tmp_path / "train_log.csv"
    log.write_text("step,loss\n1,0.5\nbroken,0.4\n")
    continue_csv_log(log, ("step", "loss"), 0)
    assert log.read_text().splitlines() == ["step,loss"]
    log.write_text("step,loss\n1,0.5\n2,0.4\n")
    continue_csv_log(log, ("step", "loss"), 1)
    assert log.read_text().splitlines() == ["step,loss", "1,0.5"]
