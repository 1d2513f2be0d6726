"""GIF output: exact palettes for flat-colour frames, median cut for the others (the pixels it always gave), made in
a worker thread while the caller makes the next frame, deterministic, errors of that thread surfaced."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import lvcd.io.writers
from lvcd.io import FrameSource, open_writer

av = pytest.importorskip("av")


def _flat_frame(index: int, colors: int = 200, size_hw=(36, 52)) -> np.ndarray:
    """A frame of ``colors`` flat colours (every one used), shifted per frame."""
    palette = np.random.default_rng(7).integers(0, 256, (colors, 3), dtype=np.uint8)
    labels = (np.arange(size_hw[0] * size_hw[1]).reshape(size_hw) // 3 + index) % colors
    return palette[labels]


def _write(path: Path, frames) -> bytes:
    with open_writer(path, fps=12) as writer:
        for frame in frames:
            writer.write(frame)
    return path.read_bytes()


def _median_cut_pixels(frame: np.ndarray) -> np.ndarray:
    """What the GIF writer always gave: Pillow's median cut to 256 colours, no dithering."""
    image = Image.fromarray(frame).quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    return np.asarray(image.convert("RGB"))


def test_flat_colour_frames_get_exactly_their_colours_and_the_same_bytes_each_time(tmp_path):
    frames = [_flat_frame(index) for index in range(4)] + [_flat_frame(0, colors=256)]
    first = _write(tmp_path / "a.gif", frames)
    assert _write(tmp_path / "b.gif", frames) == first
    decoded = list(FrameSource.open(tmp_path / "a.gif"))
    for got, frame in zip(decoded, frames, strict=True):
        assert np.array_equal(got, frame) and np.array_equal(got, _median_cut_pixels(frame))
    indices, palette = lvcd.io.writers.gif_palette_frame(frames[0])
    colors = sorted(map(tuple, np.unique(frames[0].reshape(-1, 3), axis=0)))
    assert [tuple(c) for c in palette[:200, 1:]] == colors and np.array_equal(palette[:200, 1:][indices], frames[0])


def test_frames_of_many_colours_keep_the_median_cut_pixels(tmp_path):
    yy, xx = np.mgrid[:40, :64]
    gradient = np.stack([xx * 4, yy * 6, (xx + yy) * 2], axis=-1).astype(np.uint8)
    noise = np.random.default_rng(3).integers(0, 256, (40, 64, 3), dtype=np.uint8)
    _write(tmp_path / "many.gif", [gradient, noise])
    decoded = list(FrameSource.open(tmp_path / "many.gif"))
    for got, frame in zip(decoded, (gradient, noise), strict=True):
        assert np.array_equal(got, _median_cut_pixels(frame))


def test_write_returns_while_the_previous_frames_palette_is_still_being_made(tmp_path, monkeypatch):
    release, calls = threading.Event(), []
    palette_frame = lvcd.io.writers.gif_palette_frame

    def slow_palette_frame(frame):
        calls.append(threading.current_thread().name)
        assert release.wait(30)
        return palette_frame(frame)

    monkeypatch.setattr(lvcd.io.writers, "gif_palette_frame", slow_palette_frame)
    frames = [_flat_frame(index) for index in range(3)]
    writer = open_writer(tmp_path / "out.gif", fps=12)
    writer.write(frames[0])
    writer.write(frames[1])  # returns: the first frame's palette is still waiting
    assert not release.is_set()
    release.set()
    writer.write(frames[2])
    writer.close()
    assert calls and all(name.startswith("lvcd-gif") for name in calls)
    assert all(np.array_equal(a, b) for a, b in zip(FrameSource.open(tmp_path / "out.gif"), frames, strict=True))


def test_an_error_in_the_encoding_thread_is_raised_and_leaves_nothing(tmp_path, monkeypatch):
    def broken(frame):
        raise MemoryError("no memory for a palette")

    monkeypatch.setattr(lvcd.io.writers, "gif_palette_frame", broken)
    with pytest.raises(MemoryError, match="no memory for a palette"):
        with open_writer(tmp_path / "out.gif") as writer:
            for index in range(5):
                writer.write(_flat_frame(index))
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    writer = open_writer(tmp_path / "aborted.gif")
    writer.write(_flat_frame(0))
    writer.abort()  # with a frame still in the thread
    assert sorted(p.name for p in tmp_path.iterdir()) == []
