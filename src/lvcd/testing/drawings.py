"""Line art for tests, examples and benchmarks: a ring moving left to right (dark lines on white), and simulated
scans of any line art."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def draw_ring_shot(folder: Path, count: int, size_hw: tuple[int, int] = (64, 128)) -> None:
    """Write ``count`` drawings ``f000.png``... of a ring moving across the frame into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    height, width = size_hw
    yy, xx = np.mgrid[:height, :width]
    for index in range(count):
        cx = width * (0.3 + 0.4 * index / max(count, 1))
        ring = np.abs(np.hypot(xx - cx, yy - height / 2) - height / 4) < 1.5
        Image.fromarray(np.where(ring, 0, 255).astype(np.uint8)).save(folder / f"f{index:03d}.png")


def scanned(
    lineart: np.ndarray, paper: float, ink: float, grain: float, seed: int = 0, drop: float = 0.0
) -> np.ndarray:
    """Dark-lines line art (uint8, (H, W) or (N, H, W)) as a simulated scan or photo, uint8: ``light (paper (1 - d)
    + ink d) + N(0, grain)`` with ``d`` the line darkness; ``light`` falls linearly by ``drop`` levels of the paper
    across the frame (0.7 along x, 0.3 along y), as under a lamp."""
    h, w = lineart.shape[-2:]
    ys, xs = np.mgrid[:h, :w]
    light = 1 - drop / paper * (0.7 * xs / max(w - 1, 1) + 0.3 * ys / max(h - 1, 1))
    darkness = 1 - lineart.astype(np.float32) / 255
    noise = np.random.default_rng(seed).normal(0, grain, darkness.shape)
    return np.clip(np.rint(light * (paper * (1 - darkness) + ink * darkness) + noise), 0, 255).astype(np.uint8)
