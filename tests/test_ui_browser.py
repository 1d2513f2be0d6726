"""`lvcd ui` driven in a real browser: headless Chromium (playwright) against the server on the tiny model.

One server (``python -m lvcd.cli ui``, 127.0.0.1, a private TMPDIR, 1 MB upload limit) serves every test of this
module; the last test stops it and counts what it left behind. Chromium is Debian's (``apt-get install chromium``;
playwright's own browser download is not used): set LVCD_CHROMIUM to use another binary. Without playwright or a
Chromium the tests are skipped, with the reason in pytest's summary. Screenshots before and after a run go to a
temporary folder whose path is printed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import TINY_CONFIG
from lvcd.io import FrameSource, open_writer

CHROMIUM = os.environ.get("LVCD_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:
    sync_playwright = None

pytestmark = [
    pytest.mark.skipif(sync_playwright is None, reason="browser test: needs `pip install playwright`"),
    pytest.mark.skipif(CHROMIUM is None, reason="browser test: needs Chromium (`apt-get install chromium`)"),
]

ROOT = Path(__file__).resolve().parents[1]
UPLOAD_LIMIT_MB = 1
WAIT_MS = 90_000  # a job on the tiny model takes seconds; a loaded CI machine gets slack
LONG_FRAMES = 40  # the long job: 4 windows (overlap 4) of the tiny model


class Server:
    def __init__(self, url: str, process: subprocess.Popen, log: Path, tmp: Path):
        self.url, self.process, self.log_path, self.tmp = url, process, log, tmp

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = WAIT_MS / 1000) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(pattern, self.log())
            if match:
                return match
            time.sleep(0.2)
        raise AssertionError(f"server log never matched {pattern!r}:\n{self.log()[-3000:]}")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny_weights, tmp_path_factory):
    root = tmp_path_factory.mktemp("ui_server")
    tmp = root / "tmp"
    tmp.mkdir()
    port = _free_port()
    env = {**os.environ, "TMPDIR": str(tmp), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    env.pop("GRADIO_TEMP_DIR", None)
    log = root / "server.log"
    command = [
        sys.executable, "-m", "lvcd.cli", "ui", "--svd", str(tiny_weights["svd"]), "--lvcd", str(tiny_weights["lvcd"]),
        "--config", str(TINY_CONFIG), "--device", "cpu", "--host", "127.0.0.1", "--port", str(port),
        "--max-upload-mb", str(UPLOAD_LIMIT_MB), "--max-side", "512",
    ]  # fmt: skip
    with log.open("wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT, cwd=root)
    running = Server(f"http://127.0.0.1:{port}/", process, log, tmp)
    deadline = time.monotonic() + 180
    while True:
        try:
            with urllib.request.urlopen(running.url, timeout=2):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                running.stop()
                pytest.fail(f"`lvcd ui` did not start:\n{running.log()[-3000:]}")
            time.sleep(0.3)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    context.set_default_timeout(WAIT_MS)  # a shared CI machine under load is slow to render, not broken
    context.set_default_navigation_timeout(WAIT_MS)
    yield context
    context.close()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Files a user would pick: drawings (a hidden one among them), an RGBA reference, a text file, a long shot."""
    folder = tmp_path_factory.mktemp("user_files")
    for index, name in enumerate(["walk_1.png", "walk_2.png", ".walk_3.png", "walk_10.png"]):
        Image.fromarray(_drawing(index)).save(folder / name)
    colour = np.random.default_rng(0).integers(0, 255, (64, 128, 4), dtype=np.uint8)
    colour[..., 3] = 255
    colour[:, 64:, 3] = 0  # the right half is transparent
    Image.fromarray(colour).save(folder / "reference.png")
    (folder / "notes.txt").write_text("a text file, not a picture")
    for name in ("a", "b"):
        (folder / name).mkdir()
        Image.fromarray(_drawing(0 if name == "a" else 1)).save(folder / name / "frame1.png")
    (folder / "odd").mkdir()
    for index, name in enumerate(["frame_[01]*bold*.png", "<x>.png", "a_b_c.png"]):
        Image.fromarray(_drawing(index)).save(folder / "odd" / name)
    Image.new("L", (32, 32), 255).save(folder / "odd" / "*small*.png")
    (folder / "long").mkdir()
    for index in range(LONG_FRAMES):
        Image.fromarray(_drawing(index % 12)).save(folder / "long" / f"long_{index:02d}.png")
    with open_writer(folder / "clip24.mp4", fps=24) as writer:
        for index in range(3):
            writer.write(np.repeat(_drawing(index)[..., None], 3, axis=2))
    with open(folder / "big.png", "wb") as big:
        big.truncate(2 * UPLOAD_LIMIT_MB * 1024 * 1024)
    return folder


def _drawing(index: int) -> np.ndarray:
    drawing = np.full((64, 128), 255, np.uint8)
    drawing[:, 10 + 7 * index] = 0
    return drawing


def _open(context, server):
    page = context.new_page()
    page.goto(server.url)
    page.wait_for_selector("#lvcd-run")
    return page


def _upload(page, reference: Path | None, lineart: list[Path]) -> None:
    if reference is not None:
        page.locator("#lvcd-reference input[type=file]").set_input_files(str(reference))
    if lineart:
        page.locator("#lvcd-lineart input[type=file]").set_input_files([str(p) for p in lineart])


def _set(page, field: str, value) -> None:
    box = page.locator(f"#{field} input[type=number]").first
    box.fill(str(value))
    box.press("Tab")  # gradio takes the value on change/blur


def _status(page, pattern: str, timeout: int = WAIT_MS, where: str = "#lvcd-status") -> str:
    status = page.locator(where)
    expect(status).to_contain_text(re.compile(pattern), timeout=timeout)
    return status.inner_text()


def _fetch_video(page, selector: str, folder: Path) -> tuple[str, FrameSource]:
    source = page.locator(f"{selector} video").get_attribute("src")
    response = page.request.get(source)
    assert response.ok, source
    name = source.rsplit("/", 1)[-1]
    (folder / name).write_bytes(response.body())
    return name, FrameSource.open(folder / name)


def _assert_user_facing(text: str, server: Server) -> None:
    assert str(server.tmp) not in text and "/tmp" not in text and not re.search(r"(?<!\w)--\w", text), text


def test_page_colorizes_every_upload_in_name_order(server, context, inputs, tmp_path, capsys):
    shots = Path(tempfile.mkdtemp(prefix="lvcd-browser-screenshots-"))
    page = _open(context, server)
    page.set_viewport_size({"width": 640, "height": 700})  # one column: the result is below the button
    page.screenshot(path=str(shots / "before.png"), full_page=True)
    frames = [inputs / n for n in ("walk_10.png", ".walk_3.png", "walk_2.png", "walk_1.png")]
    _upload(page, inputs / "reference.png", frames)
    captions = page.locator("#lvcd-thumbnails")
    expect(captions).to_contain_text("3: walk_10.png", timeout=WAIT_MS)
    assert re.findall(r"\d: [.\w]+\.png", captions.inner_text()) == [
        "0: .walk_3.png", "1: walk_1.png", "2: walk_2.png", "3: walk_10.png"
    ]  # fmt: skip
    preview = page.locator("#lvcd-reference-preview img")
    expect(preview).to_have_count(1, timeout=WAIT_MS)
    pixels = np.asarray(Image.open(_save(page.request.get(preview.get_attribute("src")).body(), tmp_path, "p")))
    assert pixels[:, -10:, :3].min() >= 250  # the transparent half is white, as the model sees it
    _set(page, "lvcd-steps", 1)
    _set(page, "lvcd-seed", 987654321)
    page.click("#lvcd-run")
    page.evaluate("window.scrollTo(0, 0)")  # the user looks back at the form while the job runs
    expect(page.locator("#lvcd-result")).not_to_be_in_viewport()
    text = _status(page, "Done:")
    assert "4 frames" in text and "seed 987654321" in text and "20 fps" in text
    expect(page.locator("#lvcd-status")).to_be_in_viewport()  # scrolled to the outcome and the result below it
    expect(page.locator("#lvcd-result")).to_be_in_viewport()
    assert "/lvcd-jobs/" in page.locator("#lvcd-result video").get_attribute("src")  # served where written: one copy
    page.screenshot(path=str(shots / "after.png"), full_page=True)
    with capsys.disabled():
        print(f"\nbrowser screenshots (before/after a run): {shots}")
    name, video = _fetch_video(page, "#lvcd-result", tmp_path)
    assert name == "walk_colorized.mp4" and len(video) == 4 and video.fps == pytest.approx(20)
    name, side = _fetch_video(page, "#lvcd-side-by-side", tmp_path)
    assert name == "walk_side_by_side.mp4" and len(side) == 4 and tuple(side.size_hw) == (64, 256)
    # frame order: .walk_3 (drawn with index 2), walk_1 (0), walk_2 (1), walk_10 (3)
    assert [int(np.argmin(f[:, :128].mean(axis=(0, 2)))) for f in side] == [24, 10, 17, 31]


def _save(data: bytes, folder: Path, name: str) -> Path:
    (folder / name).write_bytes(data)
    return folder / name


def test_problems_are_readable_messages_naming_field_and_file(server, context, inputs):
    page = _open(context, server)
    _upload(page, inputs / "notes.txt", [inputs / "walk_1.png"])
    text = _status(page, "Coloured reference: notes.txt is not an image", where="#lvcd-reference-note")
    _assert_user_facing(text, server)
    page.click("#lvcd-run")
    text = _status(page, "Could not colorize: Coloured reference: notes.txt is not an image")
    _assert_user_facing(text, server)

    page = _open(context, server)
    _upload(page, inputs / "reference.png", [inputs / "a" / "frame1.png", inputs / "b" / "frame1.png"])
    _assert_user_facing(_status(page, "two uploaded files are named frame1.png", where="#lvcd-lineart-note"), server)
    page.click("#lvcd-run")
    _assert_user_facing(_status(page, "Could not colorize: Line art: two uploaded files are named frame1.png"), server)

    page = _open(context, server)
    _upload(page, inputs / "reference.png", [inputs / "walk_1.png"])
    _set(page, "lvcd-seed", "1e30")
    page.click("#lvcd-run")
    _assert_user_facing(_status(page, r"Could not colorize: Seed: 1e\+30 is out of range"), server)
    _set(page, "lvcd-seed", -1)
    _set(page, "lvcd-height", 64000)
    _set(page, "lvcd-width", 64000)
    page.click("#lvcd-run")
    _status(page, "Processing size: 64000x64000 is above this page's limit of 512")
    assert "Error" not in page.locator("#lvcd-result").inner_text()  # no bare error badge


def test_choosing_line_art_again_replaces_it_and_names_show_as_typed(server, context, inputs):
    page = _open(context, server)
    odd = ["frame_[01]*bold*.png", "<x>.png", "a_b_c.png"]
    _upload(page, None, [inputs / "walk_1.png", inputs / "walk_2.png"])
    expect(page.locator("#lvcd-thumbnails")).to_contain_text("1: walk_2.png", timeout=WAIT_MS)
    _upload(page, None, [inputs / "odd" / name for name in odd])  # chosen again: these replace the two
    _status(page, "3 frames in this order", where="#lvcd-lineart-note")
    expect(page.locator("#lvcd-thumbnails")).to_contain_text("2: frame_[01]*bold*.png", timeout=WAIT_MS)
    captions = page.locator("#lvcd-thumbnails").inner_text()
    assert re.findall(r"\d: \S+\.png", captions) == ["0: <x>.png", "1: a_b_c.png", "2: frame_[01]*bold*.png"]
    for name in odd:  # the field lists the user's names too (gradio stored them as x.png, frame_[01]bold.png)
        expect(page.locator("#lvcd-lineart")).to_contain_text(name.removesuffix(".png"))
    _upload(page, None, [inputs / "odd" / "frame_[01]*bold*.png", inputs / "odd" / "*small*.png"])
    text = _status(page, "Problem:", where="#lvcd-lineart-note")  # a Markdown note: the names stay as typed
    assert "frame_[01]*bold*.png is 128x64 pixels but *small*.png is 32x32" in text, text


def test_the_example_shot_fills_the_inputs(server, context):
    page = _open(context, server)
    page.get_by_text("example_reference.png").click()
    _status(page, "15 frames in this order, 576x320", where="#lvcd-lineart-note")
    expect(page.locator("#lvcd-reference-preview img")).to_have_count(1, timeout=WAIT_MS)


def test_uploads_over_the_limit_are_refused(server, context, inputs):
    page = _open(context, server)
    page.locator("#lvcd-lineart input[type=file]").set_input_files(str(inputs / "big.png"))
    expect(
        page.get_by_text(re.compile(r"exceed the maximum allowed size of 1(\.0)? ?MB.*big\.png", re.I))
    ).to_be_visible(timeout=WAIT_MS)
    # the server refuses it too (a client that skips the page's check)
    response = page.request.post(
        server.url + "gradio_api/upload",
        multipart={"files": {"name": "big.png", "mimeType": "image/png", "buffer": (inputs / "big.png").read_bytes()}},
    )
    assert response.status == 413


def test_video_line_art_comes_back_at_its_frame_rate(server, context, inputs, tmp_path):
    page = _open(context, server)
    _upload(page, inputs / "reference.png", [inputs / "clip24.mp4"])
    _status(page, "clip24.mp4: 3 frames at 24 fps", where="#lvcd-lineart-note")
    _set(page, "lvcd-steps", 1)
    page.click("#lvcd-run")
    assert "24 fps" in _status(page, "Done:")
    name, video = _fetch_video(page, "#lvcd-result", tmp_path)
    assert name == "clip24_colorized.mp4" and len(video) == 3 and video.fps == pytest.approx(24)


def _start_long_job(page, inputs, server) -> str:
    """Start a job far longer than the tests wait; returns its id once it runs."""
    _upload(page, inputs / "reference.png", sorted((inputs / "long").iterdir()))
    expect(page.locator("#lvcd-thumbnails")).to_contain_text(
        f"{LONG_FRAMES - 1}: long_{LONG_FRAMES - 1}.png", timeout=WAIT_MS
    )
    _set(page, "lvcd-steps", 50)  # 4 windows x 50 steps: far longer than the tests wait
    page.click("#lvcd-run")
    progress = page.get_by_text(re.compile(r"sampling · window 1/4 · step \d+/50 · about \d+:\d\d left"))
    expect(progress.first).to_be_visible(timeout=WAIT_MS)
    return re.findall(r"job (\w+) started", server.log())[-1]  # one job runs at a time: this one


def test_stop_cancels_the_running_job(server, context, inputs):
    page = _open(context, server)
    job = _start_long_job(page, inputs, server)
    page.click("#lvcd-stop")
    _status(page, "Stopped.")
    server.wait_for_log(rf"job {job} cancelled")
    assert f"job {job} done" not in server.log()
    assert list(server.tmp.glob(f"**/{job}")) == []  # its result folder is gone


def test_two_pages_queue_and_a_closed_page_cancels_its_job(server, context, inputs, tmp_path):
    first = _open(context, server)
    job = _start_long_job(first, inputs, server)
    second = _open(context, server)
    _upload(second, inputs / "reference.png", [inputs / "walk_1.png", inputs / "walk_2.png"])
    expect(second.locator("#lvcd-thumbnails")).to_contain_text("1: walk_2.png", timeout=WAIT_MS)
    _set(second, "lvcd-steps", 1)
    second.click("#lvcd-run")
    waiting = r"waiting: 1 job ahead of yours \(one job runs at a time\); the running one has about \d+:\d\d left"
    expect(second.get_by_text(re.compile(waiting)).first).to_be_visible(timeout=WAIT_MS)
    first.close()  # the tab goes away mid-run
    server.wait_for_log(rf"job {job} cancelled \(page")
    _status(second, "Done:")
    assert f"job {job} done" not in server.log()  # the closed page's job was stopped, the waiting one then ran
    _, video = _fetch_video(second, "#lvcd-result", tmp_path)
    assert len(video) == 2


def test_temporary_folders_are_removed_after_jobs_and_on_exit(server, browser):
    for context in browser.contexts:
        context.close()  # every page closed: their results go

    def ours() -> list[str]:
        return sorted(p.name for p in server.tmp.iterdir() if p.name.startswith("lvcd"))

    def results() -> list[Path]:
        return [p for folder in server.tmp.glob("lvcd-ui-cache-*") for p in (folder / "lvcd-jobs").glob("*/*")]

    deadline = time.monotonic() + WAIT_MS / 1000  # a stopped job winds down within a step
    while (len(ours()) > 1 or results()) and time.monotonic() < deadline:
        time.sleep(0.5)
    leftovers = ours()
    assert len(leftovers) == 1 and leftovers[0].startswith("lvcd-ui-cache-"), leftovers  # no job's work folder
    assert results() == []  # results of closed pages are deleted
    assert server.stop() in (0, -signal.SIGTERM)
    assert ours() == []
    assert "temporary files removed" in server.log()
