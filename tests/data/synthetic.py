"""Synthetic 'animation' shots for the data tests: flat cel colours, moving shapes, a slow brightness drift.

Colours sit at the centres of the 1,000-colour quantization cells (level k spans [25.6 k, 25.6 (k+1))), like
the flat paint of real cels, so mild noise and a slow drift do not move pixels across cells; motion changes
the histogram only where a shape occludes another or leaves the frame.
"""

from __future__ import annotations

import numpy as np


def _cell(r: int, g: int, b: int) -> tuple[int, int, int]:
    """Centre of quantization cell (r, g, b), each 0..9."""
    return tuple(int(25.6 * level + 12.8) for level in (r, g, b))


# (sky, ground, disc, box): distinct palettes, one per shot.
PALETTES = [
    (_cell(3, 6, 9), _cell(2, 6, 1), _cell(9, 8, 2), _cell(8, 1, 1)),
    (_cell(9, 7, 5), _cell(5, 3, 1), _cell(0, 0, 4), _cell(6, 1, 6)),
    (_cell(1, 1, 2), _cell(3, 2, 4), _cell(9, 5, 0), _cell(0, 7, 7)),
    (_cell(7, 9, 7), _cell(4, 7, 3), _cell(9, 9, 9), _cell(3, 1, 0)),
]


def scene_frame(palette: int, t: int, height: int = 72, width: int = 128, seed: int = 0) -> np.ndarray:
    """Frame ``t`` of a shot: sky over ground, a disc moving right and bobbing in the sky, a box moving left on
    the ground, brightness oscillating by +-2 % (period 40 frames), Gaussian noise (std 1.5 levels)."""
    sky, ground, disc, box = (np.array(c, dtype=np.float64) for c in PALETTES[palette % len(PALETTES)])
    image = np.empty((height, width, 3))
    horizon = int(0.6 * height)
    image[:horizon], image[horizon:] = sky, ground
    yy, xx = np.mgrid[0:height, 0:width]
    cx, cy = (0.15 + 0.012 * t) * width, (0.3 + 0.05 * np.sin(0.3 * t)) * height
    image[(xx - cx) ** 2 + (yy - cy) ** 2 < (0.15 * height) ** 2] = disc
    bx, by = int((0.8 - 0.01 * t) * width), int(0.7 * height)
    image[by : by + height // 5, bx : bx + width // 8] = box
    image *= 1.0 + 0.02 * np.sin(2 * np.pi * t / 40)
    image += np.random.default_rng(seed * 1000 + t).normal(0.0, 1.5, image.shape)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def synthetic_video(scene_lengths: list[int], height: int = 72, width: int = 128) -> tuple[list[np.ndarray], list[int]]:
    """Frames of consecutive shots and the indices where a new shot starts (the true cuts)."""
    frames, cuts = [], []
    for scene, length in enumerate(scene_lengths):
        if scene:
            cuts.append(len(frames))
        frames.extend(scene_frame(scene, t, height, width, seed=scene) for t in range(length))
    return frames, cuts
