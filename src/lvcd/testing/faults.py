"""Damaged inputs for tests of lvcd's refusals (no test data needed): a truncated video, as a copy cut short leaves it.

>>> truncated_mp4("cut.mp4", frames=40, keep=0.4)   # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np


def truncated_mp4(path: str | os.PathLike, frames: int = 40, keep: float = 0.4, size: int = 64) -> Path:
    """A faststart H.264 MP4 whose header states ``frames`` frames, cut to the first ``keep`` of its bytes."""
    path = Path(path)
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=20)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for _ in range(frames):
            image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path
