"""Whole workflows through the CLI: colour frames -> line art -> colorize -> evaluate; hub resolution offline."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import TINY_CONFIG, cache_official_files
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


@pytest.fixture()
def offline_hub(monkeypatch):
    """Offline mode as huggingface_hub sees it (it reads HF_HUB_OFFLINE once, when first imported, so setting the
    variable now is not enough), and a socket that refuses to connect, so nothing here can reach the network."""
    import huggingface_hub.constants

    def no_network(*args, **kwargs):
        raise AssertionError("the test tried to reach the network")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(socket.socket, "connect", no_network)


def _chain(err: BaseException) -> list[BaseException]:
    found = []
    while err is not None:
        found.append(err)
        err = err.__cause__ or err.__context__
    return found


def test_from_pretrained_offline_with_an_empty_cache_explains_what_to_do(tmp_path, offline_hub):
    from huggingface_hub.errors import LocalEntryNotFoundError

    with pytest.raises(WeightsError) as err:
        LVCDPipeline.from_pretrained(cache_dir=tmp_path, device="cpu")
    causes = _chain(err.value)[1:]
    assert isinstance(causes[0], LocalEntryNotFoundError)  # the hub's cache-only path, not a network failure
    assert any("offline mode is enabled" in str(cause) for cause in causes)
    assert not any(isinstance(cause, AssertionError) for cause in causes)
    message = str(err.value)
    for phrase in ("svd.safetensors", "licence", "hf auth login", "HF_HUB_OFFLINE", "from_single_file"):
        assert phrase in message


def test_from_pretrained_offline_loads_the_files_already_in_the_cache(tmp_path, offline_hub, tiny_weights):

    cache_official_files(tmp_path, tiny_weights)
    pipe = LVCDPipeline.from_pretrained(cache_dir=tmp_path, config=TINY_CONFIG, device="cpu")
    assert pipe.config.unet.model_channels == 32 and pipe.model.parts == (
        "unet",
        "controlnet",
        "clip",
        "cond_encoder",
        "first_stage",
    )


def test_files_in_the_cache_are_used_without_asking_the_hub(tmp_path, monkeypatch, tiny_weights):
    """Online, a cached file is still taken from the cache with no request: the hub would first ask for a newer
    revision (with retries, about 23 s on a machine without network). ``--lvcd`` without ``--svd`` is that file
    with the cached SVD, not ignored."""
    from lvcd.hub import weights_files

    attempts = []

    def no_network(*args, **kwargs):
        attempts.append(args)
        raise OSError("no network in this test")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)  # a name lookup is the first step of any request
    cache_official_files(tmp_path, tiny_weights)
    svd, lvcd = weights_files(cache_dir=tmp_path)
    assert Path(svd).resolve() == Path(tiny_weights["svd"]).resolve()
    assert Path(lvcd).resolve() == Path(tiny_weights["lvcd"]).resolve()
    own = tmp_path / "finetuned.ckpt"
    assert weights_files(None, own, cache_dir=tmp_path)[1] == str(own)
    assert weights_files(own) == (str(own), None)  # one whole-model file
    pipe = LVCDPipeline.from_pretrained(cache_dir=tmp_path, config=TINY_CONFIG, device="cpu")
    assert pipe.config.unet.model_channels == 32
    assert attempts == []


def test_without_network_the_hubs_retries_are_not_printed_before_lvcds_one_line(tmp_path, monkeypatch, capfd):
    """Without a network huggingface_hub logged two lines per retry (ten over some 20 s) before lvcd's one-line
    error; its warnings are quiet while lvcd fetches a file (its level put back after)."""
    import huggingface_hub
    import huggingface_hub.utils.logging  # noqa: F401  (sets the hub logger's own level on import)

    from lvcd.errors import WeightsError
    from lvcd.hub import LVCD_REPO, hub_file

    hub_logger = logging.getLogger("huggingface_hub")
    before = hub_logger.level

    def retrying(*args, **kwargs):  # as the hub's request retries log, then fail
        for attempt in range(1, 6):
            logging.getLogger("huggingface_hub.utils._http").warning("Retrying in 1s [Retry %d/5].", attempt)
        raise OSError("Name or service not known")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", retrying)
    with pytest.raises(WeightsError, match=r"Could not get lvcd.ckpt from huggingface.co/luckyhzt"):
        hub_file(LVCD_REPO, cache_dir=tmp_path)
    captured = capfd.readouterr()
    assert "Retrying" not in captured.err + captured.out
    assert hub_logger.level == before
