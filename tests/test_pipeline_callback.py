"""``LVCDPipeline.__call__(callback=...)``: one call per denoising step over the whole shot, and cancellation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import TINY_CONFIG
from lvcd.errors import InputError
from lvcd.pipeline import LVCDPipeline, SamplingProgress


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def pipe(tiny_weights) -> LVCDPipeline:
    return LVCDPipeline.from_single_file(tiny_weights["svd"], tiny_weights["lvcd"], config=TINY_CONFIG, device="cpu")


def _lineart(count: int, width: int = 128) -> torch.Tensor:
    frames = torch.ones(count, 1, 64, width)
    for index in range(count):
        frames[index, :, :, (10 + 3 * index) % width] = 0  # a dark vertical line that moves
    return frames


def _reference(width: int = 128) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (64, width, 3), dtype=np.uint8)


SMALL = 64  # the width of the 16-frame shots: 64x64, the smallest size (what they check is per step and per frame)


def test_callback_sees_every_step_of_every_window_in_order(pipe):
    seen: list[SamplingProgress] = []
    pipe(_reference(SMALL), _lineart(16, SMALL), num_steps=2, seed=1, progress=False, callback=seen.append)
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
        pipe(_reference(SMALL), _lineart(16, SMALL), num_steps=2, seed=1, output=output, progress=False,
             work_dir=tmp_path / "work", callback=cancel_in_second_window)  # fmt: skip
    assert len(calls) == 3 and not output.exists() and list(tmp_path.glob("*.mp4*")) == []
    # the finished first window is kept: resuming gives the uninterrupted result
    resumed = pipe(_reference(SMALL), _lineart(16, SMALL), num_steps=2, seed=1, progress=False,
                   work_dir=tmp_path / "work", resume=True)  # fmt: skip
    straight = pipe(_reference(SMALL), _lineart(16, SMALL), num_steps=2, seed=1, progress=False)
    assert torch.equal(resumed.latents, straight.latents)


def test_a_cancel_during_decoding_writes_nothing(pipe, tmp_path):
    """Stop pressed while the frames are decoded: the output is not written; the sampled windows are kept."""

    def cancel_while_decoding(progress: SamplingProgress) -> None:
        if progress.phase == "decoding" and progress.frame == 5:
            raise Stop

    output = tmp_path / "shot.mp4"
    with pytest.raises(Stop):
        pipe(_reference(SMALL), _lineart(16, SMALL), num_steps=1, seed=1, output=output, progress=False,
             work_dir=tmp_path / "work", callback=cancel_while_decoding)  # fmt: skip
    assert not output.exists() and list(tmp_path.glob("*.mp4*")) == []
    assert any((tmp_path / "work").iterdir())


def test_a_job_stopped_while_decoding_decodes_only_what_is_left_and_writes_the_same_frames(pipe, tmp_path, monkeypatch):
    """A job stopped while decoding decoded every frame again when resumed (1000 frames at 64x64: 137 s). Each decoded
    frame is kept in the work directory (a lossless PNG) until the output is written: resumed, the chunks whose frames
    are all kept are not decoded, and the output is the uninterrupted run's, byte for byte."""

    def stop_at(frame):
        def callback(progress: SamplingProgress) -> None:
            if progress.phase == "decoding" and progress.frame == frame:
                raise Stop

        return callback

    work, shot = tmp_path / "work", {"num_steps": 1, "seed": 1, "progress": False}
    with pytest.raises(Stop):
        pipe(_reference(SMALL), _lineart(30, SMALL), output=tmp_path / "shot", work_dir=work, callback=stop_at(17),
             **shot)  # fmt: skip
    assert sorted(p.name for p in work.glob("decoded_*")) == [f"decoded_{i:06d}.png" for i in range(17)]
    assert not (tmp_path / "shot").exists()

    decoded, original = [], pipe.model.vae.decode
    monkeypatch.setattr(
        pipe.model.vae, "decode", lambda z, num_frames: decoded.append(num_frames) or original(z, num_frames)
    )
    pipe(_reference(SMALL), _lineart(30, SMALL), output=tmp_path / "shot", work_dir=work, resume=True, **shot)
    # chunks of 10 latents: frames 0-9 and 10-15 were kept whole, 16-21 (16 kept), 22-27 and 28-29 are decoded
    assert decoded == [10, 10, 6]
    assert list(work.glob("decoded_*")) == [] and not (work / "decoding.json").exists()  # the output holds them
    monkeypatch.undo()
    pipe(_reference(SMALL), _lineart(30, SMALL), output=tmp_path / "straight", **shot)
    resumed, straight = sorted((tmp_path / "shot").iterdir()), sorted((tmp_path / "straight").iterdir())
    assert [p.name for p in resumed] == [p.name for p in straight] and len(resumed) == 30
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(resumed, straight, strict=True))


def test_a_full_disk_while_decoding_stops_keeping_frames_but_writes_the_output(pipe, tmp_path, monkeypatch):
    """Keeping the decoded frames must never be what fails a job: when the disk fills up, the frames kept so far are
    deleted (the output needs the room more), a warning says so, and the output is written as usual."""
    import errno
    import warnings

    import lvcd.workdir

    original = lvcd.workdir.atomic_output

    def full_from_frame_12(path, **options):
        if path.name >= "decoded_000012.png":
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(path, **options)

    monkeypatch.setattr(lvcd.workdir, "atomic_output", full_from_frame_12)
    work, shot = tmp_path / "work", {"num_steps": 1, "seed": 1, "progress": False}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe(_reference(SMALL), _lineart(20, SMALL), output=tmp_path / "shot", work_dir=work, **shot)
    said = [str(w.message) for w in caught if "disk is full" in str(w.message)]
    assert len(said) == 1 and "decoded frames are no longer kept" in said[0], said
    assert list(work.glob("decoded_*")) == [] and not (work / "decoding.json").exists()
    monkeypatch.undo()
    pipe(_reference(SMALL), _lineart(20, SMALL), output=tmp_path / "straight", **shot)
    written, straight = sorted((tmp_path / "shot").iterdir()), sorted((tmp_path / "straight").iterdir())
    assert len(written) == 20 and [a.read_bytes() for a in written] == [b.read_bytes() for b in straight]


def test_a_one_frame_shot_makes_no_call(pipe):
    """Nothing is sampled (the reference alone): the callback is not called, during decoding either."""
    seen = []
    result = pipe(_reference(), _lineart(1), num_steps=1, seed=1, progress=False, callback=seen.append)
    assert seen == [] and result.latents.shape[0] == 1


def test_frames_returned_without_an_output_are_one_tensor_and_too_many_are_refused_first(pipe, monkeypatch):
    """Without output= the frames were a list stacked at the end: every frame held twice, and a shot whose frames
    could not fit failed after all its sampling. They are filled into one channels-last tensor (ComfyUI's and numpy's
    (N, H, W, 3) view of it needs no copy), and a shot whose frames cannot fit is refused before any work."""
    import lvcd.host

    result = pipe(_reference(), _lineart(3), num_steps=1, seed=1, progress=False)
    assert result.frames.shape == (3, 3, 64, 128) and result.frames.dtype == torch.float32
    assert result.frames.permute(0, 2, 3, 1).is_contiguous()
    assert 0 <= result.frames.min() and result.frames.max() <= 1 and result.frames.std() > 0
    calls = []
    monkeypatch.setattr(pipe, "_sample", lambda *args: calls.append(args))
    monkeypatch.setattr(lvcd.host, "available_ram", lambda: 200_000)  # 3 frames of 64x128 x 3 x 4 bytes: 295 kB
    with pytest.raises(InputError, match=r"The 3 colorized frames at 128x64 need 0.0 GB .* give output="):
        pipe(_reference(), _lineart(3), num_steps=1, seed=1, progress=False)
    assert calls == []


def test_a_result_saves_what_output_would_have_written_and_gives_images(pipe, tmp_path):
    """Notebook use: colorize, look at the frames, then keep them: ``save`` writes the same file as ``output=``, and
    ``images`` gives the frames as PIL images; with the frames streamed to an output there is nothing to save."""
    from PIL import Image

    kept = pipe(_reference(), _lineart(3), num_steps=1, seed=4, progress=False)
    streamed = pipe(_reference(), _lineart(3), num_steps=1, seed=4, progress=False, output=tmp_path / "direct")
    saved = kept.save(tmp_path / "saved")
    direct, again = sorted((tmp_path / "direct").iterdir()), sorted(saved.iterdir())
    assert [p.name for p in direct] == [p.name for p in again] and len(direct) == 3
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(direct, again, strict=True))
    images = kept.images()
    assert [image.size for image in images] == [(128, 64)] * 3
    assert np.array_equal(np.asarray(images[2]), np.asarray(Image.open(direct[2])))
    with pytest.raises(InputError, match="already exists"):
        kept.save(tmp_path / "saved")
    with pytest.raises(InputError, match=r"were written to .*direct as they were decoded"):
        streamed.save(tmp_path / "other")


def test_a_saved_result_names_frames_as_output_would_and_never_replaces_an_input(pipe, tmp_path):
    """``save`` of a shot read from files: PNG frames named as the line-art files (as ``output=`` names them), and the
    shot's inputs (the line-art folder, the reference's folder) refused even with overwrite=True."""
    from PIL import Image

    lineart = tmp_path / "lineart"
    lineart.mkdir()
    for index, frame in enumerate(_lineart(3, SMALL)):
        Image.fromarray((frame[0].numpy() * 255).astype(np.uint8)).save(lineart / f"take_{index + 1}.png")
    Image.fromarray(_reference(SMALL)).save(tmp_path / "ref.png")
    before = {p.name: p.read_bytes() for p in lineart.iterdir()}
    kept = pipe(tmp_path / "ref.png", lineart, num_steps=1, seed=4, progress=False)
    pipe(tmp_path / "ref.png", lineart, num_steps=1, seed=4, progress=False, output=tmp_path / "direct")
    saved = kept.save(tmp_path / "saved")
    assert sorted(p.name for p in saved.iterdir()) == ["take_1.png", "take_2.png", "take_3.png"]
    assert all((saved / name).read_bytes() == (tmp_path / "direct" / name).read_bytes() for name in before)
    for target in (lineart, tmp_path):
        with pytest.raises(InputError, match="input"):
            kept.save(target, overwrite=True)
    assert {p.name: p.read_bytes() for p in lineart.iterdir()} == before


def test_numbered_output_frames_are_announced_when_the_line_art_names_cannot_be_used(pipe, tmp_path):
    from PIL import Image

    lineart = tmp_path / "lineart"
    lineart.mkdir()
    for index, name in enumerate(["f1", "F1", "f2"]):
        Image.fromarray((_lineart(3, SMALL)[index, 0].numpy() * 255).astype(np.uint8)).save(lineart / f"{name}.png")
    with pytest.warns(
        UserWarning,
        match=r"cannot name the output frames \(the frame names '(f1|F1)' and '(f1|F1)' differ only in case",
    ) as caught:
        pipe(_reference(SMALL), lineart, num_steps=1, seed=4, progress=False, output=tmp_path / "out")
    assert caught[0].filename == __file__  # points at the caller's line
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["00000.png", "00001.png", "00002.png"]
