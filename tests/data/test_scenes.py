"""Scene splitting: quantization, the RMSE unit, known cuts of a synthetic video, clip lengths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lvcd.data.scenes import (
    REFERENCE_PIXELS,
    SceneSplitConfig,
    clip_ranges,
    color_histogram,
    histogram_rmse,
    scene_ranges,
    split_scenes,
)
from lvcd.errors import InputError

from .synthetic import scene_frame, synthetic_video

REAL_SHOT = Path(__file__).parents[1] / "fixtures" / "data" / "shot"  # 40 frames of one real shot, at 128x230


def _real_shot() -> list[np.ndarray]:
    return [np.asarray(Image.open(path).convert("RGB")) for path in sorted(REAL_SHOT.glob("*.png"))]


def _close_up(frame: np.ndarray) -> np.ndarray:
    """The same drawing framed closer: the centre half, enlarged to the frame size (another shot of the scene)."""
    height, width = frame.shape[:2]
    crop = frame[height // 4 : height // 4 + height // 2, width // 3 : width // 3 + width // 2]
    return np.asarray(Image.fromarray(crop).resize((width, height), Image.BICUBIC))


def test_quantization_is_ten_levels_per_channel():
    # level = v * 10 // 256: 0..25 -> 0, 26..51 -> 1, ..., 231..255 -> 9; bin = 100 R + 10 G + B.
    values = np.array([0, 25, 26, 51, 52, 230, 231, 255], dtype=np.uint8)
    frame = np.stack([values, np.zeros_like(values), np.full_like(values, 255)], axis=-1)[None]
    hist = color_histogram(frame)
    assert hist.shape == (1000,)
    assert hist.sum() == pytest.approx(1.0)
    expected_levels = [0, 0, 1, 1, 2, 8, 9, 9]
    for level in set(expected_levels):
        assert hist[100 * level + 9] == pytest.approx(expected_levels.count(level) / len(values))


def test_rmse_unit_is_pixel_counts_at_64x115():
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 255
    blue = np.zeros((8, 8, 3), np.uint8)  # another size: histograms are fractions, so the size does not matter
    blue[..., 2] = 255
    score = histogram_rmse(color_histogram(red), color_histogram(blue))
    # Two bins differ by all 7,360 pixels of a 64x115 frame: sqrt(2 * 7360^2 / 1000).
    assert REFERENCE_PIXELS == 64 * 115
    assert score == pytest.approx(REFERENCE_PIXELS * np.sqrt(2 / 1000))
    assert histogram_rmse(color_histogram(red), color_histogram(red)) == 0.0


def test_finds_the_known_cuts_of_a_synthetic_video():
    frames, cuts = synthetic_video([30, 45, 20, 25])
    split = split_scenes(frames)
    assert split.cuts == cuts == [30, 75, 95]
    assert split.scenes == [(0, 30), (30, 75), (75, 95), (95, 120)]
    assert split.clips == split.scenes  # all within 15..200
    scores = np.array(split.scores)
    assert len(scores) == len(frames) - 1
    at_cuts = scores[[c - 1 for c in cuts]]
    inside = np.delete(scores, [c - 1 for c in cuts])
    # Motion, a +-2 % brightness oscillation and noise stay far below 30; cuts are far above.
    assert inside.max() < 5 and at_cuts.min() > 100


def test_cut_between_two_framings_of_the_same_setting():
    # Same palette, but the second shot is a close-up (objects twice as large): still a cut.
    wide = [scene_frame(0, t) for t in range(20)]
    # A held close-up: centre crop of a 2x rendering, fresh noise every frame.
    close = [scene_frame(0, 0, 144, 256, seed=t + 1)[36:108, 64:192] for t in range(20)]
    assert split_scenes(wide + close).cuts == [20]


def test_threshold_is_configurable():
    frames, _ = synthetic_video([20, 20])
    assert split_scenes(frames, SceneSplitConfig(threshold=1e6)).cuts == []
    assert split_scenes(frames, SceneSplitConfig(threshold=0.01)).cuts != [20]  # noise alone exceeds it


def test_clip_ranges_drop_short_and_split_long_scenes():
    config = SceneSplitConfig()
    scenes = scene_ranges(1000, [10, 30, 480, 681])
    assert scenes == [(0, 10), (10, 30), (30, 480), (480, 681), (681, 1000)]
    clips = clip_ranges(scenes, config)
    # 10 frames: dropped; 20: kept; 450: 3 x 150; 201: 101 + 100; 319: 160 + 159.
    assert clips == [(10, 30), (30, 180), (180, 330), (330, 480), (480, 581), (581, 681), (681, 841), (841, 1000)]
    assert all(15 <= stop - start <= 200 for start, stop in clips)
    dropped = clip_ranges(scenes, SceneSplitConfig(long_scenes="drop"))
    assert dropped == [(10, 30)]


def test_bad_config_is_an_input_error():
    with pytest.raises(InputError):
        SceneSplitConfig(threshold=0)
    with pytest.raises(InputError):
        SceneSplitConfig(min_frames=20, max_frames=10)
    with pytest.raises(InputError):
        SceneSplitConfig(long_scenes="keep")


def test_a_continuous_real_shot_is_not_cut():
    """Real hand-drawn frames (camera move, grain, flicker): counted at 320x576 this shot was cut 22 times."""
    frames = _real_shot()
    assert len(frames) == 40
    split = split_scenes(frames)
    assert split.cuts == [] and split.clips == [(0, 40)]
    assert max(split.scores) < 15  # half the threshold: a margin, not a coincidence


def test_two_real_shots_joined_are_cut_once_at_the_join():
    frames = _real_shot()
    close_ups = split_scenes(frames[:20] + [_close_up(f) for f in frames[20:]])
    assert close_ups.cuts == [20] and close_ups.scores[19] > 60
    other_palette = [f[..., [2, 0, 1]] for f in frames[20:]]  # the same motion in other colours
    assert split_scenes(frames[:20] + other_palette).cuts == [20]
    assert split_scenes(frames[:20] + frames[::-1][:20]).cuts == []  # a jump in time inside one shot is no cut
