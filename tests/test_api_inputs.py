"""``LVCDPipeline.__call__``'s inputs: every form of line art the README promises read the same, unusable values
refused before any work with one line naming the argument, seeds that reproduce, warnings that point at the caller."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_CONFIG
from lvcd.diffusion import edm_sigmas
from lvcd.errors import InputError
from lvcd.hints import LineartFrames, frame_to_hint, resolve_polarity
from lvcd.io import plan_size
from lvcd.io.images import to_rgb_uint8
from lvcd.longvideo import plan_windows
from lvcd.pipeline import LVCDPipeline
from lvcd.shot import reference_noise_shape, start_noise_shape

KW = dict(num_steps=1, seed=1, progress=False)


@pytest.fixture(scope="module")
def pipe(tiny_weights) -> LVCDPipeline:
    return LVCDPipeline.from_single_file(tiny_weights["svd"], tiny_weights["lvcd"], config=TINY_CONFIG, device="cpu")


def _lineart(count: int = 3) -> list[np.ndarray]:
    """Dark lines on white, (64, 128) uint8; the line moves."""
    frames = [np.full((64, 128), 255, np.uint8) for _ in range(count)]
    for index, frame in enumerate(frames):
        frame[20 + 3 * index : 22 + 3 * index] = 0
    return frames


REFERENCE = np.random.default_rng(0).integers(0, 255, (64, 128, 3), dtype=np.uint8)


def _hints(lineart) -> list[np.ndarray]:
    """The hints the pipeline would make of ``lineart`` (before resizing)."""
    frames = LineartFrames(lineart)
    polarity = resolve_polarity(frames, "auto")
    return [frame_to_hint(frame, polarity) for frame in frames]


def _same_hints(lineart, expected) -> None:
    hints = _hints(lineart)
    assert len(hints) == len(expected)
    for hint, want in zip(hints, expected, strict=True):
        np.testing.assert_array_equal(hint, want)


def _one_line_error(err: pytest.ExceptionInfo, *words: str) -> None:
    text = str(err.value)
    assert "\n" not in text and all(word.lower() in text.lower() for word in words), text


@pytest.fixture
def nothing_read(monkeypatch):
    """Fails a test that reads the line art: the argument checks come first."""

    def refuse(*args, **kwargs):
        raise AssertionError("the line art was read before the arguments were checked")

    monkeypatch.setattr("lvcd.shot_setup.LineartFrames", refuse)


# 1. channel-first arrays ------------------------------------------------------------------------------------------


def test_channel_first_arrays_are_read_as_tensors_are():
    lineart = _lineart()
    expected = _hints(lineart)
    _same_hints([np.stack([a / 255.0] * 3).astype(np.float32) for a in lineart], expected)  # float (3, H, W)
    _same_hints([np.stack([a] * 3) for a in lineart], expected)  # uint8 (3, H, W)
    _same_hints([a[None] for a in lineart], expected)  # (1, H, W)
    _same_hints(torch.from_numpy(np.stack(lineart))[:, None].float() / 255, expected)  # tensor (N, 1, H, W)
    np.testing.assert_array_equal(to_rgb_uint8(np.stack([lineart[0]] * 3)), to_rgb_uint8(lineart[0]))  # references


def test_a_whole_shot_as_one_array_reads_as_its_list_of_frames(pipe):
    lineart = _lineart(5)  # 5 frames: (5, H, W) can only be gray frames
    expected = _hints(lineart)
    stack = np.stack(lineart)
    _same_hints(stack, expected)  # (N, H, W) gray
    _same_hints(np.stack([stack] * 3, axis=-1), expected)  # (N, H, W, 3), as video readers return a shot
    _same_hints(np.stack([stack] * 3, axis=1), expected)  # (N, 3, H, W)
    _same_hints(np.stack([stack / 255.0] * 3, axis=-1).astype(np.float32), expected)  # float in [0, 1]
    np.testing.assert_array_equal(
        pipe(REFERENCE, np.stack([stack] * 3, axis=-1), **KW).frames, pipe(REFERENCE, lineart, **KW).frames
    )


def test_a_shot_array_that_is_not_one_is_refused():
    for one_image in ((64, 128, 3), (3, 64, 128), (4, 64, 128)):  # HxWxC or CxHxW: one image, not a shot
        with pytest.raises(InputError) as err:
            LineartFrames(np.zeros(one_image, np.uint8))
        _one_line_error(err, str(one_image), "(N, H, W, C)", "[image]")
    assert LineartFrames(np.zeros((5, 64, 128), np.uint8)).count == 5  # 5 gray frames
    assert LineartFrames(np.zeros((1, 64, 128), np.uint8)).count == 1  # one gray frame, either way
    with pytest.raises(InputError) as err:
        LineartFrames(np.zeros((2, 2, 64, 128, 3), np.uint8))
    _one_line_error(err, "(2, 2, 64, 128, 3)", "(N, H, W, C)")
    with pytest.raises(InputError) as err:
        LineartFrames(np.zeros((2, 64, 128, 2), np.uint8))
    _one_line_error(err, "frame 0", "(64, 128, 2)")


def test_an_array_that_may_be_either_layout_is_refused():
    with pytest.raises(InputError) as err:
        LineartFrames([np.zeros((3, 64, 3), np.uint8)] * 2)
    _one_line_error(err, "frame 0", "(3, 64, 3)")
    with pytest.raises(InputError) as err:
        LineartFrames([np.zeros((64, 128, 2), np.uint8)])
    _one_line_error(err, "frame 0", "(64, 128, 2)")


def test_channel_first_line_art_colorizes_like_channels_last(pipe):
    lineart = _lineart()
    expected = pipe(REFERENCE, lineart, **KW).frames
    result = pipe(REFERENCE, [np.stack([a / 255.0] * 3).astype(np.float32) for a in lineart], **KW)
    assert result.frames.shape == expected.shape
    assert torch.equal(result.frames, expected)


# 2. NaN and inf ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_line_art_with_nan_or_inf_is_refused(bad):
    frames = [a.astype(np.float32) / 255 for a in _lineart()]
    frames[1][5, 5] = bad
    with pytest.raises(InputError) as err:
        LineartFrames(frames)
    _one_line_error(err, "frame 1", "NaN or infinite")


@pytest.mark.parametrize("which", ["initial_noise", "reference_noise"])
def test_noise_with_nan_or_inf_is_refused_before_any_work(pipe, nothing_read, which):
    noise = torch.zeros(19, 4, 8, 16) if which == "initial_noise" else torch.zeros(1, 4, 8, 16)
    noise[0, 0, 0, 0] = float("nan")
    with pytest.raises(InputError) as err:
        pipe(REFERENCE, _lineart(), **{**KW, which: noise})
    _one_line_error(err, which, "NaN or infinite")


# 3. float RGBA ----------------------------------------------------------------------------------------------------


def test_float_rgba_line_art_is_composited_over_white():
    lineart = _lineart()
    expected = _hints(lineart)
    ink = [np.dstack([np.zeros((64, 128, 3), np.float32), (a < 128).astype(np.float32)]) for a in lineart]
    _same_hints(ink, expected)  # black ink on a transparent layer: the lines, not a blank sheet
    _same_hints(torch.from_numpy(np.stack(ink)).permute(0, 3, 1, 2), expected)  # (N, 4, H, W)


# 4. lists of paths ------------------------------------------------------------------------------------------------


def test_a_list_of_paths_is_read_as_images(tmp_path):
    lineart = _lineart()
    for index, frame in enumerate(lineart):
        Image.fromarray(frame).save(tmp_path / f"frame{index}.png")
    paths = sorted(str(p) for p in tmp_path.glob("*.png"))
    expected = _hints(lineart)
    _same_hints(paths, expected)
    _same_hints([Path(p) for p in paths], expected)
    frames = LineartFrames(paths)
    assert frames.size_hw == (64, 128) and frames.names == ["frame0", "frame1", "frame2"]
    assert frames.paths == [Path(p) for p in paths]
    _same_hints([paths[0], lineart[1], Path(paths[2])], expected)  # paths among arrays


def test_a_path_that_is_not_an_image_is_named(tmp_path):
    Image.fromarray(_lineart()[0]).save(tmp_path / "a.png")
    (tmp_path / "notes.png").write_text("not an image")
    for bad in (tmp_path / "notes.png", tmp_path / "missing.png", tmp_path):
        with pytest.raises(InputError) as err:
            LineartFrames([tmp_path / "a.png", bad])
        _one_line_error(err, str(bad))
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(tmp_path / "small.png")
    with pytest.raises(InputError) as err:
        LineartFrames([tmp_path / "a.png", tmp_path / "small.png"])
    _one_line_error(err, "small.png", "one size")


# 5. torch's default dtype -----------------------------------------------------------------------------------------


def test_torchs_default_dtype_does_not_reach_sampling(pipe):
    lineart = _lineart(16)  # two windows
    expected = pipe(REFERENCE, lineart, **KW)
    torch.set_default_dtype(torch.float64)
    try:
        result = pipe(REFERENCE, lineart, **KW)
    finally:
        torch.set_default_dtype(torch.float32)
    assert result.frames.dtype == torch.float32 and result.latents.dtype == torch.float32
    assert torch.equal(result.frames, expected.frames) and torch.equal(result.latents, expected.latents)


def test_sigmas_are_float32_whatever_the_default_dtype():
    expected = edm_sigmas(7)
    for dtype in (torch.float16, torch.float64):
        torch.set_default_dtype(dtype)
        try:
            sigmas = edm_sigmas(7)
        finally:
            torch.set_default_dtype(torch.float32)
        assert sigmas.dtype == torch.float32 and torch.equal(sigmas, expected)


def test_the_prev_reference_weight_is_ln_10_in_fp32_whatever_the_default_dtype():
    """Under a float16 default the plan's log-weight was rounded to half precision (frames off by about 2e-4)."""
    from lvcd.longvideo import official_prevref_plan

    expected = official_prevref_plan().log_weights
    torch.set_default_dtype(torch.float16)
    try:
        plan = official_prevref_plan()
    finally:
        torch.set_default_dtype(torch.float32)
    assert plan.log_weights.dtype == torch.float32 and torch.equal(plan.log_weights, expected)


# 6. a seed whenever anything is drawn -----------------------------------------------------------------------------


def test_keyframes_with_both_noises_given_draw_from_a_reported_seed(pipe):
    lineart, cfg = _lineart(3), pipe.config
    windows = plan_windows(3, overlap=cfg.sampling.overlap, video_frames=cfg.video_frames)
    plan = plan_size((64, 128), target_hw=cfg.train_size_hw, multiple=cfg.size_multiple)
    generator = torch.Generator().manual_seed(0)
    noises = {
        "initial_noise": torch.randn(start_noise_shape(windows, plan, cfg), generator=generator),
        "reference_noise": torch.randn(reference_noise_shape(plan, cfg), generator=generator),
    }
    keyframe = np.random.default_rng(1).integers(0, 255, (64, 128, 3), dtype=np.uint8)
    state = torch.get_rng_state()
    first = pipe(REFERENCE, lineart, num_steps=1, seed=None, progress=False, keyframes={1: keyframe}, **noises)
    assert torch.equal(torch.get_rng_state(), state)  # torch's global generator untouched
    assert first.seed is not None
    again = pipe(REFERENCE, lineart, num_steps=1, seed=first.seed, progress=False, keyframes={1: keyframe}, **noises)
    assert torch.equal(again.frames, first.frames)


# 7. from_pretrained ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["stabilityai/stable-video-diffusion-img2vid", "Demo", ("only one",)])
def test_from_pretrained_refuses_what_it_does_not_take(name):
    with pytest.raises(InputError) as err:
        LVCDPipeline.from_pretrained(name)
    _one_line_error(err, "'demo'", "from_single_file")


# 8. wrong argument types and values -------------------------------------------------------------------------------

BEFORE_READING = [
    ("num_steps", 1.5),
    ("num_steps", True),
    ("num_steps", "2"),
    ("num_steps", 0),
    ("overlap", -1),
    ("overlap", 14),
    ("overlap", 2.5),
    ("prev_attn_steps", -1),
    ("reference_noise", np.zeros((1, 4, 8, 16), np.float32)),
    ("initial_noise", [[1]]),
    ("initial_noise", torch.zeros(19, 4, 8, 16, dtype=torch.int64)),
    ("keyframes", [REFERENCE]),
    ("keyframes", {1: None}),
    ("callback", 5),
    ("size", "abc"),
    ("size", (65, 64)),
    ("size", (0, 64)),
    ("polarity", "dark"),
]


@pytest.mark.parametrize(("name", "value"), BEFORE_READING, ids=[f"{n}={type(v).__name__}" for n, v in BEFORE_READING])
def test_a_wrong_argument_is_refused_before_the_line_art_is_read(pipe, nothing_read, name, value):
    with pytest.raises(InputError) as err:
        pipe(REFERENCE, _lineart(), **{**KW, name: value})
    _one_line_error(err, "keyframe" if name == "keyframes" else name)


def test_messages_name_the_python_argument_not_the_command_line_option(pipe, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_bytes(b"")
    for kwargs, name in [
        (dict(size="abc"), "size"),
        (dict(size=(65, 64)), "size"),
        (dict(work_dir=a_file), "work_dir"),
    ]:
        with pytest.raises(InputError) as err:
            pipe(REFERENCE, _lineart(), **{**KW, **kwargs})
        _one_line_error(err, name)
        assert "--" not in str(err.value), err.value


def test_size_is_taken_as_text_too(pipe):
    torch.testing.assert_close(
        pipe(REFERENCE, _lineart(), **KW, size="64x128").frames,
        pipe(REFERENCE, _lineart(), **KW, size=(64, 128)).frames,
    )


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        (dict(reference_noise=torch.zeros(1, 4, 8, 8)), "reference_noise"),
        (dict(initial_noise=torch.zeros(19, 4, 8, 8)), "initial_noise"),
        (dict(lineart=[_lineart()[0], None, _lineart()[0]]), "line art frame 1"),
        (dict(lineart=[np.full((64, 128), 300)]), "line art frame 0"),
        (dict(reference=np.zeros((0, 0, 3), np.uint8)), "reference"),
        (dict(reference=torch.zeros(3, 0, 0)), "reference"),
    ],
    ids=[
        "reference_noise-shape",
        "initial_noise-shape",
        "lineart-None",
        "lineart-300",
        "reference-empty",
        "reference-tensor",
    ],
)
def test_a_wrong_input_is_refused_before_sampling(pipe, monkeypatch, kwargs, word):
    def refuse(*args, **kw):
        raise AssertionError("sampling started")

    monkeypatch.setattr(LVCDPipeline, "_sample", refuse)
    arguments = {"reference": REFERENCE, "lineart": _lineart(), **KW, **kwargs}
    with pytest.raises(InputError) as err:
        pipe(**arguments)
    _one_line_error(err, word)


# 9. warnings point at the caller ----------------------------------------------------------------------------------


def _caller_warnings(run) -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
    return [w for w in caught if issubclass(w.category, UserWarning)]


def test_warnings_point_at_the_callers_line(pipe):
    wide = np.zeros((64, 256, 3), np.uint8)
    keyframe = np.zeros((64, 128, 3), np.uint8)
    runs = {
        "aspect ratio": lambda: pipe(wide, _lineart(), **KW),
        "late keyframe": lambda: pipe(REFERENCE, _lineart(3), keyframes={2: keyframe}, **KW),  # windows start at 1
        "xdog": lambda: pipe(REFERENCE, [np.stack([a] * 3, -1) for a in _lineart(2)], extract_lineart="xdog", **KW),
    }
    for what, run in runs.items():
        caught = _caller_warnings(run)
        assert caught, what
        assert all(w.filename == __file__ for w in caught), (what, [(w.filename, str(w.message)) for w in caught])


def test_decode_false_returns_the_latents_alone(pipe, monkeypatch):
    seen = []
    plain = pipe(REFERENCE, _lineart(), **KW)
    latents_only = pipe(REFERENCE, _lineart(), **KW, decode=False, callback=seen.append)
    torch.testing.assert_close(latents_only.latents, plain.latents, rtol=0, atol=0)
    assert latents_only.frames is None and {p.phase for p in seen} == {"sampling"}
    with pytest.raises(InputError, match=r"not decoded \(decode=False\)"):
        latents_only.images()
    with pytest.raises(InputError) as err:
        pipe(REFERENCE, _lineart(), **KW, decode=False, output="shot.mp4")
    _one_line_error(err, "decode=False", "output")
    with pytest.raises(InputError) as err:
        pipe(REFERENCE, _lineart(), **KW, decode="no")
    _one_line_error(err, "decode")


def test_a_coloured_frame_among_the_line_art_files_is_announced(pipe, tmp_path):
    """The reference (or a keyframe) given as one of the line-art files is read as that frame's line art: said, not
    silent; from colour frames (extract_lineart) it is the frame it colours, and only another index is said."""
    folder = tmp_path / "shot"
    folder.mkdir()
    for index, frame in enumerate(_lineart(3)):
        Image.fromarray(np.stack([frame] * 3, -1)).save(folder / f"{index}.png")
    Image.fromarray(REFERENCE).save(folder / "ref.png")
    with pytest.warns(UserWarning, match=r"The reference .*ref\.png is one of the line-art frames: it is also read as "
                      r"the line art of frame 3; move it out") as caught:  # fmt: skip
        pipe(folder / "ref.png", folder, decode=False, **KW)
    assert caught[0].filename == __file__  # points at the caller's line
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")  # colour frame 0 colours frame 0: nothing to say
        pipe(folder / "0.png", folder, extract_lineart="xdog", decode=False, **KW)
    assert not [w for w in seen if "line-art frames" in str(w.message)]
    with pytest.warns(UserWarning, match=r"The reference .*0\.png is one of the line-art frames: it is colour frame 0 "
                      r"but colours frame 2; check the frame index"):  # fmt: skip
        pipe(folder / "0.png", folder, extract_lineart="xdog", reference_frame=2, decode=False, **KW)
    with pytest.warns(UserWarning, match=r"The keyframe 1 .*2\.png is one of the line-art frames"):
        pipe(REFERENCE, folder, keyframes={1: folder / "2.png"}, decode=False, **KW)


def test_a_list_of_pil_images_is_checked_now_and_not_held_as_copies():
    """A shot given as PIL images was converted to RGB arrays up front and every copy held for the whole job (1000
    frames at 576x320: +0.55 GB). Each frame is checked at once and converted again when read."""
    import tracemalloc

    images = [Image.fromarray(np.full((320, 576), 10 * index, np.uint8)) for index in range(20)]
    tracemalloc.start()
    try:
        frames = LineartFrames(images)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < 320 * 576 * 3  # less than one RGB frame kept (the 20 copies were 11 MB)
    assert len(frames) == 20 and frames.size_hw == (320, 576)
    read = list(frames)
    assert all(np.array_equal(frame, to_rgb_uint8(image)) for frame, image in zip(read, images, strict=True))
    assert list(frames)[3].shape == (320, 576, 3)  # re-iterable
    with pytest.raises(InputError, match="line art frame 2 is 64x32, frame 0 is 576x320"):
        LineartFrames([*images[:2], Image.new("L", (64, 32))])


def test_the_output_takes_the_line_arts_own_frame_rate_unless_fps_is_given(pipe, tmp_path):
    """The API wrote every output at 20 fps, also for line art from a 12 fps video or a 10 fps GIF (the command
    line took the line art's rate): the output played at another speed than its line art."""
    import av
    from PIL import Image

    def rate(path) -> float:
        with av.open(str(path)) as container:
            return float(container.streams.video[0].average_rate)

    frames = [Image.fromarray(frame).convert("RGB") for frame in _lineart(3)]
    frames[0].save(tmp_path / "walk.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    with av.open(str(tmp_path / "walk.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=12)
        stream.width, stream.height, stream.pix_fmt = 128, 64, "yuv420p"
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_image(frame)))
        container.mux(stream.encode())

    result = pipe(REFERENCE, tmp_path / "walk.gif", output=tmp_path / "a.mp4", **KW)
    assert result.fps == 10 and rate(tmp_path / "a.mp4") == 10
    result = pipe(REFERENCE, tmp_path / "walk.mp4", output=tmp_path / "b.mp4", **KW)
    assert result.fps == 12 and rate(tmp_path / "b.mp4") == 12
    result = pipe(REFERENCE, tmp_path / "walk.mp4", output=tmp_path / "c.mp4", fps=24, **KW)  # given: taken
    assert result.fps == 24 and rate(tmp_path / "c.mp4") == 24
    result = pipe(REFERENCE, tmp_path / "walk.gif", extract_lineart="xdog", **KW)  # colour frames, lines extracted
    assert result.fps == 10
    result.save(tmp_path / "d.mp4")  # save() writes what output= would have: at the shot's rate
    assert rate(tmp_path / "d.mp4") == 10
    result = pipe(REFERENCE, _lineart(3), **KW)  # still frames: 20, as before
    assert result.fps == 20
    result.save(tmp_path / "e.mp4", fps=6)
    assert rate(tmp_path / "e.mp4") == 6
