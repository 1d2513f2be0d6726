"""The training config format and `lvcd train` end to end on a data root in the official layout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lvcd.train.config import TrainConfig, TrainConfigError, load_train_config

from .conftest import TINY_CONFIG, smooth_field

EXAMPLE = Path(__file__).parents[2] / "examples" / "train_config.toml"


def test_example_config_reads_and_resolves_paths():
    config = load_train_config(EXAMPLE)
    assert isinstance(config, TrainConfig)
    assert config.optim.learning_rate == 5e-5 and config.train.gradient_accumulation_steps == 4
    assert config.data.num_frames == 15 and config.data.size == (320, 576)
    assert config.model.lvcd is None and config.model.config == "svd-lvcd"  # a preset name stays a name
    assert Path(config.model.svd) == (EXAMPLE.parent.parent / "checkpoints" / "svd.safetensors").resolve()
    assert config.log.trackers == ("csv", "tensorboard")


def test_overrides_types_and_errors(tmp_path):
    config = load_train_config(EXAMPLE, ["train.max_steps=7", "optim.betas=[0.8, 0.9]", "data.root=rel/root", "seed=3"])
    assert config.train.max_steps == 7 and config.optim.betas == (0.8, 0.9) and config.seed == 3
    assert Path(config.data.root) == Path.cwd() / "rel" / "root"  # command-line paths: relative to the cwd
    with pytest.raises(TrainConfigError, match="Unknown setting train.max_step"):
        load_train_config(EXAMPLE, ["train.max_step=7"])
    with pytest.raises(TrainConfigError, match="train.batch_size: expected an integer"):
        load_train_config(EXAMPLE, ["train.batch_size=two"])
    with pytest.raises(TrainConfigError, match="mixed_precision"):
        load_train_config(EXAMPLE, ["train.mixed_precision='fp8'"])
    with pytest.raises(TrainConfigError, match="section.key=value"):
        load_train_config(EXAMPLE, ["train.max_steps"])
    as_json = tmp_path / "config.json"
    as_json.write_text(json.dumps({"seed": 1, "model": {"svd": "svd.safetensors"}, "train": {"batch_size": 1}}))
    config = load_train_config(as_json)
    assert config.model.svd == str(tmp_path / "svd.safetensors") and config.train.batch_size == 1
    assert load_train_config(EXAMPLE, ['model.lvcd=""']).model.lvcd is None
    # an empty string unsets any optional setting, not only a path's: settings a config fixes can be switched off
    unset = ["checkpoint.keep=", "optim.max_grad_norm=", "train.ema_decay=", "train.max_minutes=",
             'model.controlnet_from_unet=""']  # fmt: skip
    config = load_train_config(EXAMPLE, ["checkpoint.keep=2", "train.ema_decay=0.99", *unset])
    assert (config.checkpoint.keep, config.optim.max_grad_norm, config.train.ema_decay) == (None, None, None)
    assert config.train.max_minutes is None and config.model.controlnet_from_unet is None
    with pytest.raises(TrainConfigError, match="train.batch_size: expected an integer"):  # not optional: refused
        load_train_config(EXAMPLE, ["train.batch_size="])
    with pytest.raises(TrainConfigError, match="does not exist"):
        load_train_config(tmp_path / "missing.toml")


def write_official_root(root: Path, frames: int, size: tuple[int, int] = (64, 64)) -> None:
    """A training root in the official Animation_video layout: img_H/, draw_H/ PNGs, lat_H/*.pt, the clip index."""
    height, width = size
    generator = torch.Generator().manual_seed(0)
    names = [f"video/{index:06d}" for index in range(frames)]
    for name in names:
        colour = ((smooth_field((3, height, width), generator) * 0.5 + 0.5).clamp(0, 1) * 255).byte()
        lines = np.where(smooth_field((height, width), generator).abs().numpy() < 0.15, 0, 255).astype(np.uint8)
        for folder, image in ((f"img_{height}", colour.permute(1, 2, 0).numpy()), (f"draw_{height}", lines)):
            path = root / folder / f"{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(path)
        latent_path = root / f"lat_{height}" / f"{name}.pt"
        latent_path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(smooth_field((1, 4, height // 8, width // 8), generator, scale=0.8), latent_path)
    (root / "train_clips_hist.json").write_text(json.dumps({"video/clip": names}))


def write_config(path: Path, weights: dict[str, Path], root: Path, **extra: str) -> Path:
    lines = [
        'output_dir = "run"',
        "[model]",
        f'svd = "{weights["svd"]}"',
        f'lvcd = "{weights["lvcd"]}"',
        f'config = "{TINY_CONFIG}"',
        "[data]",
        f'root = "{root}"',
        "size = [64, 64]",
        "num_frames = 4",
        "nframe_range = [4, 100]",
        "num_workers = 0",
        "[train]",
        "batch_size = 1",
        "gradient_accumulation_steps = 1",
        "max_steps = 1",
        'mixed_precision = "no"',
        "gradient_checkpointing = true",
        "[log]",
        'trackers = ["csv"]',
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def cli_runner():
    from typer.testing import CliRunner

    from lvcd.cli import app

    return lambda args: CliRunner().invoke(app, args)


def test_cli_trains_and_resumes_on_an_official_layout_root(tmp_path, tiny_weights, cli_runner):
    write_official_root(tmp_path / "root", frames=5)  # 5 frames, clips of 4: 2 samples
    config = write_config(tmp_path / "train.toml", tiny_weights, tmp_path / "root")
    result = cli_runner(["train", "--config", str(config), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "checkpoints" / "step_000001" / "lvcd.safetensors").is_file()
    result = cli_runner(["train", "--config", str(config), "--resume", "latest", "--max-steps", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "Trained steps 1..2" in result.output
    assert (tmp_path / "run" / "checkpoints" / "step_000002" / "train_state.json").is_file()
    rows = (tmp_path / "run" / "logs" / "train_log.csv").read_text().splitlines()
    assert len(rows) == 3  # header + steps 1, 2


def test_cli_user_errors_are_one_line_and_exit_2(tmp_path, tiny_weights, cli_runner):
    write_official_root(tmp_path / "root", frames=4)
    config = write_config(tmp_path / "train.toml", tiny_weights, tmp_path / "root")
    for args, message in (
        (["--set", f'model.svd="{tmp_path / "nope.safetensors"}"'], "does not exist"),
        (["--set", "train.batch_sizes=1"], "Unknown setting train.batch_sizes"),
        (["--resume", str(tmp_path / "nowhere")], "not a training checkpoint"),  # latest with none starts afresh
        (["--set", "data.size=[72, 72]"], "multiples of 64"),
        (["--set", f'data.root="{tmp_path / "missing"}"'], "not a folder"),
        (["--output-dir", str(tmp_path / "root")], "would write onto or into data.root"),  # the data root itself
    ):
        result = cli_runner(["train", "--config", str(config), "--no-progress", *args])
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output


def test_python_m_lvcd_cli_runs_the_train_command():
    """`accelerate launch -m lvcd.cli train ...` needs `python -m lvcd.cli` to work."""
    out = subprocess.run(
        [sys.executable, "-m", "lvcd.cli", "train", "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "--config" in out.stdout and "--resume" in out.stdout


@pytest.mark.slow
def test_two_process_data_parallel_run_resumes_exactly(tmp_path, tiny_weights):
    """DDP over 2 CPU processes (gloo) through `torchrun -m lvcd.cli train`, the same entry `accelerate launch -m`
    uses: gradient sync, per-process RNG states, checkpoint from process 0; a resumed run repeats steps 3-4."""
    write_official_root(tmp_path / "root", frames=10)
    config = write_config(tmp_path / "train.toml", tiny_weights, tmp_path / "root")
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    base = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "lvcd.cli", "train"]
    common = [
        "--config",
        str(config),
        "--max-steps",
        "4",
        "--no-progress",
        "--set",
        "train.gradient_accumulation_steps=2",
    ]
    first = subprocess.run(
        [*base, *common, "--set", "checkpoint.every=2"], capture_output=True, text=True, env=env, timeout=600
    )
    assert first.returncode == 0, first.stderr[-3000:]
    assert "2 process(es)" in first.stdout
    state_dir = tmp_path / "run" / "checkpoints" / "step_000002" / "state"
    assert (state_dir / "random_states_0.pkl").is_file() and (state_dir / "random_states_1.pkl").is_file()
    resumed = subprocess.run(
        [*base, *common, "--output-dir", str(tmp_path / "resumed"), "--resume", str(state_dir.parent)],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    def losses(run: str) -> dict[int, str]:
        rows = (tmp_path / run / "logs" / "train_log.csv").read_text().splitlines()[1:]
        return {int(row.split(",")[0]): row.split(",")[3] for row in rows}

    full, again = losses("run"), losses("resumed")
    assert sorted(full) == [1, 2, 3, 4] and sorted(again) == [3, 4]
    assert all(again[step] == full[step] for step in (3, 4))


@pytest.mark.slow
def test_two_process_run_stops_at_its_time_limit_together(tmp_path, tiny_weights):
    """`train.max_minutes` in a data-parallel run (its branch where the processes agree on the stop through a
    reduce): both stop at the same step, one checkpoint is written, the run exits 0 instead of hanging in a sync."""
    write_official_root(tmp_path / "root", frames=10)
    config = write_config(tmp_path / "train.toml", tiny_weights, tmp_path / "root")
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "lvcd.cli", "train"]
    command += ["--config", str(config), "--max-steps", "50", "--no-progress", "--set", "train.max_minutes=1e-6"]
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "2 process(es)" in out.stdout and "train.max_minutes (1e-06) reached at step 1" in out.stdout
    assert [p.name for p in (tmp_path / "run" / "checkpoints").iterdir()] == ["step_000001"]
