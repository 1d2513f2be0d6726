"""``LVCDPipeline.__call__(callback=...)``: one call per denoising step over the whole shot, and cancellation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import TINY_CONFIG
from lvcd.pipeline import LVCDPipeline, SamplingProgress


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def pipe(tiny_weights) -> LVCDPipeline:
    return LVCDPipeline.from_single_file(tiny_weights["svd"], tiny_weights["lvcd"], config=TINY_CONFIG, device="cpu")


def _lineart(count: int) -> torch.Tensor:
    frames = torch.ones(count, 1, 64, 128)
    for index in range(count):
        frames[index, :, :, 10 + 3 * index] = 0  # a dark vertical line that moves
    return frames


def _reference() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (64, 128, 3), dtype=np.uint8)


def test_callback_sees_every_step_of_every_window_in_order(pipe):
    seen: list[SamplingProgress] = []
    pipe(_reference(), _lineart(16), num_steps=2, seed=1, progress=False, callback=seen.append)
    windows = seen[0].windows
    assert windows == 2  # 16 frames: frame 0 + 14, then the last frame in a held window
    sampling = [p for p in seen if p.phase == "sampling"]
    assert [(p.window, p.step) for p in sampling] == [(w, s) for w in range(windows) for s in range(2)]
    assert all(p.steps == 2 and p.windows == windows for p in seen)
    decoding = seen[len(sampling) :]  # then one call per decoded frame, every step counted as done
    assert [(p.phase, p.frame, p.frames) for p in decoding] == [("decoding", f, 16) for f in range(1, 17)]
    assert all(p.window * p.steps + p.step + 1 == p.windows * p.steps for p in decoding)


def test_an_exception_from_the_callback_cancels_before_the_output_is_written(pipe, tmp_path):
    calls = []

    def cancel_in_second_window(progress: SamplingProgress) -> None:
        calls.append(progress)
        if progress.window == 1:
            raise Stop

    output = tmp_path / "shot.mp4"
    with pytest.raises(Stop):
        pipe(_reference(), _lineart(16), num_steps=2, seed=1, output=output, progress=False,
             work_dir=tmp_path / "work", callback=cancel_in_second_window)  # fmt: skip
    assert len(calls) == 3 and not output.exists() and list(tmp_path.glob("*.mp4*")) == []
    # the finished first window is kept: resuming gives the uninterrupted result
    resumed = pipe(_reference(), _lineart(16), num_steps=2, seed=1, progress=False, work_dir=tmp_path / "work",
                   resume=True)  # fmt: skip
    straight = pipe(_reference(), _lineart(16), num_steps=2, seed=1, progress=False)
    assert torch.equal(resumed.latents, straight.latents)


def test_a_cancel_during_decoding_writes_nothing(pipe, tmp_path):
    """Stop pressed while the frames are decoded: the output is not written; the sampled windows are kept."""

    def cancel_while_decoding(progress: SamplingProgress) -> None:
        if progress.phase == "decoding" and progress.frame == 5:
            raise Stop

    output = tmp_path / "shot.mp4"
    with pytest.raises(Stop):
        pipe(_reference(), _lineart(16), num_steps=1, seed=1, output=output, progress=False,
             work_dir=tmp_path / "work", callback=cancel_while_decoding)  # fmt: skip
    assert not output.exists() and list(tmp_path.glob("*.mp4*")) == []
    assert any((tmp_path / "work").iterdir())


def test_a_one_frame_shot_makes_no_call(pipe):
    """Nothing is sampled (the reference alone): the callback is not called, during decoding either."""
    seen = []
    result = pipe(_reference(), _lineart(1), num_steps=1, seed=1, progress=False, callback=seen.append)
    assert seen == [] and result.latents.shape[0] == 1
