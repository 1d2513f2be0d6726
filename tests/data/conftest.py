"""Fixtures of the data tests: a synthetic H.264 video with known shots, a tiny random VAE, XDoG line art."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from .synthetic import synthetic_video

TINY_CONFIG = Path(__file__).parents[1] / "fixtures" / "tiny" / "tiny_config.json"
SHOTS = [20, 8, 18]  # frames per shot: clips [0, 20) and [28, 46); the 8-frame shot is too short
TRAIN_SIZE = (32, 64)  # small, so the tiny VAE stays fast on CPU (latents 4x8)


def write_video(path: Path, frames: list[np.ndarray], fps: int = 24) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module", autouse=True)
def single_torch_thread():
    """One intra-op thread: these ops are tiny, and on shared, loaded cores two threads spin-wait on each other
    (measured: the tiny VAE takes 17 ms a batch with one thread, 700 ms with two under load)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def synthetic_mp4(tmp_path_factory) -> Path:
    """46 frames at 320x576 (the analysis size, so compression noise is at its real-footage level)."""
    frames, cuts = synthetic_video(SHOTS, 320, 576)
    assert cuts == [20, 28]
    return write_video(tmp_path_factory.mktemp("video") / "synth shot.mp4", frames)


@pytest.fixture(scope="session")
def tiny_vae():
    """The tiny fixture model's VAE with random weights (same class and /8 latent geometry as the real one)."""
    from lvcd.config import config_from_sgm_json
    from lvcd.models.vae import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(config_from_sgm_json(TINY_CONFIG).vae).eval()


@pytest.fixture(scope="session")
def xdog():
    from lvcd.lineart import get_extractor

    return get_extractor("xdog")
