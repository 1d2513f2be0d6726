"""The gradio page: widgets wired to :func:`lvcd.ui.jobs.colorize_upload`, one job at a time, cancellable.

Jobs wait in :class:`lvcd.ui.progress.Line` (in the order asked, told how many are ahead and the time the running one
has left) and show one bar over the whole job. Text from the user (file names) is shown as typed, not as Markdown.
Choosing line art again replaces the files chosen before (gradio's multi-file field would add them).

Per browser session (a page) the page keeps the running job's cancel flag and the folder of its last result: the
Stop button and closing the page set the flag (the job stops before its next denoising step); a new result or a
closed page deletes the previous result folder. Kept results are bounded (:class:`lvcd.ui.jobs.PageLimits`): one
older than ``max_result_age_s`` (an hour) is deleted, and beyond ``max_kept_results`` (32) results of jobs run
through the API (``/call/run``: each call is a session of its own that never closes) the oldest goes first; an open
page keeps its latest result whatever the API calls do. Results are written straight into gradio's cache (so they are not copied a
second time); :func:`launch_page` gives the server a private cache folder and deletes it on exit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
import uuid
from pathlib import Path

import gradio as gr
import numpy as np
import torch
from gradio.data_classes import ListFiles
from PIL import Image

from lvcd.diffusion import SAMPLERS
from lvcd.errors import LVCDError, out_of_memory, out_of_memory_text
from lvcd.io import load_image
from lvcd.ui.jobs import (
    LEVELS,
    POLARITIES,
    JobCancelled,
    PageLimits,
    check_settings,
    colorize_upload,
    levels_note,
)
from lvcd.ui.progress import JobProgress, Line
from lvcd.ui.sessions import Sessions
from lvcd.ui.uploads import LINEART_FIELD, REFERENCE_FIELD, Upload, check_reference, read_lineart, user_message

log = logging.getLogger("lvcd.ui")

TITLE = "lvcd: line-art video colorization"
MAX_THUMBNAILS = 48
VIDEO_THUMBNAILS = 12
PREVIEW_SIDE = 512
THUMBNAIL_SIDE = 192
# No web fonts: the page makes no request outside this server.
THEME = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
CSS = "#lvcd-status {min-height: 2.5em}"
# gradio's own scroll_to_output only scrolls in some embedding modes; the outcome line sits above the result video
SCROLL_TO_RESULT = "() => document.getElementById('lvcd-status')?.scrollIntoView({block: 'start'})"
# Jobs admitted to the page's own line (running or waiting, told the time left); more wait in gradio's queue.
JOBS_ADMITTED = 8
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>&$])")


def keeping_user_names(field: gr.File) -> gr.File:
    """``field``, passing on the name each file has on the user's machine (``orig_name``, the name
    :class:`lvcd.ui.uploads.Upload` shows): gradio stores an upload under its name stripped of characters such as
    ``*<>$`` (``<x>.png`` -> ``x.png``), which the page must neither show nor order frames by. (Wrapped on the field,
    not subclassed: a subclass of a gradio component writes a .pyi stub beside this module when imported.)"""
    preprocess, postprocess = field.preprocess, field.postprocess

    def preprocess_with_names(payload):
        files = preprocess(payload)
        given = payload.root if isinstance(payload, ListFiles) else [payload]
        for file, data in zip(files if isinstance(files, list) else [files], given, strict=False):
            if isinstance(file, str) and getattr(data, "orig_name", None):
                file.orig_name = data.orig_name  # a NamedString: it takes attributes
        return files

    def postprocess_with_names(value):
        data = postprocess(value)
        given = value if isinstance(value, list) else [value]
        shown = data.root if isinstance(data, ListFiles) else [data] if data is not None else []
        for item, file in zip(shown, given, strict=False):
            item.orig_name = getattr(file, "orig_name", None) or item.orig_name
        return data

    field.preprocess, field.postprocess = preprocess_with_names, postprocess_with_names
    return field


# What needs less GPU memory, as the page's user can choose it (and its host, when starting the page).
PAGE_LESS_MEMORY = "a smaller processing size (or, on the server, `lvcd ui --offload` or `--vae-dtype bf16`)"


def _example(folder: Path) -> list:
    """A procedural 15-frame shot (one window) to try the page with: [reference, [line-art frames]]."""
    from lvcd.data.synthetic import synth_shot

    shot = synth_shot(seed=20_000_001, num_frames=15, size_hw=(320, 576))
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(shot.frames[0]).save(folder / "example_reference.png")
    frames = []
    for index, drawing in enumerate(shot.lineart):
        Image.fromarray(drawing).save(folder / f"example_{index:03d}.png")
        frames.append(str(folder / f"example_{index:03d}.png"))
    return [str(folder / "example_reference.png"), frames]


def _thumbnail(image: np.ndarray, side: int = PREVIEW_SIDE) -> np.ndarray:
    picture = Image.fromarray(image)
    picture.thumbnail((side, side))
    return np.asarray(picture)


def plain(text: str) -> str:
    """``text`` for a Markdown field, shown as it is: ``frame_[01]*bold*.png`` stays that, not a link or bold."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text)


def _status(kind: str, text: str, markdown: bool = False) -> str:
    """A status line: ``kind`` in bold, then ``text`` as it is (it may carry the user's file names) or, for text of
    this page's own, as Markdown."""
    return f"**{kind}** {text if markdown else plain(text)}"


def build_app(
    pipe, limits: PageLimits = PageLimits(), examples: bool = True, title: str = TITLE, max_queue: int | None = None
) -> gr.Blocks:
    """The page for ``pipe`` (an LVCDPipeline). Launch it with :func:`launch_page` (limits, cleanup, no web fonts).
    ``max_queue``: the most jobs waiting their turn (None: no limit); one more is refused."""
    cache = Path(_cache_dir())
    # This server's own folders: a cache shared with another server (GRADIO_TEMP_DIR) must not mix their files.
    server = uuid.uuid4().hex[:12]
    jobs_folder, examples_folder = cache / "lvcd-jobs" / server, cache / "lvcd-examples" / server
    sessions = Sessions(limits.max_kept_results, limits.max_result_age_s, root=jobs_folder)
    line = Line(max_waiting=max_queue)  # one job on the model at a time, also while a stopped job winds down
    multiple = pipe.config.size_multiple

    def guarded(preview):
        """A preview never fails with a bare badge: its problem goes to the note under its field."""

        def show(files):
            uploads = [Upload.of(f) for f in (files if isinstance(files, list) else [files])] if files else []
            try:
                return preview(files)
            except LVCDError as err:
                return None, _status("Problem:", user_message(err, uploads, [cache]))
            except Exception as err:
                log.exception("preview failed")
                return None, _status(
                    "Unexpected error:", f"{type(err).__name__}: {user_message(err, uploads, [cache])}"
                )

        return show

    @guarded
    def preview_reference(file):
        if not file:
            return None, ""
        upload = check_reference(file, limits.max_input_side, limits.max_frame_pixels)
        return _thumbnail(load_image(upload.path)), ""

    @guarded
    def preview_lineart(files):
        if not files:
            return None, ""
        lineart = read_lineart(files, limits.max_input_side, limits.max_frame_pixels, limits.max_frames)
        (height, width), count = lineart.size_hw, len(lineart.frames)
        if lineart.is_video:
            every = max(1, count // VIDEO_THUMBNAILS)
            picked = ((i, f) for i, f in enumerate(lineart.frames) if i % every == 0 and i // every < VIDEO_THUMBNAILS)
            rate = f" at {lineart.fps:g} fps" if lineart.fps else ""
            shown = [(_thumbnail(frame, THUMBNAIL_SIDE), f"frame {index}") for index, frame in picked]
            frames_text = "1 frame" if count == 1 else f"{count} frames"
            return shown, plain(
                f"{lineart.uploads[0].name}: {frames_text}{rate}, {width}x{height}." + levels_note(lineart)
            )
        frames = zip(lineart.uploads[:MAX_THUMBNAILS], lineart.frames, strict=False)  # decodes only those shown
        shown = [(_thumbnail(frame, THUMBNAIL_SIDE), f"{i}: {upload.name}") for i, (upload, frame) in enumerate(frames)]
        more = f" (first {MAX_THUMBNAILS} shown)" if count > MAX_THUMBNAILS else ""
        frames_text = "1 frame" if count == 1 else f"{count} frames in this order{more}"
        return shown, plain(f"{frames_text}, {width}x{height}." + levels_note(lineart))

    def lineart_chosen(files, request: gr.Request):
        files = list(files or [])
        kept = sessions.lineart_chosen(request.session_hash or "local", [str(f) for f in files])
        return files[len(files) - len(kept) :]  # never gr.skip(): gradio would rebuild the field without its names

    def lineart_changed(files, request: gr.Request):
        files = list(files or [])
        if not sessions.lineart_to_show(request.session_hash or "local", [str(f) for f in files]):
            return gr.skip(), gr.skip()
        return preview_lineart(files)

    def run(reference, lineart_files, steps, seed, polarity, height, width, fps, sampler, levels, reference_frame,
            request: gr.Request, progress=gr.Progress()):  # fmt: skip
        session = request.session_hash or "local"
        uploads = [Upload.of(f) for f in ([reference] if reference else []) + list(lineart_files or [])]
        flag = sessions.begin(session)
        folder = jobs_folder / uuid.uuid4().hex
        tracker = JobProgress(line.speeds)
        try:
            settings = check_settings(
                steps, seed, polarity, height, width, fps, limits, multiple, sampler, levels, reference_frame
            )
            with line.turn(flag, tracker, lambda text: progress(0, desc=text)):
                log.info("job %s started (page %s)", folder.name, session)
                result = colorize_upload(
                    pipe, reference, lineart_files, settings, folder, limits, flag,
                    lambda done, total, text: progress(done / total, desc=text), tracker,
                )  # fmt: skip
        except JobCancelled:
            log.info("job %s cancelled (page %s)", folder.name, session)
            return None, None, _status("Stopped.", "Nothing was written.")
        except LVCDError as err:
            return None, None, _status("Could not colorize:", user_message(err, uploads, [cache]))
        except Exception as err:  # a bug: the page says so in one line, the server log has the traceback
            if out_of_memory(err):
                log.warning("job %s: %s", folder.name, " ".join(str(err).split()))
                return None, None, _status("Could not colorize:", out_of_memory_text(err, PAGE_LESS_MEMORY) + ".", True)
            log.exception("job %s failed", folder.name)
            message = user_message(err, uploads, [cache])
            return None, None, _status("Unexpected error:", f"{type(err).__name__}: {message}. Please report it.")
        finally:
            sessions.end(session, flag)
            if pipe.device.type == "cuda":  # a page idles between jobs: give the shot's memory back to the GPU
                torch.cuda.empty_cache()
        sessions.keep_result(session, folder)
        log.info("job %s done in %.1f s", folder.name, result.seconds)
        (h, w), (mh, mw) = result.input_hw, result.model_hw
        text = (
            f"{result.frames} frame{'s' * (result.frames != 1)}, {w}x{h} (processed at {mw}x{mh}), {result.fps:g} fps, line art "
            f"{result.polarity}, **seed {result.seed}** (enter it as the seed to get this result again), "
            f"{result.seconds:.1f} s." + (f" Line art: {result.levels}." if result.levels else "")
        )
        return str(result.video), str(result.side_by_side), _status("Done:", text, markdown=True)

    def stop(request: gr.Request):
        stopped = sessions.cancel(request.session_hash or "local")
        return _status("Stopped.", "Nothing was written.") if stopped else gr.update()  # else keep what it says

    def page_opened(request: gr.Request):
        sessions.opened(request.session_hash)

    def page_closed(request: gr.Request):
        log.info("page %s closed", request.session_hash)
        sessions.close(request.session_hash)

    with gr.Blocks(title=title, analytics_enabled=False, delete_cache=(600, 3600)) as app:
        gr.Markdown(
            f"# {title}\nUpload the **coloured reference** (frame 0 of the shot, coloured) and the **line art** of "
            "every frame (images, taken in natural order of their names, or one video/GIF), then **Colorize**. "
            f"Uploads up to {limits.max_upload_mb:g} MB a file, {limits.max_input_side} pixels a side and "
            f"{limits.max_frame_pixels / 1e6:.1f} megapixels a frame; up to {limits.max_frames} frames a shot; "
            f"processing size up to {limits.max_side} pixels a side."
        )
        with gr.Row():
            with gr.Column():
                with gr.Row():
                    reference = keeping_user_names(
                        gr.File(label=f"{REFERENCE_FIELD} (frame 0, or the frame set below)", elem_id="lvcd-reference")
                    )
                    reference_preview = gr.Image(
                        label="Reference as the model sees it", interactive=False, elem_id="lvcd-reference-preview"
                    )
                reference_note = gr.Markdown(elem_id="lvcd-reference-note")
                lineart = keeping_user_names(gr.File(
                    label=f"{LINEART_FIELD}: images or one video/GIF (choosing again replaces them)",
                    file_count="multiple", elem_id="lvcd-lineart",
                ))  # fmt: skip
                lineart_note = gr.Markdown(elem_id="lvcd-lineart-note")
                thumbnails = gr.Gallery(
                    label="Line art, in frame order", columns=6, height=220, elem_id="lvcd-thumbnails"
                )
                with gr.Accordion("Options", open=True):
                    with gr.Row():
                        steps = gr.Slider(1, limits.max_steps, value=25, step=1, label="Steps", elem_id="lvcd-steps")
                        seed = gr.Number(value=-1, precision=0, label="Seed (-1: random)", elem_id="lvcd-seed")
                        reference_frame = gr.Number(
                            value=0, precision=0, minimum=0, elem_id="lvcd-reference-frame",
                            label="Frame the reference colours (0: the first; later: coloured from it both ways)",
                        )  # fmt: skip
                    polarity = gr.Radio(list(POLARITIES), value="auto", label="Line polarity")
                    levels = gr.Radio(
                        list(LEVELS), value="auto", elem_id="lvcd-levels",
                        label="Scanned paper to white, ink to black (auto: only grey or grainy paper)",
                    )  # fmt: skip
                    sampler = gr.Dropdown(
                        list(SAMPLERS), value="euler", label="Sampler (euler: official; heun, dpmpp_2m: fewer steps)",
                        elem_id="lvcd-sampler",
                    )  # fmt: skip
                    with gr.Row():
                        height = gr.Number(value=0, precision=0, label="Processing height (0: auto)",
                                           elem_id="lvcd-height")  # fmt: skip
                        width = gr.Number(value=0, precision=0, label="Processing width (0: auto)",
                                          elem_id="lvcd-width")  # fmt: skip
                        fps = gr.Number(value=0, label="Frames per second (0: the video's, else 20)",
                                        elem_id="lvcd-fps")  # fmt: skip
                with gr.Row():
                    start = gr.Button("Colorize", variant="primary", elem_id="lvcd-run")
                    halt = gr.Button("Stop", variant="stop", elem_id="lvcd-stop")
            with gr.Column():
                status = gr.Markdown(elem_id="lvcd-status")
                result = gr.Video(label="Colorized shot", elem_id="lvcd-result", interactive=False)
                side_by_side = gr.Video(
                    label="Line art | result, side by side", elem_id="lvcd-side-by-side", interactive=False
                )
        if examples:
            gr.Examples([_example(examples_folder)], [reference, lineart], label="Example shot")

        reference.change(preview_reference, [reference], [reference_preview, reference_note], concurrency_limit=4)
        lineart.upload(lineart_chosen, [lineart], [lineart], queue=False)  # a new choice replaces the files held
        lineart.change(lineart_changed, [lineart], [thumbnails, lineart_note], concurrency_limit=4)
        job = start.click(
            run, [reference, lineart, steps, seed, polarity, height, width, fps, sampler, levels, reference_frame],
            [result, side_by_side, status],
            concurrency_limit=JOBS_ADMITTED, concurrency_id="colorize", trigger_mode="once",
        )  # fmt: skip
        job.then(None, js=SCROLL_TO_RESULT)  # in the browser, once the outcome is on the page
        halt.click(stop, None, [status], cancels=[job], queue=False)
        # no API endpoint: an API client could mark its sessions as open pages and escape the count bound
        app.load(page_opened, None, None, queue=False, api_name=False)
        app.unload(page_closed)
    app.lvcd_sessions = sessions  # for launch_page's cleanup on exit
    app.lvcd_folders = (jobs_folder, examples_folder)
    return app


def _cache_dir() -> str:
    """gradio's cache folder (uploads and served files), as gradio itself resolves it."""
    return os.environ.get("GRADIO_TEMP_DIR") or str((Path(tempfile.gettempdir()) / "gradio").resolve())


def launch_page(
    pipe,
    host: str = "127.0.0.1",
    port: int = 7860,
    limits: PageLimits = PageLimits(),
    examples: bool = True,
    max_queue: int = 16,
) -> None:
    """Serve the page until interrupted (Ctrl-C or SIGTERM), then delete what it stored.

    Unless GRADIO_TEMP_DIR is set, the server gets a private cache folder (uploads, results), deleted on exit.
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    private_cache = None
    if not os.environ.get("GRADIO_TEMP_DIR"):
        private_cache = tempfile.mkdtemp(prefix="lvcd-ui-cache-")
        os.environ["GRADIO_TEMP_DIR"] = private_cache
    if not log.handlers:  # job events on stderr, without the web stack's request logs
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("lvcd ui: %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    previous = (
        signal.signal(signal.SIGTERM, _interrupt) if threading.current_thread() is threading.main_thread() else None
    )
    app = None
    try:
        app = build_app(pipe, limits, examples, max_queue=max_queue)
        # at most max_queue jobs wait: those in the page's line (up to JOBS_ADMITTED - 1, refused beyond max_queue)
        # and those gradio holds until a place in the line frees
        app.queue(default_concurrency_limit=1, max_size=max(1, max_queue - (JOBS_ADMITTED - 1)))
        # allowed_paths: gradio refuses uploaded dot-files (.f3.png) when its cache lies under the working directory
        # unless the cache is allowed; a cache the user chose (GRADIO_TEMP_DIR, maybe /tmp itself) is not opened to the
        # page, only this server's own folders in it, and the cache itself when it is a folder under the working
        # directory (never the working directory or one above it)
        allowed = [private_cache] if private_cache is not None else [str(folder) for folder in app.lvcd_folders]
        cache, here = Path(_cache_dir()).resolve(), Path.cwd().resolve()
        if private_cache is None and here in cache.parents:  # a cache folder of its own under the working directory
            allowed.append(str(cache))
        app.launch(
            server_name=host, server_port=port, max_file_size=int(limits.max_upload_mb * 1024 * 1024), theme=THEME,
            css=CSS, footer_links=[], show_error=False, allowed_paths=allowed,
        )  # fmt: skip
    finally:
        if app is not None:
            app.close()
            app.lvcd_sessions.close_all()
            for folder in app.lvcd_folders:  # this server's, then their parents when no other server uses them
                shutil.rmtree(folder, ignore_errors=True)
                with contextlib.suppress(OSError):
                    folder.parent.rmdir()
        if private_cache is not None:
            shutil.rmtree(private_cache, ignore_errors=True)
            os.environ.pop("GRADIO_TEMP_DIR", None)
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        log.info("stopped; temporary files removed")


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
