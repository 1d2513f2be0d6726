"""The web UI's work function on the tiny model, and the page's construction (no server, no browser)."""

from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from conftest import TINY_CONFIG
from lvcd.errors import InputError
from lvcd.io import FrameSource
from lvcd.pipeline import LVCDPipeline
from lvcd.ui import _lineart_source, build_app, colorize_upload


@pytest.fixture(scope="module")
def pipe(tiny_weights) -> LVCDPipeline:
    return LVCDPipeline.from_single_file(tiny_weights["svd"], tiny_weights["lvcd"], config=TINY_CONFIG, device="cpu")


def _uploads(folder, names, size_hw=(64, 128)):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, name in enumerate(names):
        drawing = np.full(size_hw, 255, np.uint8)
        drawing[:, 10 + 5 * index] = 0
        Image.fromarray(drawing).save(folder / name)
        paths.append(str(folder / name))
    return paths


def test_uploaded_drawings_are_colorized_into_a_video(pipe, tmp_path):
    files = _uploads(tmp_path / "up", ["f2.png", "f10.png", "f1.png"])
    reference = tmp_path / "ref.png"
    Image.fromarray(np.zeros((64, 128, 3), np.uint8) + 90).save(reference)
    video = colorize_upload(pipe, str(reference), files, steps=1, seed=3, output_dir=tmp_path / "out")
    source = FrameSource.open(video)
    assert len(source) == 3 and tuple(source.size_hw) == (64, 128)


def test_uploads_are_ordered_naturally(tmp_path):
    files = _uploads(tmp_path / "up", ["f2.png", "f10.png", "f1.png"])
    (tmp_path / "work").mkdir()
    folder = _lineart_source(files, tmp_path / "work")
    assert FrameSource.open(folder).names == ["f1", "f2", "f10"]


def test_upload_errors_say_what_to_do(pipe, tmp_path):
    files = _uploads(tmp_path / "up", ["a.png"])
    with pytest.raises(InputError, match="coloured reference"):
        colorize_upload(pipe, None, files)
    with pytest.raises(InputError, match="Upload the line art"):
        colorize_upload(pipe, files[0], [])
    (tmp_path / "clip.mp4").write_bytes(b"x")
    with pytest.raises(InputError, match="not both"):
        colorize_upload(pipe, files[0], [*files, str(tmp_path / "clip.mp4")])
    with pytest.raises(InputError, match="HEIGHTxWIDTH"):
        colorize_upload(pipe, files[0], files, size="big")


def test_page_builds_with_the_expected_controls(pipe):
    app = build_app(pipe)
    assert isinstance(app, gr.Blocks)
    labels = {c.get("props", {}).get("label") for c in app.config["components"]}
    assert {"Coloured reference (frame 0)", "Line art: images or one video/GIF", "Colorized shot"} <= labels
