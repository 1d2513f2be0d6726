"""The web page's bounds: frames per second, frames and pixels a job may bring, the side-by-side preview's size, and
how long results are kept (jobs run through the API never close their session)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_CONFIG
from lvcd.errors import InputError
from lvcd.io import FrameSource, open_writer
from lvcd.io.writers import LARGE_FRAME_PIXELS
from lvcd.pipeline import LVCDPipeline
from lvcd.ui import JobSettings, PageLimits, build_app, check_settings, colorize_upload, jobs
from lvcd.ui.jobs import SIDE_BY_SIDE_MAX_HW, side_by_side_hw
from lvcd.ui.sessions import Sessions
from lvcd.ui.uploads import check_reference, read_lineart


def _pictures(folder: Path, count: int, size_hw=(64, 128)) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        drawing = np.full(size_hw, 255, np.uint8)
        drawing[:, 10 + 7 * index] = 0
        Image.fromarray(drawing).save(folder / f"f{index}.png")
        paths.append(str(folder / f"f{index}.png"))
    return paths


def _reference(path: Path, size_hw=(64, 128)) -> str:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (*size_hw, 3), dtype=np.uint8)).save(path)
    return str(path)


# --- frames per second -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fps", [0.001, 0.5, 0.999, "0.5", -1, 240.5, "nan"])
def test_frames_per_second_below_one_are_refused_as_the_message_says(fps):
    with pytest.raises(InputError, match=r"^Frames per second: .* is not valid; use 1 to 240, or 0 for automatic\.$"):
        check_settings(fps=fps)


@pytest.mark.parametrize(("fps", "rate"), [(0, None), ("", None), (None, None), (1, 1.0), (23.976, 23.976), (240, 240)])
def test_frames_per_second_from_1_to_240_or_0_for_automatic(fps, rate):
    assert check_settings(fps=fps).fps == rate


# --- frames and pixels a job may bring ---------------------------------------------------------------------------


def test_the_page_limits_bound_a_jobs_frames_and_pixels_by_default():
    limits = PageLimits()
    assert limits.max_frames == 1000 and limits.max_frame_pixels == 7680 * 4320  # 8K UHD
    assert limits.max_input_side == 8192 and limits.max_kept_results == 32 and limits.max_result_age_s == 3600
    assert SIDE_BY_SIDE_MAX_HW == (1080, 1920)


def test_more_frames_than_the_limit_are_refused_before_any_file_is_read(tmp_path):
    missing = [str(tmp_path / f"f{index}.png") for index in range(5)]  # never opened: the count is checked first
    with pytest.raises(InputError) as caught:
        read_lineart(missing, max_side=8192, max_frames=4)
    message = str(caught.value)
    assert message == (
        "Line art: 5 frames are more than this page takes in one shot (4); colorize the shot in parts of at most 4 "
        "frames, or with the command line (lvcd colorize)."
    )
    assert len(read_lineart(_pictures(tmp_path / "ok", 4), max_side=8192, max_frames=4).frames) == 4


def test_a_video_with_more_frames_than_the_limit_is_refused(tmp_path):
    clip = tmp_path / "clip.mp4"
    with open_writer(clip, fps=24) as writer:
        for index in range(5):
            writer.write(np.full((64, 128, 3), 40 * index, np.uint8))
    with pytest.raises(InputError, match=r"^Line art: 5 frames are more than this page takes in one shot \(4\)"):
        read_lineart([str(clip)], max_side=8192, max_frames=4)
    assert len(read_lineart([str(clip)], max_side=8192, max_frames=5).frames) == 5


def test_pictures_above_the_pixel_limit_are_refused_from_their_header(tmp_path):
    frames = _pictures(tmp_path / "frames", 2, size_hw=(64, 128))  # 8192 pixels each
    with pytest.raises(InputError) as caught:
        read_lineart(frames, max_side=8192, max_pixels=8000)
    assert str(caught.value) == (
        "Line art: f0.png is 128x64 pixels (0.0 megapixels); this page accepts at most 0.0 megapixels a picture. "
        "Downscale it and upload it again, or colorize it with the command line (lvcd colorize)."
    )
    with pytest.raises(InputError, match=r"^Coloured reference: ref.png is 128x64 pixels .* megapixels a picture"):
        check_reference(_reference(tmp_path / "ref.png"), max_side=8192, max_pixels=8000)
    assert read_lineart(frames, max_side=8192, max_pixels=8192).size_hw == (64, 128)
    clip = tmp_path / "clip.mp4"
    with open_writer(clip, fps=24) as writer:
        writer.write(np.zeros((64, 128, 3), np.uint8))
    with pytest.raises(InputError, match=r"^Line art: clip.mp4 is 128x64 pixels \(0.0 megapixels\); this page"):
        read_lineart([str(clip)], max_side=8192, max_pixels=8000)


def test_a_job_beyond_the_limits_is_refused_before_any_work(tmp_path):
    """Refused while reading the uploads: the pipeline (None here) is never touched."""
    reference = _reference(tmp_path / "ref.png")
    frames = _pictures(tmp_path / "frames", 3)
    with pytest.raises(InputError, match=r"^Line art: 3 frames are more than this page takes in one shot \(2\)"):
        colorize_upload(None, reference, frames, JobSettings(steps=1), tmp_path / "out", PageLimits(max_frames=2))
    with pytest.raises(InputError, match=r"^Coloured reference: ref.png is 128x64 pixels"):
        colorize_upload(
            None, reference, frames, JobSettings(steps=1), tmp_path / "out", PageLimits(max_frame_pixels=100)
        )
    assert not (tmp_path / "out").exists()


class _StubPipe:
    """What build_app reads of a pipeline: its config's size multiple (no model is loaded)."""

    class config:  # noqa: N801 - an attribute, as LVCDPipeline.config
        size_multiple = 64


def test_the_page_states_its_frame_and_pixel_limits(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    app = build_app(
        _StubPipe(), PageLimits(max_frames=12, max_frame_pixels=2_000_000, max_kept_results=5), examples=False
    )
    text = " ".join(str(getattr(block, "value", "")) for block in app.blocks.values())
    assert "2.0 megapixels a frame; up to 12 frames a shot" in text
    assert app.lvcd_sessions.max_kept == 5 and app.lvcd_sessions.max_age_s == 3600
    assert app.lvcd_sessions.root == app.lvcd_folders[0]  # only the server's job folders are ever deleted


# --- the side-by-side preview ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size_hw", "half_hw"),
    [
        ((64, 128), (64, 128)),  # small: as it is (the page's tests of small shots see the same video as before)
        ((1080, 960), (1080, 960)),  # two fit in full HD exactly
        ((1080, 1920), (540, 960)),
        ((2160, 3840), (540, 960)),
        ((4320, 7680), (540, 960)),
        ((8192, 8192), (960, 960)),
        ((8192, 2000), (1080, 264)),  # tall: the height bounds it
        ((1080, 961), (1078, 960)),  # even sides
    ],
)
def test_the_side_by_side_preview_fits_full_hd(size_hw, half_hw):
    assert side_by_side_hw(size_hw) == half_hw
    height, width = half_hw
    assert height <= 1080 and 2 * width <= 1920


@pytest.fixture(scope="module")
def pipe(tiny_weights) -> LVCDPipeline:
    return LVCDPipeline.from_single_file(tiny_weights["svd"], tiny_weights["lvcd"], config=TINY_CONFIG, device="cpu")


def test_a_job_writes_the_result_at_the_line_arts_size_and_the_preview_scaled(pipe, tmp_path, monkeypatch):
    monkeypatch.setattr(jobs, "SIDE_BY_SIDE_MAX_HW", (32, 128))  # a small stand-in for full HD: each half 32x64
    frames = _pictures(tmp_path / "frames", 3)
    result = colorize_upload(pipe, _reference(tmp_path / "ref.png"), frames, JobSettings(steps=1), tmp_path / "out")
    video, side = FrameSource.open(result.video), FrameSource.open(result.side_by_side)
    assert tuple(video.size_hw) == (64, 128) and len(video) == 3
    assert tuple(side.size_hw) == (32, 128) and len(side) == 3
    for index, (colour, both) in enumerate(zip(video, side, strict=True)):
        drawing = both[:, :64].mean(axis=2)
        assert abs(int(np.argmin(drawing.mean(axis=0))) - (10 + 7 * index) // 2) <= 1  # the line, at half size
        # the result, at half size: its colours (the tiny model's frames are noise, which two encodings blur)
        assert np.abs(colour.mean(axis=(0, 1)) - both[:, 64:].mean(axis=(0, 1))).max() < 3


def test_the_preview_reads_the_result_in_its_colours(tmp_path):
    result = tmp_path / "result.mp4"
    flat = np.zeros((64, 128, 3), np.uint8)
    flat[:, :64], flat[:, 64:] = [200, 40, 40], [30, 160, 90]
    with open_writer(result, fps=20) as writer:
        writer.write(flat)
    for size_hw in [(64, 128), (32, 64)]:
        (frame,) = jobs._result_frames(result, size_hw)
        assert frame.shape == (*size_hw, 3)
        width = size_hw[1]
        assert np.abs(frame[:, : width // 2 - 4].astype(int) - [200, 40, 40]).max() <= 4
        assert np.abs(frame[:, width // 2 + 4 :].astype(int) - [30, 160, 90]).max() <= 4


def test_the_encoder_keeps_fewer_frames_above_4k_than_an_8k_page_frame():
    assert LARGE_FRAME_PIXELS < PageLimits().max_frame_pixels  # so the page's largest frames get the lean settings


# --- results kept ------------------------------------------------------------------------------------------------


def _folders(root: Path, count: int) -> list[Path]:
    made = []
    for index in range(count):
        (root / f"job{index}").mkdir(parents=True)
        made.append(root / f"job{index}")
    return made


def test_api_results_are_deleted_after_their_age(tmp_path):
    """Each /call/run is a session of its own that never closes: its result goes after ``max_age_s``."""
    now = [0.0]
    sessions = Sessions(max_kept=32, max_age_s=3600, root=tmp_path, clock=lambda: now[0])
    first, second, third = _folders(tmp_path, 3)
    sessions.keep_result("api-call-1", first)
    now[0] = 1800
    sessions.keep_result("api-call-2", second)
    assert first.exists() and second.exists()
    now[0] = 3601
    flag = sessions.begin("api-call-3")  # a job starting sweeps out what has expired
    assert not first.exists() and second.exists() and sessions.kept() == [second]
    sessions.end("api-call-3", flag)
    now[0] = 5401
    sessions.keep_result("api-call-3", third)
    assert not second.exists() and third.exists() and sessions.kept() == [third]


def test_at_most_max_kept_results_the_oldest_deleted_first(tmp_path):
    sessions = Sessions(max_kept=3, max_age_s=3600, root=tmp_path, clock=lambda: 0.0)
    folders = _folders(tmp_path, 5)
    for index, folder in enumerate(folders):
        sessions.keep_result(f"api-call-{index}", folder)
    assert [folder.exists() for folder in folders] == [False, False, True, True, True]
    assert sessions.kept() == folders[2:]
    again = tmp_path / "again"
    again.mkdir()
    sessions.keep_result("api-call-2", again)  # a session's new result replaces its own, and is the newest
    assert not folders[2].exists() and sessions.kept() == [folders[3], folders[4], again]
    sessions.close_all()
    assert not any(folder.exists() for folder in [*folders, again])


def test_an_open_pages_result_outlives_any_number_of_api_results(tmp_path):
    """The count bound is for sessions that never close (API calls): 32 quick API jobs must not delete the result a
    page's user is looking at; the page's own result goes when the page closes (or ages out)."""
    now = [0.0]
    sessions = Sessions(max_kept=2, max_age_s=3600, root=tmp_path, clock=lambda: now[0])
    page, *api = _folders(tmp_path, 6)
    sessions.opened("page")
    sessions.keep_result("page", page)
    for index, folder in enumerate(api):
        sessions.keep_result(f"api-call-{index}", folder)
    assert page.exists() and [folder.exists() for folder in api] == [False, False, False, True, True]
    sessions.close("page")
    assert not page.exists()
    sessions.opened("another page")
    (aged,) = _folders(tmp_path / "later", 1)
    sessions.keep_result("another page", aged)
    now[0] = 3601
    sessions.begin("api-call-9")
    assert not aged.exists()  # an open page's result still ages out, as gradio's cache does


def test_the_page_tells_its_sessions_when_a_page_opens(tmp_path, monkeypatch):
    from types import SimpleNamespace

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    app = build_app(_StubPipe(), PageLimits(), examples=False)
    (block,) = [block for block in app.fns.values() if getattr(block.fn, "__name__", "") == "page_opened"]
    assert block.api_name is False or getattr(block, "api_visibility", "private") == "private"  # not an API endpoint
    block.fn(SimpleNamespace(session_hash="browser-1"))
    assert "browser-1" in app.lvcd_sessions._pages


def test_only_folders_inside_the_jobs_folder_are_deleted(tmp_path):
    jobs_folder, elsewhere = tmp_path / "jobs", tmp_path / "elsewhere"
    jobs_folder.mkdir(), elsewhere.mkdir()
    sessions = Sessions(max_kept=1, root=jobs_folder, clock=lambda: 0.0)
    sessions.keep_result("a", elsewhere)
    (inside,) = _folders(jobs_folder, 1)
    sessions.keep_result("b", inside)  # "a" is dropped from the kept list, but its folder is not lvcd's: kept
    assert elsewhere.exists() and inside.exists() and sessions.kept() == [inside]
