"""A reference inside the shot (``reference_frame=K``, ``--reference-frame K``): the shot is coloured in two passes
from frame K, each exactly LVCD's single pass over a shot that starts at the reference: K back to 0, then K to the
end. Frame 0 (the default) is the official single pass, untouched."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import TINY_CONFIG
from lvcd.errors import InputError
from lvcd.pipeline import LVCDPipeline
from lvcd.workdir import WorkDirMismatch

KW = dict(num_steps=1, seed=5, progress=False, decode=False)  # the latents are what is compared
COUNT, K = 20, 7  # 8 frames toward frame 0 (one window), 13 toward the end (one window)


@pytest.fixture(scope="module")
def pipe(tiny_weights) -> LVCDPipeline:
    return LVCDPipeline.from_single_file(tiny_weights["svd"], tiny_weights["lvcd"], config=TINY_CONFIG, device="cpu")


def _lineart(count: int = COUNT) -> list[np.ndarray]:
    """Dark lines on white, (64, 128) uint8; the lines move."""
    frames = [np.full((64, 128), 255, np.uint8) for _ in range(count)]
    for index, frame in enumerate(frames):
        frame[10 + index % 40 : 12 + index % 40] = 0
        frame[:, 30 + 2 * (index % 40)] = 0
    return frames


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (64, 128, 3), dtype=np.uint8)


REFERENCE = _image(0)


def _quiet(run):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # late keyframes are said: not what these tests look at
        return run()


def test_the_shot_is_the_two_single_passes_from_the_reference(pipe):
    lineart, early, late = _lineart(), _image(1), _image(2)
    whole = _quiet(
        lambda: pipe(REFERENCE, lineart, **{**KW, "decode": True}, reference_frame=K, keyframes={2: early, 15: late})
    )
    forward = _quiet(lambda: pipe(REFERENCE, lineart[K:], **KW, keyframes={15 - K: late}))
    backward = _quiet(lambda: pipe(REFERENCE, lineart[K::-1], **KW, keyframes={K - 2: early}))
    assert whole.latents.shape[0] == whole.frames.shape[0] == COUNT
    torch.testing.assert_close(whole.latents[K:], forward.latents, rtol=0, atol=0)
    torch.testing.assert_close(whole.latents[: K + 1], backward.latents.flip(0), rtol=0, atol=0)
    assert whole.seed == 5


@pytest.mark.parametrize("reference_frame", [0, 11])
def test_the_first_and_last_frames_are_single_passes(pipe, reference_frame):
    lineart = _lineart(12)
    ordered = lineart if reference_frame == 0 else lineart[::-1]
    shot = pipe(REFERENCE, lineart, **KW, reference_frame=reference_frame)
    single = pipe(REFERENCE, ordered, **KW)
    expected = single.latents if reference_frame == 0 else single.latents.flip(0)
    torch.testing.assert_close(shot.latents, expected, rtol=0, atol=0)


def test_an_interrupted_two_pass_job_resumes_to_the_same_latents(pipe, tmp_path):
    lineart, work = _lineart(), tmp_path / "work"
    expected = pipe(REFERENCE, lineart, **KW, reference_frame=K).latents
    seen = []

    def stop_in_the_second_pass(progress):
        seen.append(progress)
        if progress.window == 1:  # the pass toward the end: the one toward frame 0 is finished
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pipe(REFERENCE, lineart, **KW, reference_frame=K, work_dir=work, callback=stop_in_the_second_pass)
    assert (work / "backward-window_000000.safetensors").is_file() and not (work / "window_000000.safetensors").exists()
    assert {p.windows for p in seen} == {2}
    resumed = pipe(REFERENCE, lineart, **{**KW, "seed": None}, reference_frame=K, work_dir=work, resume=True)
    torch.testing.assert_close(resumed.latents, expected, rtol=0, atol=0)
    assert resumed.seed == 5  # recorded by the first pass, taken by the second
    with pytest.raises(WorkDirMismatch) as err:
        pipe(REFERENCE, lineart, **KW, reference_frame=K + 1, work_dir=work, resume=True)
    assert "reference frame" in str(err.value)


def test_a_callback_counts_the_windows_of_both_passes_as_one(pipe):
    seen = []
    pipe(REFERENCE, _lineart(40), **KW, reference_frame=20, callback=seen.append)
    sampling = [(p.window, p.windows) for p in seen if p.phase == "sampling"]
    windows = {total for _, total in sampling}
    assert len(windows) == 1 and windows.pop() >= 3
    assert [w for w, _ in sampling] == sorted(w for w, _ in sampling) and sampling[-1][0] == sampling[-1][1] - 1


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        (dict(reference_frame=-1), ("reference_frame",)),
        (dict(reference_frame=1.5), ("reference_frame",)),
        (dict(reference_frame=True), ("reference_frame",)),
        (dict(reference_frame=COUNT), ("reference_frame 20", "0..19")),
        (dict(reference_frame=K, initial_noise=torch.zeros(19, 4, 8, 16)), ("initial_noise", "reference_frame")),
        (
            dict(reference_frame=K, keyframes={K: REFERENCE}),
            ("Keyframe index 7", "reference's frame (reference_frame=7)"),
        ),
        (dict(keyframes={0: REFERENCE}), ("Keyframe index 0",)),
    ],
    ids=["negative", "float", "bool", "past-the-end", "with-initial-noise", "keyframe-on-it", "keyframe-0"],
)
def test_a_wrong_reference_frame_is_one_line_before_sampling(pipe, monkeypatch, kwargs, words):
    monkeypatch.setattr(LVCDPipeline, "_sample", lambda *a, **k: pytest.fail("sampling started"))
    with pytest.raises(InputError) as err:
        pipe(REFERENCE, _lineart(), **{**KW, **kwargs})
    assert "\n" not in str(err.value) and all(word in str(err.value) for word in words), err.value


def test_a_late_keyframe_of_either_pass_is_named_by_its_shot_frame(pipe):
    with pytest.warns(
        UserWarning,
        match=r"keyframe 0 changes nothing.*toward frame 0.*starts at frame 6; give keyframes at or after frame 6",
    ):
        pipe(REFERENCE, _lineart(), **KW, reference_frame=K, keyframes={0: _image(3)})


def test_the_cli_takes_reference_frame(tiny_weights, tmp_path):
    from lvcd.cli import app

    folder = tmp_path / "lineart"
    folder.mkdir()
    for index, frame in enumerate(_lineart()):
        Image.fromarray(frame).save(folder / f"{index:03d}.png")
    reference = tmp_path / "ref.png"
    Image.fromarray(REFERENCE).save(reference)
    base = ["colorize", "--svd", str(tiny_weights["svd"]), "--lvcd", str(tiny_weights["lvcd"]), "--config",
            str(TINY_CONFIG), "-r", str(reference), "-l", str(folder), "--steps", "1", "--seed", "5", "--quiet"]  # fmt: skip
    past = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "past"), "--reference-frame", "20"])
    assert past.exit_code == 2 and "--reference-frame 20 is outside the shot's frames 0..19" in past.output
    assert not (tmp_path / "past").exists()
    done = CliRunner().invoke(app, [*base, "-o", str(tmp_path / "out"), "--reference-frame", str(K)])
    assert done.exit_code == 0, done.output
    assert len(list((tmp_path / "out").glob("*.png"))) == COUNT
    assert not list(tmp_path.glob(".out.lvcd-work*"))  # both passes' state removed after success


def _stop_at(window: int, error=KeyboardInterrupt):
    def stop(progress):
        if progress.window == window:
            raise error

    return stop


def test_a_job_stopped_in_its_first_pass_resumes_with_its_recorded_seed(pipe, tmp_path):
    """The CLI takes a resumed job's seed from its work directory before the pipeline runs: a job stopped in the pass
    toward frame 0 (the first) has it there too."""
    from lvcd.cli.jobs import open_job

    lineart, work = _lineart(40), tmp_path / "work"  # 21 frames toward frame 0: two windows
    with pytest.raises(KeyboardInterrupt):
        pipe(REFERENCE, lineart, **{**KW, "seed": None}, reference_frame=20, work_dir=work, callback=_stop_at(1))
    assert (work / "backward-window_000000.safetensors").exists()
    opened, seed = open_job(work, resume=True, seed=None)
    resumed = pipe(REFERENCE, lineart, **{**KW, "seed": seed}, reference_frame=20, work_dir=opened, resume=True)
    opened.release()
    expected = pipe(REFERENCE, lineart, **{**KW, "seed": seed}, reference_frame=20)
    torch.testing.assert_close(resumed.latents, expected.latents, rtol=0, atol=0)


def test_an_error_in_the_second_pass_keeps_the_first_pass_windows(pipe, tmp_path):
    from lvcd.cli.jobs import open_job, run_job

    work, seed = open_job(tmp_path / "work", resume=False, seed=3)
    job = lambda: pipe(REFERENCE, _lineart(), **KW, reference_frame=K, work_dir=work,  # noqa: E731
                       callback=_stop_at(1, RuntimeError("out of memory")))  # fmt: skip
    with pytest.raises(RuntimeError):
        run_job(work, seed, job)
    assert (tmp_path / "work" / "backward-window_000000.safetensors").is_file()  # kept for --resume


def test_a_work_directory_of_the_other_kind_of_job_is_refused_before_any_sampling(pipe, tmp_path):
    lineart, work = _lineart(), tmp_path / "work"
    with pytest.raises(KeyboardInterrupt):  # a single pass stopped after its first window
        pipe(REFERENCE, lineart, **KW, work_dir=work, callback=_stop_at(1))
    before = sorted(p.name for p in work.iterdir())
    seen = []
    with pytest.raises(WorkDirMismatch) as err:
        pipe(REFERENCE, lineart, **KW, reference_frame=K, work_dir=work, resume=True, callback=seen.append)
    assert not seen and sorted(p.name for p in work.iterdir()) == before  # nothing sampled, nothing written
    assert "reference frame none then, 7 now" in str(err.value) and "line art" not in str(err.value)
    other = tmp_path / "other"
    with pytest.raises(KeyboardInterrupt):  # two passes stopped in the first
        pipe(REFERENCE, lineart, **KW, reference_frame=K, work_dir=other, callback=_stop_at(0))
    with pytest.raises(WorkDirMismatch, match="reference frame 7 then, none now"):
        pipe(REFERENCE, lineart, **KW, work_dir=other, resume=True)


def test_sizes_as_whole_numbers_of_any_kind_and_as_text(pipe):
    expected = pipe.memory_beyond_weights((64, 128), (64, 128))
    for size in ((64.0, 128.0), np.array([64, 128]), "64x128"):
        assert pipe.memory_beyond_weights((64, 128), size) == expected
    with pytest.raises(InputError):
        pipe.memory_beyond_weights((64, 128), (64.5, 128))
    torch.testing.assert_close(
        pipe(REFERENCE, _lineart(2), **KW, size=np.array([64, 128])).latents,
        pipe(REFERENCE, _lineart(2), **KW, size=(64, 128)).latents,
    )
