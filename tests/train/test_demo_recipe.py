"""The demo model's recipe end to end at a toy scale: synth data -> VAE stage -> latents -> diffusion from scratch
(every tensor trained, EMA, sampling evaluation) -> one whole-model file -> the colorize pipeline."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from lvcd.cli import app
from lvcd.config import get_config
from lvcd.data.layout import DatasetLayout
from lvcd.train import checkpoint as ckpt
from lvcd.weights import WeightsFile, load_model

EXAMPLES = Path(__file__).parents[2] / "examples" / "demo"
SIZE = "32x32"  # the demo architecture on 32x32 frames (4x4 latents): the recipe's code paths, seconds per stage


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("demo")
    data = root / "synth"
    _cli("data", "synth", str(data), "--shots", "3", "--frames", "16", "--size", SIZE, "--quiet")
    vae_dir = root / "vae"
    _cli(
        "train-vae", "--config", str(EXAMPLES / "vae.toml"), "--no-progress",
        "--set", f"output_dir={json.dumps(str(vae_dir))}", "--set", f"data.root={json.dumps(str(data))}",
        "--set", "data.size=[32, 32]", "--set", "data.crop=16", "--set", "train.max_steps=4",
        "--set", "train.batch_size=2", "--set", "train.scale_frames=8", "--set", "checkpoint.every=2",
        "--set", "log.every=1",
    )  # fmt: skip
    base = vae_dir / "base.safetensors"
    _cli("data", "synth", str(data), "--shots", "3", "--frames", "16", "--size", SIZE, "--vae", str(base), "--quiet")
    run = root / "diffusion"
    _cli(
        "train", "--config", str(EXAMPLES / "diffusion.toml"), "--no-progress",
        "--set", f"output_dir={json.dumps(str(run))}", "--set", f"model.svd={json.dumps(str(base))}",
        "--set", f"data.root={json.dumps(str(data))}", "--set", "data.size=[32, 32]", "--set", "train.max_steps=4",
        "--set", "train.batch_size=1", "--set", "optim.warmup_steps=2", "--set", "checkpoint.every=2",
        "--set", "eval.every=4", "--set", "eval.shots=1", "--set", "eval.steps=2",
    )  # fmt: skip
    return {"data": data, "vae": vae_dir, "base": base, "run": run, "root": root}


def test_synth_root_has_frames_line_art_labels_and_latents(recipe):
    layout = DatasetLayout(recipe["data"], 32)
    clips = layout.read_index()
    assert len(clips) == 3 and all(len(frames) == 16 for frames in clips.values())
    name = next(iter(clips.values()))[5]
    for path in (layout.image_path(name), layout.sketch_path(name), layout.label_path(name), layout.latent_path(name)):
        assert path.is_file()
    assert layout.load_latent(name).shape == (4, 4, 4)
    # re-running writes nothing new
    output = _cli("data", "synth", str(recipe["data"]), "--shots", "3", "--frames", "16", "--size", SIZE, "--quiet")
    assert "0 written, 3 already complete" in output


def test_vae_stage_writes_a_base_file_with_the_measured_scale_factor(recipe):
    base = WeightsFile(recipe["base"], "svd")
    config = base.model_config()
    assert config is not None and config.name == "lvcd-demo"
    assert config.vae.scale_factor != 1.0 and config.vae.scale_factor == config.cond_vae.scale_factor
    prefixes = {key.split(".")[0] for key in base.keys()}
    assert prefixes == {"first_stage_model", "conditioner"}
    # the conditioner's encoder is the VAE's encoder, and its quant_conv keeps the posterior mean (identity)
    assert torch.equal(base.get("conditioner.embedders.3.encoder.encoder.conv_in.weight"),
                       base.get("first_stage_model.encoder.conv_in.weight"))  # fmt: skip
    quant = base.get("conditioner.embedders.3.encoder.quant_conv.weight")[:, :, 0, 0]
    assert torch.equal(quant, torch.eye(8))
    rows = list(csv.DictReader((recipe["vae"] / "logs" / "vae_log.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]


def test_vae_stage_resumes_where_it_stopped(recipe, tmp_path):
    import shutil

    copy = tmp_path / "vae"
    shutil.copytree(recipe["vae"], copy)
    output = _cli(
        "train-vae", "--config", str(EXAMPLES / "vae.toml"), "--no-progress", "--resume", "latest",
        "--set", f"output_dir={json.dumps(str(copy))}", "--set", f"data.root={json.dumps(str(recipe['data']))}",
        "--set", "data.size=[32, 32]", "--set", "data.crop=16", "--set", "train.max_steps=6",
        "--set", "train.batch_size=2", "--set", "train.scale_frames=8", "--set", "log.every=1",
    )  # fmt: skip
    assert "Trained steps 4..6" in output
    rows = list(csv.DictReader((copy / "logs" / "vae_log.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]


def test_fresh_runs_into_a_finished_run_are_refused(recipe):
    """Both stages refuse to start afresh where a run is (one line, exit 2), and leave it as it was."""
    base_before = recipe["base"].stat().st_mtime_ns
    vae_log = (recipe["vae"] / "logs" / "vae_log.csv").read_text()
    for command, config, output, inputs in (
        ("train-vae", "vae.toml", recipe["vae"], ["--set", f"data.root={json.dumps(str(recipe['data']))}"]),
        ("train", "diffusion.toml", recipe["run"], ["--set", f"model.svd={json.dumps(str(recipe['base']))}"]),
    ):
        result = CliRunner().invoke(app, [
            command, "--config", str(EXAMPLES / config), "--no-progress",
            "--set", f"output_dir={json.dumps(str(output))}", *inputs,
        ])  # fmt: skip
        assert result.exit_code == 2, result.output
        assert "already holds a training run" in result.output and "--resume latest" in result.output
        assert "Traceback" not in result.output
    assert recipe["base"].stat().st_mtime_ns == base_before
    assert (recipe["vae"] / "logs" / "vae_log.csv").read_text() == vae_log


def test_from_scratch_run_trains_every_tensor_with_an_average_and_evaluates(recipe):
    step = ckpt.list_checkpoints(recipe["run"])[-1][1]
    weights = WeightsFile(step / ckpt.WEIGHTS_NAME, "lvcd")
    average = WeightsFile(step / ckpt.EMA_NAME, "lvcd")
    model_config = WeightsFile(recipe["base"], "svd").model_config()
    with torch.device("meta"):
        from lvcd.model import LVCDModel

        expected = set(LVCDModel(model_config, parts=("unet", "controlnet")).state_dict())
    assert set(weights.keys()) == expected == set(average.keys())  # trainable = "all": every tensor
    key = "model.diffusion_model.out.2.weight"  # zero at init (sgm zero_module), trained since
    assert weights.get(key).abs().sum() > 0
    assert not torch.equal(weights.get(key), average.get(key))  # the average lags the weights
    rows = list(csv.DictReader((recipe["run"] / "logs" / "eval_log.csv").open()))
    assert [int(r["step"]) for r in rows] == [4]
    for column in ("psnr", "region", "copy_reference_psnr", "mean_colour_region"):
        assert 0 <= float(rows[0][column]) < 101


def test_convert_makes_one_file_the_pipeline_loads_without_a_config(recipe):
    step = ckpt.list_checkpoints(recipe["run"])[-1][1]
    output = recipe["root"] / "model.safetensors"
    _cli(
        "convert", "--svd", str(recipe["base"]), "--lvcd", str(step / ckpt.EMA_NAME), "--subset", "full",
        "--dtype", "fp16", "-o", str(output),
    )  # fmt: skip
    model, report = load_model(output)  # the config comes from the file's metadata
    assert report.ok and model.config.name == "lvcd-demo"
    assert model.config == WeightsFile(recipe["base"], "svd").model_config()
    from lvcd.pipeline import LVCDPipeline

    result = LVCDPipeline(model)(torch.rand(3, 32, 32), torch.rand(3, 1, 32, 32), num_steps=1, seed=0, progress=False)
    assert result.frames.shape == (3, 3, 32, 32)
    assert get_config(EXAMPLES / "model.json").unet == model.config.unet
