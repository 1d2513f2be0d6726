"""Whole workflows through the CLI: colour frames -> line art -> colorize -> evaluate; hub resolution offline."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import TINY_CONFIG
from lvcd.cli import app
from lvcd.errors import WeightsError
from lvcd.pipeline import LVCDPipeline


def _colour_shot(folder, count=6, size_hw=(64, 128)):
    folder.mkdir()
    height, width = size_hw
    yy, xx = np.mgrid[:height, :width]
    for index in range(count):
        image = np.zeros((height, width, 3), np.uint8)
        image[...] = (40, 90, 160)
        disc = np.hypot(xx - 30 - 8 * index, yy - height / 2) < height / 3
        image[disc] = (230, 120, 40)
        Image.fromarray(image).save(folder / f"{index:03d}.png")
    return folder


def test_colour_frames_to_colorized_shot_to_scores(tmp_path, tiny_weights):
    gt = _colour_shot(tmp_path / "gt")
    out = tmp_path / "colorized"
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "colorize",
            "--svd",
            str(tiny_weights["svd"]),
            "--lvcd",
            str(tiny_weights["lvcd"]),
            "--config",
            str(TINY_CONFIG),
            "--reference",
            str(gt / "000.png"),
            "--lineart",
            str(gt),
            "--from-color",
            "--lineart-method",
            "xdog",
            "-o",
            str(out),
            "--steps",
            "1",
            "--seed",
            "0",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "outside the training distribution" in result.output or "xdog" in result.output.lower()
    assert len(list(out.glob("*.png"))) == 6

    scores = tmp_path / "scores.json"
    result = runner.invoke(
        app,
        [
            "evaluate",
            "--pred",
            str(out),
            "--gt",
            str(gt),
            "--metrics",
            "psnr,ssim,edmd_gt,tc",
            "--json",
            str(scores),
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(scores.read_text())
    metrics = report["aggregate"]["metrics"]
    assert 0 < metrics["psnr"] < 60 and -1 <= metrics["ssim"] <= 1
    assert metrics["edmd_gt"] >= 0 and metrics["tc"] > 0
    assert report["clips"][0]["frames"] == 6


def test_from_pretrained_offline_explains_licence_login_and_offline_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError) as err:
        LVCDPipeline.from_pretrained(cache_dir=tmp_path, device="cpu")
    message = str(err.value)
    for phrase in ("licence", "huggingface-cli login", "HF_HUB_OFFLINE", "from_single_file"):
        assert phrase in message
