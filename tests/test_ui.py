"""The web page's work without a browser: uploads, settings, messages, jobs on the tiny model, sessions, the page."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_CONFIG
from lvcd.errors import InputError
from lvcd.io import FrameSource, load_image, open_writer
from lvcd.pipeline import LVCDPipeline, SamplingProgress
from lvcd.ui import JobCancelled, JobSettings, PageLimits, build_app, check_settings, colorize_upload
from lvcd.ui.jobs import MAX_SEED
from lvcd.ui.page import Sessions, _status, keeping_user_names
from lvcd.ui.progress import JobProgress, Line, Speed
from lvcd.ui.uploads import Upload, check_reference, read_lineart, shot_name, user_message


@pytest.fixture(scope="module")
def pipe(tiny_weights) -> LVCDPipeline:
    return LVCDPipeline.from_single_file(tiny_weights["svd"], tiny_weights["lvcd"], config=TINY_CONFIG, device="cpu")


def _drawing(index: int, size_hw=(64, 128)) -> np.ndarray:
    drawing = np.full(size_hw, 255, np.uint8)
    drawing[:, 10 + 7 * index] = 0  # the frame's index is where its line is
    return drawing


def _uploads(folder: Path, names, size_hw=(64, 128)) -> list[str]:
    """Files as the page receives them: each in its own server folder, under the user's name."""
    paths = []
    for index, name in enumerate(names):
        (folder / str(index)).mkdir(parents=True)
        Image.fromarray(_drawing(index, size_hw)).save(folder / str(index) / name)
        paths.append(str(folder / str(index) / name))
    return paths


def _line_position(frame: np.ndarray) -> int:
    return int(np.argmin(frame.mean(axis=(0, 2)) if frame.ndim == 3 else frame.mean(axis=0)))


def _reference(path: Path, rgba: bool = False) -> Path:
    colour = np.random.default_rng(0).integers(0, 255, (64, 128, 3), dtype=np.uint8)
    if rgba:
        alpha = np.zeros((64, 128, 1), np.uint8)
        alpha[:, :64] = 255  # the right half is transparent
        colour = np.concatenate([colour, alpha], axis=2)
    Image.fromarray(colour).save(path)
    return path


# --- uploads -------------------------------------------------------------------------------------------------------


def test_every_upload_is_a_frame_in_natural_order_dot_files_included(tmp_path):
    files = _uploads(tmp_path, ["f10.png", ".f3.png", "f2.png", "f1.png"])
    lineart = read_lineart(files, max_side=8192)
    assert [u.name for u in lineart.uploads] == [".f3.png", "f1.png", "f2.png", "f10.png"]
    frames = list(lineart.frames)
    assert len(lineart.frames) == len(frames) == 4
    written_index = {".f3.png": 1, "f1.png": 3, "f2.png": 2, "f10.png": 0}  # index i drew its line at 10 + 7i
    assert [_line_position(f) for f in frames] == [10 + 7 * written_index[u.name] for u in lineart.uploads]


def test_upload_problems_name_the_field_and_the_users_file_never_a_server_path(tmp_path):
    cases = {
        "two uploaded files are named f1.png": _uploads(tmp_path / "dup", ["f1.png", "f1.png"]),
        "notes.txt is not an image or a video": _uploads(tmp_path / "txt", ["a.png"]) + [str(tmp_path / "notes.txt")],
        "not both": _uploads(tmp_path / "mix", ["a.png"]) + [str(tmp_path / "clip.mp4")],
        "b.png is 64x32 pixels but a.png is 128x64": _uploads(tmp_path / "sz", ["a.png"])
        + _uploads(tmp_path / "sz2", ["b.png"], size_hw=(32, 64)),
        "upload the drawings": [],
    }
    (tmp_path / "notes.txt").write_text("not a picture")
    (tmp_path / "clip.mp4").write_bytes(b"x")
    for expected, files in cases.items():
        with pytest.raises(InputError) as caught:
            read_lineart(files, max_side=8192)
        message = user_message(caught.value, [], [tmp_path])
        assert message.startswith("Line art: ") and expected in message, message
        assert str(tmp_path) not in message and "--" not in message


def test_oversized_and_unreadable_images_are_refused_before_any_work(pipe, tmp_path):
    big = tmp_path / "up" / "huge.png"
    big.parent.mkdir()
    Image.new("L", (3000, 20)).save(big)
    with pytest.raises(InputError, match=r"Line art: huge.png is 3000x20 pixels; this page accepts at most 2048"):
        read_lineart([str(big)], max_side=2048)
    text = tmp_path / "up" / "ref.png"
    text.write_text("this is not a picture")
    frames = _uploads(tmp_path / "frames", ["a.png"])
    with pytest.raises(InputError) as caught:
        colorize_upload(pipe, str(text), frames, output_dir=tmp_path / "out")
    assert str(caught.value).startswith("Coloured reference: ref.png is not an image")
    assert not (tmp_path / "out").exists()  # nothing created before the inputs are known good


def test_messages_lose_server_paths_and_command_line_flags(tmp_path):
    err = InputError(f"{tmp_path}/abc123/f1.png: bad; --size 64000x64000 is too big, use --overwrite")
    message = user_message(err, [], [tmp_path])
    assert message == "f1.png: bad; Processing size 64000x64000 is too big, use the overwrite setting"
    scratch = Path(tempfile.gettempdir()) / "lvcd-xyz" / "hints.npy"
    assert user_message(ValueError(f"cannot map {scratch}")) == "cannot map hints.npy"


def test_shot_names():
    from lvcd.ui.uploads import Upload

    def names(*files):
        return shot_name([Upload(Path(f), f) for f in files])

    assert names("walk_0001.png", "walk_0002.png") == "walk"
    assert names("clip.mp4") == "clip"
    assert names(".walk_3.png", "walk_1.png") == "walk"
    assert names("a.png", "b.png") == "shot"
    assert names("../../etc/x 1.png", "../../etc/x 2.png") == "x"  # a name, never a path
    assert names("my shot*1.png", "my shot*2.png") == "my_shot"


# --- settings ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"seed": 1e30}, "Seed: 1e+30 is out of range"),
        ({"seed": 10**30}, "Seed: 1e+30 is out of range"),
        ({"seed": 2.5}, "Seed: 2.5 is not a whole number"),
        ({"seed": -2}, "Seed: -2 is out of range"),
        ({"height": 64000, "width": 64000}, "Processing size: 64000x64000 is above this page's limit of 1024"),
        ({"height": 320, "width": 0}, "Processing size: 320x0 (height x width) is not valid"),
        ({"height": 300, "width": 576}, "Processing size: 300x576 (height x width) is not valid"),
        ({"steps": 500}, "Steps: 500 is out of range; use 1 to 50"),
        ({"fps": -3}, "Frames per second: -3 is not valid"),
        ({"polarity": "sideways"}, "Line polarity: 'sideways'"),
        ({"lineart_levels": "max"}, "Scanned paper: 'max' is not one of auto, on, off"),
    ],
)
def test_bad_settings_name_their_field(fields, expected):
    with pytest.raises(InputError) as caught:
        check_settings(**fields)
    assert str(caught.value).startswith(expected)


def test_settings_defaults_and_limits():
    assert check_settings() == JobSettings(25, None, "auto", None, None)
    assert check_settings(lineart_levels="off").lineart_levels == "off" and JobSettings().lineart_levels == "auto"
    assert check_settings(seed=-1).seed is None and check_settings(seed=MAX_SEED).seed == MAX_SEED
    assert check_settings(height=320, width=576, fps=24).size_hw == (320, 576)
    assert check_settings(height=2048, width=2048, limits=PageLimits(max_side=2048)).size_hw == (2048, 2048)
    assert PageLimits().max_upload_mb == 100  # a 200 MB upload is refused by default
    # seeds the page shows must survive a browser's number field (JavaScript rounds whole numbers above 2**53)
    assert MAX_SEED == 2**53 - 1 and float(MAX_SEED) == MAX_SEED
    from lvcd.seeds import draw_seed

    assert all(0 <= draw_seed() < 2**53 for _ in range(100))


def test_a_damaged_upload_is_named_in_its_field_before_any_work(tmp_path):
    frames = _uploads(tmp_path / "frames", [f"f{i}.png" for i in range(3)])
    data = Path(frames[2]).read_bytes()
    Path(frames[2]).write_bytes(data[: len(data) // 2])  # cut short, its header intact
    with pytest.raises(InputError, match=r"^Line art: f2.png is damaged \(cut short or corrupt\)"):
        read_lineart(frames, max_side=8192)
    reference = _reference(tmp_path / "ref.png")
    reference.write_bytes(reference.read_bytes()[:200])
    with pytest.raises(InputError, match=r"^Coloured reference: ref.png is damaged"):
        check_reference(str(reference), max_side=8192)


def _run_job_progress(tracker: JobProgress, now: list, step_s: float, frame_s: float) -> list:
    """A job of 2 windows x 3 steps and 4 frames as the pipeline reports it; the clock advances as the work takes."""
    tracker.started = now[0]
    tracker.plan(windows=2, steps=3, frames=4, key=((64, 128), "euler"))
    reports = [tracker.starting()]
    for window in range(2):
        for step in range(3):
            now[0] += step_s
            reports.append(tracker.sampled(SamplingProgress(window, 2, step, 3)))
    for frame in range(1, 5):
        now[0] += frame_s
        reports.append(tracker.decoded(frame, 4))
    reports += [tracker.side_by_side(frame, 4) for frame in range(1, 5)]
    return reports


def test_progress_is_one_bar_over_sampling_decoding_and_side_by_side_with_the_time_left():
    now, speeds = [0.0], {}
    reports = _run_job_progress(JobProgress(speeds, clock=lambda: now[0]), now, step_s=2.0, frame_s=1.0)
    bar = [done / total for done, total, _ in reports]
    assert bar == sorted(bar) and bar[0] == 0 and bar[-1] == pytest.approx(1)  # never back, from 0 to the end
    assert 0.5 < bar[6] < 0.9  # sampling done: the bar is not full while the frames are still to decode
    texts = [text for _, _, text in reports]
    assert texts[0] == "preparing the shot · the time it takes is known after its first step"
    assert texts[1].startswith("sampling · window 1/2 · step 1/3 · about 0:1")  # 5 steps + 4 frames at 2 s a unit
    assert texts[5] == "sampling · window 2/2 · step 2/3 · about 0:06 left"  # 1 step (2 s) + 4 frames (0.5 x 2 s each)
    assert texts[7] == "decoding · frame 1/4 · about 0:03 left"  # now measured: 1 s a frame
    assert texts[-1].startswith("writing the side-by-side video · frame 4/4")
    # the next job at this size knows the speeds up front, and weighs decoding by them (1 s a frame: half a step)
    assert speeds == {} and (tracker := JobProgress(speeds, clock=lambda: now[0])) is not None
    speeds[((64, 128), "euler")] = Speed(2.0, 1.0)
    again = _run_job_progress(tracker, now, step_s=2.0, frame_s=1.0)
    assert again[0][2] == "preparing the shot · about 0:16 in all, as measured on the last job of this size here"
    assert [done / total for done, total, _ in again] == sorted(done / total for done, total, _ in again)


def test_the_line_runs_jobs_in_order_and_tells_the_waiting_the_time_left():
    line, now = Line(poll_seconds=0.01), [0.0]
    running = JobProgress(line.speeds, clock=lambda: now[0])
    told: dict[str, list[str]] = {"second": [], "third": []}
    order, stopped = [], threading.Event()
    started = threading.Event()

    def job(name: str, cancel: threading.Event) -> None:
        try:
            with line.turn(cancel, JobProgress(line.speeds), told[name].append):
                order.append(name)
        except JobCancelled:
            order.append(f"{name} cancelled")

    with line.turn(threading.Event(), running, lambda text: None):
        running.plan(windows=1, steps=10, frames=2, key=((64, 64), "euler"))
        now[0] += 3.0
        running.sampled(SamplingProgress(0, 1, 0, 10))  # 3 s a step: 9 steps and 2 frames (1.5 s each) left
        second = threading.Thread(target=job, args=("second", threading.Event()))
        second.start()
        while not told["second"]:
            time.sleep(0.01)
        third = threading.Thread(target=job, args=("third", stopped))
        third.start()
        while not told["third"]:
            time.sleep(0.01)
        stopped.set()  # Stop pressed on the third page while it waits
        third.join(5)
        started.set()
    second.join(5)
    assert told["second"][0] == (
        "waiting: 1 job ahead of yours (one job runs at a time); the running one has about 0:30 left"
    )
    assert told["third"][0].startswith("waiting: 2 jobs ahead of yours")
    assert order == ["third cancelled", "second"]
    assert line.speeds[((64, 64), "euler")].step_seconds == pytest.approx(3.0)  # kept for the next job's estimate


def test_the_line_takes_at_most_max_queue_waiting_jobs_and_a_stopped_one_never_runs():
    """--max-queue: jobs beyond it are refused in one line (the page's own line let 7 more wait than promised); a job
    stopped while it waits never takes its turn, even when the running one ends at that instant; between two jobs
    the second in line is told it waits, not that it starts."""
    from lvcd.ui.progress import LineFull

    line = Line(poll_seconds=0.01, max_waiting=1)
    ran, told = [], []
    waiting_cancel = threading.Event()
    running = line.turn(threading.Event(), JobProgress(), lambda text: None)
    running.__enter__()
    first = threading.Thread(
        target=lambda: _ignore_cancel(lambda: line.turn(waiting_cancel, JobProgress(), told.append), ran, "first")
    )
    first.start()
    while not told:
        time.sleep(0.01)
    with pytest.raises(LineFull, match=r"already has 1 job waiting, the most it takes"):
        with line.turn(threading.Event(), JobProgress(), lambda text: None):
            ran.append("refused one")
    with line._changed:  # Stop pressed while it waits and the running job ends, before the waiting one looks again
        waiting_cancel.set()
        running.__exit__(None, None, None)
    first.join(5)
    assert ran == ["first cancelled"]
    assert line._waiting_text(0) == "starting" and line._waiting_text(2).startswith("waiting: 2 jobs ahead of yours")


def _ignore_cancel(turn, ran: list, name: str) -> None:
    try:
        with turn():
            ran.append(name)
    except JobCancelled:
        ran.append(f"{name} cancelled")


# --- jobs on the tiny model ------------------------------------------------------------------------------------------


def test_job_writes_the_shot_named_video_and_side_by_side_and_reports_the_seed(pipe, tmp_path):
    files = _uploads(tmp_path / "up", ["walk_2.png", "walk_10.png", "walk_1.png"])
    reports = []
    result = colorize_upload(pipe, str(_reference(tmp_path / "ref.png")), files, JobSettings(steps=1),
                             tmp_path / "out", report=lambda *r: reports.append(r))  # fmt: skip
    assert result.video == tmp_path / "out" / "walk_colorized.mp4"
    assert isinstance(result.seed, int) and result.fps == 20 and result.frames == 3
    video, side = FrameSource.open(result.video), FrameSource.open(result.side_by_side)
    assert len(video) == 3 and tuple(video.size_hw) == (64, 128)
    assert len(side) == 3 and tuple(side.size_hw) == (64, 256)
    assert [_line_position(f[:, :128]) for f in side] == [10 + 7 * 2, 10, 10 + 7 * 1]  # walk_1, walk_2, walk_10
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["walk_colorized.mp4", "walk_side_by_side.mp4"]
    stages = [text.split(" · ")[0] for _, _, text in reports]
    assert stages == ["preparing the shot", "sampling", *["decoding"] * 3, *["writing the side-by-side video"] * 3]
    bar = [done / total for done, total, _ in reports]
    assert bar == sorted(bar) and bar[-1] == pytest.approx(1)  # one bar, never back (sampling ended at 100% before)


def test_same_seed_same_file_and_rgba_reference_as_the_cli(pipe, tmp_path):
    files = _uploads(tmp_path / "up", ["a1.png", "a2.png"])
    reference = str(_reference(tmp_path / "rgba.png", rgba=True))
    runs = [colorize_upload(pipe, reference, files, JobSettings(steps=1, seed=123456789), tmp_path / f"o{i}")
            for i in range(2)]  # fmt: skip
    assert runs[0].seed == runs[1].seed == 123456789
    assert runs[0].video.read_bytes() == runs[1].video.read_bytes()
    # what `lvcd colorize --reference rgba.png --lineart folder/ -o shot.mp4 --seed ...` writes: the same file
    folder = tmp_path / "cli_lineart"
    folder.mkdir()
    for name in ("a1.png", "a2.png"):
        Image.open(next((tmp_path / "up").glob(f"*/{name}"))).save(folder / name)
    cli = pipe(reference, folder, num_steps=1, seed=123456789, output=tmp_path / "cli.mp4", fps=20, progress=False)
    assert cli.output_path.read_bytes() == runs[0].video.read_bytes()
    assert (load_image(reference)[:, 64:] == 255).all()  # transparent areas are white, as the model sees them


def test_video_lineart_comes_back_at_its_frame_rate(pipe, tmp_path):
    clip = tmp_path / "up" / "clip.mp4"
    with open_writer(clip, fps=24) as writer:
        for index in range(3):
            writer.write(np.repeat(_drawing(index)[..., None], 3, axis=2))
    result = colorize_upload(pipe, str(_reference(tmp_path / "ref.png")), [str(clip)], JobSettings(steps=1),
                             tmp_path / "out")  # fmt: skip
    assert result.fps == 24 and result.video.name == "clip_colorized.mp4"
    video = FrameSource.open(result.video)
    assert len(video) == 3 and video.fps == pytest.approx(24)


def test_a_gifs_held_drawings_are_kept_in_the_result_and_the_side_by_side(pipe, tmp_path):
    """A GIF holding a drawing (a longer delay) came back at one constant rate: the holds were lost."""
    gif = tmp_path / "up" / "held.gif"
    gif.parent.mkdir()
    drawings = [Image.fromarray(_drawing(index)).convert("RGB") for index in range(3)]
    drawings[0].save(gif, save_all=True, append_images=drawings[1:], duration=[100, 500, 100], loop=0)
    result = colorize_upload(pipe, str(_reference(tmp_path / "ref.png")), [str(gif)], JobSettings(steps=1),
                             tmp_path / "out")  # fmt: skip
    for video in (result.video, result.side_by_side):
        assert FrameSource.open(video).frame_durations == pytest.approx([0.1, 0.5, 0.1], abs=1e-3), video


def test_a_cancelled_job_leaves_no_folder_behind(pipe, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    files = _uploads(tmp_path / "up", [f"f{i}.png" for i in range(3)])
    flag = threading.Event()
    flag.set()
    with pytest.raises(JobCancelled):
        colorize_upload(pipe, str(_reference(tmp_path / "ref.png")), files, JobSettings(steps=2), tmp_path / "out",
                        cancel=flag)  # fmt: skip
    assert not (tmp_path / "out").exists() and list((tmp_path / "tmp").iterdir()) == []


def test_a_failed_job_removes_only_what_it_wrote(pipe, tmp_path, monkeypatch):
    """A results folder the caller gave, holding their files: a job that fails (here in the side-by-side video, after
    the colorized one was written) removes its own video and leaves the folder and the caller's files."""
    import lvcd.ui.jobs as jobs

    results = tmp_path / "results"
    results.mkdir()
    (results / "last_week_render.mp4").write_bytes(b"keep me")
    files = _uploads(tmp_path / "up", [f"f{i}.png" for i in range(2)])

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(jobs, "write_side_by_side", broken)
    with pytest.raises(OSError, match="disk full"):
        colorize_upload(pipe, str(_reference(tmp_path / "ref.png")), files, JobSettings(steps=1), results)
    assert [p.name for p in results.iterdir()] == ["last_week_render.mp4"]


# --- sessions and the page -------------------------------------------------------------------------------------------


def test_sessions_cancel_and_delete_what_a_page_leaves(tmp_path):
    sessions = Sessions()
    flag = sessions.begin("page-a")
    first, second = tmp_path / "r1", tmp_path / "r2"
    first.mkdir(), second.mkdir()
    sessions.keep_result("page-a", first)
    sessions.keep_result("page-a", second)
    assert not first.exists() and second.exists()  # a new result replaces the page's previous one
    assert sessions.cancel("page-a") and flag.is_set() and not sessions.cancel("page-b")
    sessions.end("page-a", flag)
    sessions.close("page-a")
    assert not second.exists()
    # a page closed while its job runs: the job is cancelled, and a result that still arrives is not kept
    flag = sessions.begin("page-c")
    sessions.close("page-c")
    late = tmp_path / "late"
    late.mkdir()
    sessions.end("page-c", flag)
    sessions.keep_result("page-c", late)
    assert flag.is_set() and not late.exists()


def test_choosing_line_art_again_replaces_the_files_held_whatever_order_the_events_come():
    # gradio's field adds a new choice after what it holds and fires upload and change at once; the page keeps the
    # new choice only and shows no preview of the field as gradio grew it
    for change_first in (True, False):
        sessions, shown = Sessions(), []

        def change(files, sessions=sessions, shown=shown):
            if sessions.lineart_to_show("p", files):
                shown.append(files)

        sessions.lineart_chosen("p", ["/u/a/f1.png", "/u/b/f2.png"])
        change(["/u/a/f1.png", "/u/b/f2.png"])
        grown = ["/u/a/f1.png", "/u/b/f2.png", "/u/a/f1.png"]  # f1.png chosen again
        if change_first:
            change(grown)
        kept = sessions.lineart_chosen("p", grown)
        if not change_first:
            change(grown)
        change(kept)  # the field takes the replacement
        assert kept == ["/u/a/f1.png"]
        assert shown == [["/u/a/f1.png", "/u/b/f2.png"], ["/u/a/f1.png"]], change_first
    sessions = Sessions()
    sessions.lineart_chosen("p", ["/u/a.png", "/u/b.png"])
    assert sessions.lineart_to_show("p", ["/u/a.png", "/u/b.png"])
    assert sessions.lineart_to_show("p", ["/u/a.png"])  # a file removed with its x: the rest stays
    assert sessions.lineart_to_show("p", ["/ex/e1.png", "/ex/e2.png"])  # an example: as it is


def test_file_names_are_shown_as_the_user_named_them(tmp_path, monkeypatch):
    from gradio.data_classes import FileData, ListFiles

    # a cache folder of the test's own: gradio's default (/tmp/gradio) may not exist, or be deleted by another server
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()

    names = ["frame_[01]*bold*.png", "a_b_c.png", "<x>.png", "$$a$$.png"]
    message = _status(
        "Problem:", f"Line art: {names[0]} is 64x64 pixels but {names[2]} is 32x32; {names[1]} {names[3]}"
    )
    assert message.startswith("**Problem:** Line art: frame\\_\\[01\\]\\*bold\\*\\.png")
    assert "\\<x\\>" in message and "\\$\\$a\\$\\$" in message
    # gradio stores uploads under names stripped of *<>$; the field passes the user's names on, both ways
    field = keeping_user_names(gr.File(file_count="multiple"))
    stored = []
    for index, name in enumerate(names):
        (tmp_path / str(index)).mkdir()
        stored.append(tmp_path / str(index) / name.replace("*", "").replace("<", "").replace(">", "").replace("$", ""))
        stored[-1].write_bytes(b"x")
    files = field.preprocess(
        ListFiles(root=[FileData(path=str(p), orig_name=n) for p, n in zip(stored, names, strict=True)])
    )
    assert [Upload.of(f).name for f in files] == names
    assert [item.orig_name for item in field.postprocess(files).root] == names


def test_page_has_its_controls_and_no_analytics(pipe):
    app = build_app(pipe, examples=False)
    assert isinstance(app, gr.Blocks) and app.analytics_enabled is False
    ids = {c.get("props", {}).get("elem_id") for c in app.config["components"]}
    assert {"lvcd-reference", "lvcd-lineart", "lvcd-thumbnails", "lvcd-run", "lvcd-stop", "lvcd-result",
            "lvcd-side-by-side", "lvcd-status", "lvcd-seed", "lvcd-height", "lvcd-width", "lvcd-fps"} <= ids  # fmt: skip
    dependencies = app.config["dependencies"]
    assert any(d.get("cancels") for d in dependencies)  # Stop cancels the running job
    assert any("unload" in str(d.get("targets")) for d in dependencies)  # a closed page cancels its job


def test_a_cache_shared_with_another_server_keeps_its_files_and_is_not_served(pipe, tmp_path, monkeypatch):
    """GRADIO_TEMP_DIR set by the user (here shared by two `lvcd ui` servers, maybe /tmp itself): this server serves
    and, on exit, deletes only its own folders in it."""
    from lvcd.ui.page import launch_page

    shared = tmp_path / "shared"
    other = shared / "lvcd-jobs" / "another-server" / "job" / "shot_colorized.mp4"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"another server's result")
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(shared))
    launched = {}

    def launch(self, **kwargs):
        launched.update(kwargs, folders=self.lvcd_folders)
        (self.lvcd_folders[0] / "job").mkdir(parents=True)
        (self.lvcd_folders[0] / "job" / "result.mp4").write_bytes(b"ours")

    monkeypatch.setattr(gr.Blocks, "launch", launch)
    launch_page(pipe, examples=False)
    jobs, examples = launched["folders"]
    assert jobs.parent == shared / "lvcd-jobs" and jobs.name != "another-server"
    assert launched["allowed_paths"] == [str(jobs), str(examples)]  # not the whole shared folder
    assert not jobs.exists() and other.read_bytes() == b"another server's result"
    monkeypatch.chdir(tmp_path)  # a cache under the working directory: allowed (gradio would refuse dot-file uploads)
    launch_page(pipe, examples=False)
    assert str(shared.resolve()) in launched["allowed_paths"]
    monkeypatch.chdir(shared)  # the working directory itself is never opened
    launch_page(pipe, examples=False)
    assert str(shared.resolve()) not in launched["allowed_paths"]


def test_a_job_out_of_gpu_memory_says_what_needs_less_not_report_a_bug(pipe, tmp_path, monkeypatch):
    from types import SimpleNamespace

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 3.10 GiB. GPU 0 has a total capacity of "
                                     "7.63 GiB of which 900.00 MiB is free.\nOf the allocated memory ...")  # fmt: skip

    app = build_app(pipe, examples=False)
    (run,) = [f.fn for f in app.fns.values() if f.name == "run"]
    monkeypatch.setattr(type(pipe), "__call__", out_of_memory)
    files = _uploads(tmp_path / "up", ["a1.png", "a2.png"])
    video, side, status = run(str(_reference(tmp_path / "ref.png")), files, 1, None, "auto", 64, 128, 20, "euler", "auto",
                              0, SimpleNamespace(session_hash="page-oom"), lambda *args, **kwargs: None)  # fmt: skip
    assert video is None and side is None
    assert "Could not colorize:" in status and "Please report it" not in status
    assert "the GPU ran out of memory (3.10 GiB more were needed, 900.00 MiB free)" in status
    assert "a smaller processing size" in status


def test_the_lineart_note_says_when_scanned_paper_will_be_levelled(tmp_path):
    from lvcd.ui.jobs import levels_note

    clean = _uploads(tmp_path / "clean", ["a1.png", "a2.png"])
    assert levels_note(read_lineart(clean, max_side=8192)) == ""
    scans = []
    for path in _uploads(tmp_path / "scan", ["s1.png", "s2.png"]):  # the same drawings on grey, grainy paper
        gray = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
        noise = np.random.default_rng(len(scans)).normal(0, 4, gray.shape)
        Image.fromarray(np.clip(np.rint(40 + gray * (160 / 255) + noise), 0, 255).astype(np.uint8)).save(path)
        scans.append(path)
    note = levels_note(read_lineart(scans, max_side=8192))
    assert note.startswith(" Scanned paper (paper 200, grain 4") and "brought to white" in note


def test_stop_without_a_running_job_keeps_the_status_line(pipe):
    """Stop pressed after a job ended (or while it waits in the queue) must not wipe the 'Done: ... seed N' line."""
    from types import SimpleNamespace

    app = build_app(pipe, examples=False)
    (stop,) = [block.fn for block in app.fns.values() if getattr(block.fn, "__name__", "") == "stop"]
    kept = stop(SimpleNamespace(session_hash="nobody-running"))
    assert kept == gr.update()  # no change to the status, unlike the "" it returned


def test_lvcd_ui_takes_the_demo_model(monkeypatch):
    from typer.testing import CliRunner

    import lvcd.ui
    from lvcd.cli import app as cli

    served = {}
    monkeypatch.setattr(lvcd.ui, "launch_page", lambda pipe, **kwargs: served.update(pipe=pipe))
    assert CliRunner().invoke(cli, ["ui", "--model", "demo", "--device", "cpu"]).exit_code == 0
    assert served["pipe"].config.name == "lvcd-demo"
    refused = CliRunner().invoke(cli, ["ui", "--model", "big"])
    assert refused.exit_code == 2 and "only packaged model is 'demo'" in refused.output


def test_lvcd_ui_passes_its_limits_to_the_page(monkeypatch):
    from typer.testing import CliRunner

    import lvcd.ui
    from lvcd.cli import app as cli

    served = {}
    monkeypatch.setattr(lvcd.ui, "launch_page", lambda pipe, **kwargs: served.update(kwargs))
    command = ["ui", "--model", "demo", "--device", "cpu", "--max-frames", "12", "--max-megapixels", "2.1"]
    assert CliRunner().invoke(cli, command).exit_code == 0
    limits = served["limits"]
    assert limits.max_frames == 12 and limits.max_frame_pixels == 2_100_000
    assert CliRunner().invoke(cli, ["ui", "--model", "demo", "--device", "cpu"]).exit_code == 0
    assert served["limits"].max_frames == lvcd.ui.PageLimits().max_frames
    assert served["limits"].max_frame_pixels >= lvcd.ui.PageLimits().max_frame_pixels  # 33.2 MP: 8K UHD fits
