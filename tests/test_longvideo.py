"""The long-video planners as pure functions: every shot length from 1 to 300 frames (and other overlaps), the
official layout at N = 15 + 10k, the prev-reference key frames, noise recycling and the decoding chunks."""

from __future__ import annotations

import pytest
import torch

from lvcd.longvideo import (
    PREV_REFERENCE_SHIFT,
    official_normal_plan,
    official_prevref_plan,
    plan_decoding,
    plan_windows,
    recycle_noise,
)

LENGTHS = range(1, 301)


def _video_frames(plan, window) -> list[int]:
    """The shot frame each video position stands for, before clamping to the last frame."""
    stride = plan.video_frames - plan.overlap
    start = 1 + window.index * stride
    return list(range(start, start + plan.video_frames))


@pytest.mark.parametrize("overlap", [4, 0, 1, 2, 7, 8, 13])
def test_every_frame_is_produced_exactly_once_in_order(overlap):
    for count in LENGTHS if overlap == 4 else range(1, 120):
        plan = plan_windows(count, overlap=overlap)
        produced = [f for w in plan.windows for f in w.new_frames]
        assert produced == list(range(1, count)), (count, overlap)  # frame 0 is the reference itself
        for window in plan.windows:
            assert window.new_frames  # no superfluous window
            assert len(window.frames) == plan.window_size == 1 + overlap + 14
            assert window.frames[0] == 0 and max(window.frames) <= count - 1
            assert [window.frames[p] for p in window.new_positions] == list(window.new_frames)
            assert window.first_new_frame == window.new_frames[0]
            # Held drawings: positions past the last frame repeat it and are never kept.
            video = _video_frames(plan, window)
            for position, frame in enumerate(video, start=plan.num_reference):
                assert window.frames[position] == min(frame, count - 1)
                if frame >= count:
                    assert position not in window.new_positions


def test_the_official_layout_at_15_plus_10k():
    for k in range(0, 30):
        count = 15 + 10 * k
        plan = plan_windows(count)
        assert len(plan.windows) == k + 1
        for window in plan.windows:
            video = _video_frames(plan, window)
            assert video[-1] <= count - 1  # no held frames at all
            prev = [0] * 4 if window.index == 0 else video[:4]
            assert list(window.frames) == [0, *prev, *video]
            assert list(window.new_positions) == list(range(5 if window.index == 0 else 9, 19))
        assert plan.windows[-1].frames[-1] == count - 1


def test_prev_reference_key_frames():
    """Later windows: positions 1..4 show the previous window's last 4 frames, the overlap positions 5..8 attend to
    exactly that twin (weighted by 10), new positions to the frame 3 positions earlier and the reference."""
    prevref, normal = official_prevref_plan(), official_normal_plan()
    key_frames = prevref.key_frames.tolist()
    for count in LENGTHS:
        plan = plan_windows(count)
        for previous, window in zip(plan.windows, plan.windows[1:], strict=False):
            assert window.frames[1:5] == previous.frames[-4:] == window.frames[5:9]
            for t, (first, second) in enumerate(key_frames):
                if t <= 4:  # reference path: itself only
                    assert first == second == t
                elif t <= 8:  # overlap frames: [self ; their prev-reference twin]
                    assert first == t and window.frames[second] == window.frames[t] and second == t - 4
                else:  # new frames: [the frame 3 positions earlier ; the reference]
                    assert first == t - PREV_REFERENCE_SHIFT and second == 0
    assert torch.equal(prevref.log_weights[:, 1].nonzero().flatten(), torch.arange(5, 9))
    assert normal.log_weights is None
    assert normal.key_frames[:, 1].tolist() == [0, 1, 2, 3, 4] + [0] * 14


@pytest.mark.parametrize("overlap", [4, 0, 2, 6])
def test_noise_recycling_keeps_a_frames_noise_across_windows(overlap):
    """Recycled noise is a relabelling, never new randomness: a frame shared by two windows starts from the same noise
    in both, the prev-reference positions start from their twins' noise, and video frame f starts from the noise of
    frame f - 14 (the window's video length)."""
    plan = plan_windows(120, overlap=overlap)
    window_size, num_reference = plan.window_size, plan.num_reference
    first = torch.arange(float(window_size)).reshape(window_size, 1, 1, 1)  # noise labelled by its position
    noise = first
    for window in plan.windows:
        labels = noise.flatten().long().tolist()
        assert labels[0] == 0
        for position, frame in enumerate(_video_frames(plan, window), start=num_reference):
            assert labels[position] == num_reference + (frame - 1) % plan.video_frames, (window.index, position)
        if window.index > 0:
            assert labels[1:num_reference] == labels[num_reference : num_reference + overlap]
        noise = recycle_noise(noise, overlap)
        assert noise.shape == first.shape


def test_decoding_emits_every_frame_once_with_the_reference_as_context():
    for count in LENGTHS:
        chunks = plan_decoding(count)
        assert [f for c in chunks for f in c.output_frames] == list(range(count))
        for index, chunk in enumerate(chunks):
            assert chunk.latent_indices[0] == 0 and len(chunk.latent_indices) <= 10
            assert chunk.keep_from == (0 if index == 0 else 4)
            if index:  # the 3 frames before the kept ones were the previous chunk's last outputs
                assert chunk.latent_indices[1:4] == chunks[index - 1].latent_indices[-3:]
    with pytest.raises(ValueError, match="chunk"):
        plan_decoding(10, chunk=4, overlap=3)


def test_plan_arguments_are_checked():
    with pytest.raises(ValueError, match="at least one frame"):
        plan_windows(0)
    with pytest.raises(ValueError, match="overlap"):
        plan_windows(30, overlap=14)  # 14 video frames: no new frame per window
    with pytest.raises(ValueError, match="overlap"):
        plan_windows(30, overlap=-1)


@pytest.mark.parametrize("overlap", [0, 1, 2, 4, 7, 8, 13])
def test_prev_reference_plans_point_inside_the_window(overlap):
    """Every key frame index of the prev-reference plan is a position of the window; with overlap 0 there are no
    prev-reference or overlap positions, so nothing is weighted and the first new frames attend to themselves."""
    from lvcd.longvideo import official_prevref_plan

    size = 1 + overlap + 14
    plan = official_prevref_plan(size, overlap)
    assert plan.key_frames.min() >= 0 and plan.key_frames.max() < size
    if overlap == 0:
        assert plan.log_weights.abs().sum() == 0
        assert plan.key_frames[1:4, 0].tolist() == [1, 2, 0]  # t - 3 where it exists (0 = the reference)


@pytest.mark.parametrize(("count", "reference"), [(1, 0), (30, 0), (30, 1), (30, 15), (30, 29), (100, 40)])
def test_passes_from_a_reference_frame_produce_every_other_frame_once(count, reference):
    from lvcd.longvideo import plan_passes

    passes = plan_passes(count, reference)
    assert sorted(passes) == ([1] if reference == 0 else [-1, 1])
    produced = [reference + direction * f for direction, plan in passes.items() for w in plan.windows
                for f in w.new_frames]  # fmt: skip
    assert sorted(produced) == [f for f in range(count) if f != reference]
    with pytest.raises(ValueError):
        plan_passes(count, count)
