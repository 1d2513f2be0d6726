"""Errors said before the slow part, found by an audit of every command: the line-art weights before every frame is
read, an unknown sampler or packaged model, the Hugging Face cache's weights keeping the up-front checks, a page's
address before the weights load, the demo's shot and seed before its model, devices lvcd does not run on, and a
PyAV without the encoder before any frame is computed."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import lvcd.io.frames
from lvcd.cli import app
from lvcd.errors import InputError

runner = CliRunner()


def _frames(folder: Path, count: int = 3) -> Path:
    folder.mkdir(parents=True)
    for index in range(count):
        Image.fromarray(np.full((64, 64, 3), 40 * index, np.uint8)).save(folder / f"f{index}.png")
    return folder


def _error_line(result) -> str:
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]
    return line


@pytest.fixture
def frames_unread(monkeypatch):
    """Reading every frame (the checks of size and data before the work) fails the test."""

    def read_all(self, *args, **kwargs):
        raise AssertionError("every frame was read before the error")

    monkeypatch.setattr(lvcd.io.frames.FrameSource, "check_intact", read_all)
    monkeypatch.setattr(lvcd.io.frames.FrameSource, "check_uniform_size", read_all)


@pytest.fixture
def no_lineart_weights(monkeypatch, tmp_path):
    """A machine without sk_model.pth anywhere lvcd looks."""
    monkeypatch.delenv("LVCD_LINEART_WEIGHTS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("lvcd.lineart.extractor._huggingface_cached", lambda filename: None)


def test_missing_line_art_weights_are_said_before_any_frame_is_read(tmp_path, frames_unread, no_lineart_weights):
    colour = _frames(tmp_path / "colour")
    line = _error_line(runner.invoke(app, ["lineart", str(colour), "-o", str(tmp_path / "out")]))
    assert "No weights for line-art method 'informative': sk_model.pth was not found" in line
    assert "pass --weights PATH" in line and "--method xdog works" in line
    args = ["colorize", "--model", "demo", "-r", str(colour / "f0.png"), "-l", str(colour), "--from-color"]
    line = _error_line(runner.invoke(app, [*args, "-o", str(tmp_path / "shot.mp4")]))
    assert "sk_model.pth was not found" in line and "--lineart-weights PATH" in line and "--lineart-method xdog" in line
    (tmp_path / "weights").mkdir()  # a folder without sk_model.pth
    given = ["--lineart-weights", str(tmp_path / "weights"), "-o", str(tmp_path / "s.mp4")]
    line = _error_line(runner.invoke(app, [*args, *given]))
    missing = tmp_path / "weights" / "sk_model.pth"
    assert line == f"error: --lineart-weights {missing} does not exist: give sk_model.pth or the folder holding it."
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temporary output left


def test_lineart_refuses_an_existing_output_before_reading_frames(tmp_path, frames_unread):
    colour = _frames(tmp_path / "colour")
    (tmp_path / "out.mp4").write_bytes(b"an earlier result")
    line = _error_line(
        runner.invoke(app, ["lineart", str(colour), "-o", str(tmp_path / "out.mp4"), "--method", "xdog"])
    )
    assert "already exists" in line and "--overwrite" in line, line
    assert (tmp_path / "out.mp4").read_bytes() == b"an earlier result"


def test_colorize_names_an_unknown_sampler_or_packaged_model_before_reading_frames(tmp_path, frames_unread):
    lineart = _frames(tmp_path / "lineart")
    base = ["colorize", "-r", str(lineart / "f0.png"), "-l", str(lineart), "-o", str(tmp_path / "shot.mp4")]
    line = _error_line(runner.invoke(app, [*base, "--model", "demo", "--sampler", "eulr"]))
    assert line == "error: --sampler 'eulr' is not one of euler, heun, dpmpp_2m."
    line = _error_line(runner.invoke(app, [*base, "--model", "official"]))
    assert "--model 'official': the only packaged model is 'demo'" in line
    assert "seed" not in runner.invoke(app, [*base, "--model", "official"]).output  # said before the job opens


def test_weights_from_the_hugging_face_cache_keep_the_up_front_memory_check(tmp_path, monkeypatch):
    """Without --svd the official files come from the Hugging Face cache: their config is the official one, so a
    shot too big for this machine is refused before anything loads (it went on to load and be killed)."""
    from lvcd.cli.checks import expected_config
    from lvcd.config import get_config

    official = get_config(None)
    assert expected_config({"svd": None, "model": None, "config": None}) == official
    assert expected_config({"svd": None, "model": "demo", "config": None}).name == "lvcd-demo"
    monkeypatch.setattr("lvcd.cli.checks.available_ram", lambda: 8 * 2**30)  # an 8 GB machine
    lineart = _frames(tmp_path / "lineart")
    args = ["colorize", "-r", str(lineart / "f0.png"), "-l", str(lineart), "-o", str(tmp_path / "shot.mp4")]
    line = _error_line(runner.invoke(app, [*args, "--device", "cpu", "--size", "320x576", "--lineart-levels", "off"]))
    assert "this shot needs at least" in line and "GB available" in line, line


def test_devices_lvcd_does_not_run_on_are_one_line():
    from lvcd.devices import require_device

    for name in ("mps", "xpu"):
        with pytest.raises(InputError, match=rf"--device {name}: lvcd runs on cpu or cuda \(cuda:N\) devices"):
            require_device(name, "--device")
        with pytest.raises(InputError, match=rf"device='{name}': lvcd runs on cpu or cuda .*; use device='cpu' or"):
            require_device(name)  # the library's words by default
    assert require_device("cpu").type == "cpu"


def test_a_page_address_that_cannot_be_served_is_refused_before_the_weights_load(monkeypatch):
    def no_weights(*args, **kwargs):
        raise AssertionError("the weights loaded before the address was checked")

    monkeypatch.setattr("lvcd.cli.ui.load_pipeline", no_weights)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = _error_line(runner.invoke(app, ["ui", "--model", "demo", "--port", str(port)]))
    assert line == f"error: --port {port} is in use on 127.0.0.1; give another --port."
    line = _error_line(runner.invoke(app, ["ui", "--model", "demo", "--host", "192.0.2.1"]))  # TEST-NET-1
    assert "--host 192.0.2.1 is not an address of this machine" in line
    result = runner.invoke(app, ["ui", "--model", "demo", "--port", "70000"])
    assert (
        _error_line(result)
        == "error: Invalid value for '--port': Input should be less than or equal to 65535 (see 'lvcd ui --help')"
    )


def test_the_demo_checks_its_shot_and_seed_before_its_model_loads(tmp_path, monkeypatch):
    def no_model(*args, **kwargs):
        raise AssertionError("the demo ran before its options were checked")

    monkeypatch.setattr("lvcd.demo.run.run_demo", no_model)
    line = _error_line(runner.invoke(app, ["demo", "-o", str(tmp_path / "d.mp4"), "--shot", "-1"]))
    assert line.startswith("error: --shot -1: Shot index -1 is outside 0..")
    line = _error_line(runner.invoke(app, ["demo", "-o", str(tmp_path / "d.mp4"), "--seed", str(2**80)]))
    assert "--seed" in line and "is not a whole number" in line


def test_a_pyav_without_the_encoder_is_one_line_before_any_frame(tmp_path, monkeypatch):
    import av

    from lvcd.io.writers import open_writer

    monkeypatch.setattr(av, "codecs_available", set(av.codecs_available) - {"libx264"})
    with pytest.raises(InputError, match=r"shot.mp4: this PyAV's FFmpeg has no libx264 encoder"):
        open_writer(tmp_path / "shot.mp4", fps=12)
    assert list(tmp_path.iterdir()) == []  # nothing started at the target
    with open_writer(tmp_path / "shot.webm", fps=12) as writer:  # the other kinds are untouched
        writer.write(np.zeros((16, 16, 3), np.uint8))
    assert (tmp_path / "shot.webm").stat().st_size > 0


def test_colorize_checks_its_work_directory_before_reading_every_frame(tmp_path, frames_unread):
    lineart = _frames(tmp_path / "lineart")
    args = ["colorize", "--model", "demo", "-r", str(lineart / "f0.png"), "-l", str(lineart), "--seed", "1"]
    (tmp_path / "a_file").write_text("not a folder")
    line = _error_line(
        runner.invoke(app, [*args, "-o", str(tmp_path / "a.mp4"), "--work-dir", str(tmp_path / "a_file")])
    )
    assert str(tmp_path / "a_file") in line, line
    foreign = tmp_path / "project"
    foreign.mkdir()
    (foreign / "scene.blend").write_bytes(b"user data")
    line = _error_line(runner.invoke(app, [*args, "-o", str(tmp_path / "b.mp4"), "--work-dir", str(foreign)]))
    assert str(foreign) in line and (foreign / "scene.blend").read_bytes() == b"user data", line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "lineart", "project"]


def test_colorize_reads_the_weights_headers_before_any_frame_or_work_directory(tmp_path, tiny_weights, frames_unread):
    lineart = _frames(tmp_path / "lineart")
    swapped = ["--svd", str(tiny_weights["lvcd"]), "--lvcd", str(tiny_weights["svd"])]
    args = ["colorize", *swapped, "-r", str(lineart / "f0.png"), "-l", str(lineart), "-o", str(tmp_path / "a.mp4")]
    line = _error_line(runner.invoke(app, args))
    assert "the two files are swapped" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lineart"]  # no work directory made
