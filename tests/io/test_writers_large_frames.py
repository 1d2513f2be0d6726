"""lvcd.io.writers (options from lvcd.io.formats): frames above 4K UHD are encoded with x264 settings that keep fewer frames in memory."""

from __future__ import annotations

import numpy as np

import lvcd.io.formats as formats
from lvcd.io.writers import LARGE_FRAME_PIXELS, h264_options, open_writer


def test_frames_up_to_4k_keep_the_usual_options_larger_ones_drop_b_frames_and_references():
    usual = h264_options(2160, 3840)
    assert LARGE_FRAME_PIXELS == 3840 * 2160
    assert usual == {"crf": "18", "preset": "medium", "threads": "1", "x264-params": "mbtree=0"}
    large = h264_options(4096, 8192)
    assert large["x264-params"] == "mbtree=0:bframes=0:ref=1"
    assert {key: value for key, value in large.items() if key != "x264-params"} == {
        key: value for key, value in usual.items() if key != "x264-params"
    }
    assert h264_options(2160, 3840)["x264-params"] == "mbtree=0"  # a fresh dict each time: never changed in place


def test_a_large_frame_video_has_no_b_frames(tmp_path, monkeypatch):
    monkeypatch.setattr(formats, "LARGE_FRAME_PIXELS", 0)  # every frame counts as large: a small, fast file
    rng = np.random.default_rng(0)
    with open_writer(tmp_path / "large.mp4") as writer:
        for _ in range(6):
            writer.write(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    data = (tmp_path / "large.mp4").read_bytes()
    assert b"bframes=0" in data and b" ref=1 " in data  # x264 writes its settings into the stream
    monkeypatch.setattr(formats, "LARGE_FRAME_PIXELS", 3840 * 2160)
    with open_writer(tmp_path / "usual.mp4") as writer:
        writer.write(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8))
    assert b"bframes=3" in (tmp_path / "usual.mp4").read_bytes()
