"""`lvcd data synth | prepare`: a bad --device, a damaged input video and a train-vae checkpoint given as --vae are
each refused in one line (exit 2) before any work starts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lvcd.cli import app
from lvcd.data import prepare as prepare_module
from lvcd.errors import InputError

from .conftest import TINY_CONFIG, write_video
from .synthetic import scene_frame

runner = CliRunner()
SYNTH = ("--shots", "3", "--frames", "15", "--size", "32x32", "--quiet")


def invoke(*args):
    return runner.invoke(app, ["data", *map(str, args)])


def assert_one_line_error(result, *parts: str) -> str:
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    for part in parts:
        assert part in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def vae_run(tmp_path_factory, tiny_vae) -> Path:
    """A `lvcd train-vae` run as it leaves its output_dir: base.safetensors and a checkpoint of the bare VAE."""
    from lvcd.config import config_from_sgm_json
    from lvcd.train.vae import write_base_file
    from lvcd.weights import save_safetensors

    run = tmp_path_factory.mktemp("vae_run")
    write_base_file(tiny_vae, config_from_sgm_json(TINY_CONFIG), 1.0, 0, run / "base.safetensors")
    save_safetensors(tiny_vae.state_dict(), run / "checkpoints" / "step_000006" / "vae.safetensors")
    return run


# ------------------------------------------------------------------------------------------ 1: --device


@pytest.mark.parametrize("device", ["xyz", "cuda:99"])
@pytest.mark.parametrize("with_vae", [True, False])
def test_synth_refuses_a_bad_device_before_any_shot(tmp_path, vae_run, device, with_vae):
    if device.startswith("cuda") and torch.cuda.device_count() > 99:
        pytest.skip("this machine has a cuda:99")
    out = tmp_path / "out"
    vae = ("--vae", vae_run / "base.safetensors") if with_vae else ()
    result = invoke("synth", out, *SYNTH, *vae, "--device", device)
    assert_one_line_error(result, "--device", device)
    assert not out.exists()  # no shot written


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message of a machine without CUDA")
def test_synth_on_a_cpu_only_machine_gives_the_device_line_of_prepare(tmp_path, vae_run, tiny_weights):
    synth = invoke("synth", tmp_path / "out", *SYNTH, "--vae", vae_run / "base.safetensors", "--device", "cuda")
    line = assert_one_line_error(synth, "--device")
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "0.png").write_bytes(b"")  # prepare refuses the device before reading it
    prepared = invoke(
        "prepare", tmp_path / "v", "-o", tmp_path / "root", "--svd", tiny_weights["svd"], "--device", "cuda"
    )
    assert line == assert_one_line_error(prepared, "--device")


# ------------------------------------------------------------------------------- 2: a damaged input video


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """A good video and, sorting after it, one cut short (its moov atom, written last, is missing)."""
    folder = tmp_path_factory.mktemp("vids")
    frames = [scene_frame(0, t, 64, 128) for t in range(20)]
    write_video(folder / "a_good.mp4", frames)
    whole = write_video(tmp_path_factory.mktemp("whole") / "b.mp4", frames).read_bytes()
    (folder / "b_bad.mp4").write_bytes(whole[: len(whole) // 2])
    return folder


def test_prepare_refuses_a_damaged_video_before_scanning_any(tmp_path, videos, tiny_weights, monkeypatch):
    scanned = []
    scan = prepare_module.scan_video
    monkeypatch.setattr(
        prepare_module, "scan_video", lambda video, *a, **k: scanned.append(video.name) or scan(video, *a, **k)
    )
    root = tmp_path / "root"
    args = ("--svd", tiny_weights["svd"], "--config", TINY_CONFIG, "--size", "32x64", "--lineart-method", "xdog")
    result = invoke("prepare", videos, "-o", root, *args, "--quiet")
    assert_one_line_error(result, "b_bad.mp4", "cannot be opened as a video")
    assert scanned == [] and not root.exists()

    (videos / "b_bad.mp4").rename(tmp_path / "b_bad.mp4")  # the good one alone: scanned, its cache kept
    try:
        assert invoke("prepare", videos, "-o", root, *args, "--quiet").exit_code == 0
    finally:
        (tmp_path / "b_bad.mp4").rename(videos / "b_bad.mp4")
    cache = (root / "scenes" / "a_good.json").read_bytes()
    scanned.clear()
    again = invoke("prepare", videos, "-o", root, *args, "--quiet")  # the bad one back: refused, the root untouched
    assert_one_line_error(again, "b_bad.mp4", "cannot be opened as a video")
    assert scanned == [] and (root / "scenes" / "a_good.json").read_bytes() == cache


def test_a_finished_root_opens_no_input_again(tmp_path, videos, tiny_vae, xdog, monkeypatch):
    """The up-front opening skips inputs already scanned: a second run over a finished root decodes nothing."""
    from lvcd.data.prepare import PrepareOptions, prepare_dataset
    from lvcd.io.frames import FrameSource

    good = videos / "a_good.mp4"
    options = PrepareOptions(size_hw=(32, 64), batch_size=4, lineart_method="xdog", progress=False)
    prepare_dataset([good], tmp_path / "root", encoder=tiny_vae, lineart=xdog, options=options)
    opened = []
    real_open = FrameSource.open.__func__
    monkeypatch.setattr(FrameSource, "open", classmethod(lambda cls, path: opened.append(path) or real_open(cls, path)))
    report = prepare_dataset([good], tmp_path / "root", encoder=tiny_vae, lineart=xdog, options=options)
    assert opened == [] and report.frames_written == 0
    with pytest.raises(InputError, match="b_bad.mp4: cannot be opened as a video"):
        prepare_dataset(
            [good, videos / "b_bad.mp4"], tmp_path / "root", encoder=tiny_vae, lineart=xdog, options=options
        )
    assert opened == [videos / "b_bad.mp4"]  # the scanned one is not opened; the new one is, and refused


# ----------------------------------------------------------------------- 3: --vae given a train-vae checkpoint


def test_synth_points_a_checkpoint_given_as_vae_to_the_runs_base_file(tmp_path, vae_run):
    checkpoint = vae_run / "checkpoints" / "step_000006" / "vae.safetensors"
    result = invoke("synth", tmp_path / "out", *SYNTH, "--vae", checkpoint)
    line = assert_one_line_error(result, f"--vae {checkpoint}", str(vae_run / "base.safetensors"), "train-vae")
    assert "huggingface" not in line and "svd.safetensors" not in line
    assert not (tmp_path / "out").exists()


def test_synth_says_a_run_without_base_file_must_finish(tmp_path, tiny_vae):
    from lvcd.weights import save_safetensors

    checkpoint = save_safetensors(
        tiny_vae.state_dict(), tmp_path / "run" / "checkpoints" / "step_000002" / "vae.safetensors"
    )
    line = assert_one_line_error(invoke("synth", tmp_path / "out", *SYNTH, "--vae", checkpoint), "base.safetensors")
    assert "no base.safetensors yet" in line and "--resume latest" in line and "huggingface" not in line
    other = tmp_path / "weights.safetensors"  # any other file without a VAE: where train-vae writes the right one
    save_safetensors({"something.weight": torch.zeros(2)}, other)
    line = assert_one_line_error(
        invoke("synth", tmp_path / "out", *SYNTH, "--vae", other), "train-vae", "base.safetensors"
    )
    assert "huggingface" not in line


def test_prepare_keeps_its_svd_advice_and_synth_takes_the_base_file(tmp_path, vae_run):
    checkpoint = vae_run / "checkpoints" / "step_000006" / "vae.safetensors"
    (tmp_path / "v").mkdir()
    write_video(tmp_path / "v" / "a.mp4", [np.zeros((64, 128, 3), np.uint8)] * 2)
    prepared = invoke(
        "prepare", tmp_path / "v", "-o", tmp_path / "root", "--svd", checkpoint, "--lineart-method", "xdog"
    )
    assert_one_line_error(prepared, "not an SVD/LVCD checkpoint", "Get svd.safetensors from https://huggingface.co/")
    made = invoke("synth", tmp_path / "out", "--shots", "1", "--frames", "15", "--size", "32x32", "--quiet",
                  "--vae", vae_run / "base.safetensors")  # fmt: skip
    assert made.exit_code == 0 and "latent(s) written" in made.output, made.output
    assert any((tmp_path / "out").glob("lat_32/*/*.safetensors"))
