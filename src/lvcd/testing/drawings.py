"""Line art for tests and examples: a ring moving left to right, dark lines on white."""

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
