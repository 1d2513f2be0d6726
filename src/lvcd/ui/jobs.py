"""One colorization job of the page: settings checked before any work, progress with the time left,
cancellation, cleanup.

Plain Python (no gradio): ``colorize_upload`` takes the uploaded files and the page's field values, checks them
all, then runs ``LVCDPipeline`` and writes the result video (named after the shot) and a side-by-side video
(line art | result, scaled to fit :data:`SIDE_BY_SIDE_MAX_HW`) into a fresh folder that it removes again if the job
fails or is cancelled.

Memory: the inputs are read one frame at a time, the result video is written at the line art's size (the encoder
keeps a few frames of it) and the side-by-side video at most at full HD, so a job's memory grows with the pixels of a
frame, not with the number of frames (measured with the demo model, peak RSS of the whole process: 1.4 GB for 8 or 16
frames of 4096x4096, 2.3 GB for 8 or 16 frames of 7680x4320). :class:`PageLimits` bounds both: ``max_frame_pixels``
(8K UHD by default) and ``max_frames`` (time and disk); a larger shot is refused in one line before any work, and the
command line (``lvcd colorize``), which has neither limit, can take it.

>>> result = colorize_upload(pipe, "ref.png", ["f1.png", "f2.png"], JobSettings(steps=25, seed=7))  # doctest: +SKIP
>>> result.video.name, result.seed                                                                  # doctest: +SKIP
('f_colorized.mp4', 7)
"""

from __future__ import annotations

import contextlib
import math
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from lvcd.diffusion import SAMPLERS
from lvcd.errors import InputError
from lvcd.io import open_writer, plan_size
from lvcd.io.lineart_input import POLARITIES
from lvcd.io.paper import LEVELS, UNEVEN_LIGHT
from lvcd.io.pyav import pyav
from lvcd.longvideo import plan_passes
from lvcd.ui.progress import JobProgress
from lvcd.ui.uploads import LineartUpload, check_reference, read_lineart

MAX_SEED = 2**53 - 1  # the largest whole number a browser's number field holds exactly
# The side-by-side video is a preview: at most full HD (each half at most 960 wide), whatever the line art's size.
SIDE_BY_SIDE_MAX_HW = (1080, 1920)


@dataclass(frozen=True)
class PageLimits:
    """What one page accepts: bounds on uploads and on the work a request may ask for."""

    max_upload_mb: float = 100.0  # per uploaded file, enforced by the server before a file is stored
    max_side: int = 1024  # processing size, pixels a side
    max_input_side: int = 8192  # uploaded images and videos, pixels a side
    max_frame_pixels: int = 7680 * 4320  # pixels of an uploaded picture or video frame (8K UHD): bounds a job's RAM
    max_frames: int = 1000  # line-art frames of one shot: bounds a job's time and disk
    max_kept_results: int = 32  # result folders kept, all pages and API calls together (the oldest goes first)
    max_result_age_s: float = 3600.0  # a result folder is deleted after this long (as gradio deletes uploads)
    max_steps: int = 50
    max_fps: float = 240.0


@dataclass(frozen=True)
class JobSettings:
    """The page's options, checked: see :func:`check_settings`."""

    steps: int = 25
    seed: int | None = None  # None: a random seed, reported in the result
    polarity: str = "auto"
    size_hw: tuple[int, int] | None = None  # None: automatic (near the trained 320x576 area, aspect kept)
    fps: float | None = None  # None: the line-art video's own rate, else 20
    sampler: str = "euler"  # a name in lvcd.diffusion.SAMPLERS
    lineart_levels: str = "auto"  # scanned paper to white: auto, on or off (lvcd.io.paper)
    reference_frame: int = 0  # the frame the reference colours (inside the shot: coloured from there both ways)


@dataclass(frozen=True)
class JobResult:
    video: Path
    side_by_side: Path
    seed: int
    frames: int
    fps: float
    input_hw: tuple[int, int]
    model_hw: tuple[int, int]
    polarity: str
    seconds: float
    levels: str | None = None  # what levelling did to scanned line art (PaperLevels.describe), None when untouched


class JobCancelled(Exception):
    """Raised between denoising steps when the job's cancel flag is set (Stop pressed, page closed)."""


def _whole_number(value, field: str, low: int, high: int, hint: str) -> int:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{field}: {value!r} is not a number; {hint}.") from None
    if not math.isfinite(number) or number != int(number):
        raise InputError(f"{field}: {value!r} is not a whole number; {hint}.")
    number = int(value) if isinstance(value, int) else int(number)
    if not low <= number <= high:
        shown = str(number) if len(str(number)) <= 20 else f"{number:.3g}"
        raise InputError(f"{field}: {shown} is out of range; {hint}.")
    return number


def check_settings(
    steps=25, seed=None, polarity="auto", height=0, width=0, fps=0, limits: PageLimits = PageLimits(), multiple=64,
    sampler="euler", lineart_levels="auto", reference_frame=0,
) -> JobSettings:  # fmt: skip
    """The page's field values -> JobSettings, or InputError naming the field. Seed -1 or empty: random; height and
    width 0: automatic size; fps 0 or empty: the line-art video's rate (20 for images)."""
    steps = _whole_number(steps, "Steps", 1, limits.max_steps, f"use 1 to {limits.max_steps}")
    seed_hint = f"use a whole number from 0 to {MAX_SEED}, or -1 for a random seed"
    seed = None if seed in (None, "") else _whole_number(seed, "Seed", -1, MAX_SEED, seed_hint)
    if polarity not in POLARITIES:
        raise InputError(f"Line polarity: {polarity!r} is not one of {', '.join(POLARITIES)}.")
    size_hint = f"use multiples of {multiple} up to {limits.max_side}, or 0 and 0 for an automatic size"
    height = _whole_number(height or 0, "Processing size", 0, 10**9, size_hint)
    width = _whole_number(width or 0, "Processing size", 0, 10**9, size_hint)
    size_hw = None
    if height or width:
        if not (height and width) or height % multiple or width % multiple:
            raise InputError(f"Processing size: {height}x{width} (height x width) is not valid; {size_hint}.")
        if max(height, width) > limits.max_side:
            raise InputError(
                f"Processing size: {height}x{width} is above this page's limit of {limits.max_side} pixels a side; "
                f"{size_hint}."
            )
        size_hw = (height, width)
    try:
        rate = float(fps or 0)
    except (TypeError, ValueError):
        rate = math.nan
    if not (math.isfinite(rate) and (rate == 0 or 1 <= rate <= limits.max_fps)):
        raise InputError(f"Frames per second: {fps!r} is not valid; use 1 to {limits.max_fps:g}, or 0 for automatic.")
    if sampler not in SAMPLERS:
        raise InputError(f"Sampler: {sampler!r} is not one of {', '.join(SAMPLERS)}.")
    if lineart_levels not in LEVELS:
        raise InputError(f"Scanned paper: {lineart_levels!r} is not one of {', '.join(LEVELS)}.")
    reference_frame = _whole_number(
        reference_frame or 0, "Reference frame", 0, 10**9, "use the number of the frame the reference colours, 0 first"
    )
    seed = None if seed in (None, -1) else seed
    return JobSettings(steps, seed, polarity, size_hw, rate or None, sampler, lineart_levels, reference_frame)


def levels_note(lineart: LineartUpload) -> str:
    """What ``auto`` levels will do to this line art, for the page's note ("" for clean line art)."""
    from lvcd.hints import LineartFrames, resolve_levels, resolve_polarity

    frames = LineartFrames(lineart.frames)
    levels = resolve_levels(frames, resolve_polarity(frames, "auto"), "auto")
    if levels is None:
        return ""
    return (
        f" Scanned paper (paper {levels.paper:.0f}, grain {levels.grain:.1f}"
        + (", uneven lighting" if levels.uneven >= UNEVEN_LIGHT else "")
        + "): it will be brought to white and the ink to black (Scanned paper: off reads it as drawn)."
    )


Report = Callable[[float, float, str], None]  # (units done, units in all, text): see lvcd.ui.progress


def colorize_upload(
    pipe,
    reference,
    lineart_files: Sequence,
    settings: JobSettings = JobSettings(),
    output_dir: str | Path | None = None,
    limits: PageLimits = PageLimits(),
    cancel: threading.Event | None = None,
    report: Report | None = None,
    tracker: JobProgress | None = None,
) -> JobResult:
    """Check every input, then colorize into ``output_dir`` (created if needed; if the job fails, what it wrote is
    removed, and the folder too when this job made it and nothing else is in it).

    ``cancel``: set it to stop the job between two steps or two decoded frames (raises JobCancelled). ``report``:
    progress callback, one bar over the whole job (sampling, decoding, side-by-side video) with the time left;
    ``tracker``: the job's :class:`lvcd.ui.progress.JobProgress` (one that knows this server's speeds), else a new one.
    """
    started = time.monotonic()
    reference_upload = check_reference(reference, limits.max_input_side, limits.max_frame_pixels)
    lineart = read_lineart(lineart_files, limits.max_input_side, limits.max_frame_pixels, limits.max_frames)
    count, reference_frame = len(lineart.frames), settings.reference_frame
    if reference_frame >= count:
        raise InputError(
            f"Reference frame: {reference_frame} is past the last frame of this line art ({count - 1}, the first "
            "being 0); give the number of the frame the reference colours."
        )
    created = output_dir is None or not Path(output_dir).exists()  # a folder made here may go again, a given one not
    output_dir = Path(output_dir) if output_dir is not None else Path(tempfile.mkdtemp(prefix="lvcd-ui-result-"))
    output_dir.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []  # the outputs this job wrote (each written atomically: absent until complete)
    report = report or (lambda done, total, text: None)
    tracker = tracker or JobProgress()
    cfg = pipe.config
    model_hw = plan_size(lineart.size_hw, cfg.train_size_hw, cfg.size_multiple, settings.size_hw).model_hw
    passes = plan_passes(count, reference_frame, cfg.sampling.overlap, cfg.video_frames)
    windows = sum(len(plan.windows) for plan in passes.values())
    tracker.plan(windows, settings.steps, len(lineart.frames), (model_hw, settings.sampler))

    def on_step(progress) -> None:
        if cancel is not None and cancel.is_set():
            raise JobCancelled
        if getattr(progress, "phase", "sampling") == "decoding":
            report(*tracker.decoded(progress.frame, progress.frames))
        else:
            report(*tracker.sampled(progress))

    try:
        report(*tracker.starting())
        result = pipe(
            reference_upload.path, lineart.frames, size=settings.size_hw, num_steps=settings.steps,
            seed=settings.seed, polarity=settings.polarity, output=output_dir / f"{lineart.shot_name}_colorized.mp4",
            fps=settings.fps or None, overwrite=False, progress=False, callback=on_step, sampler=settings.sampler,
            lineart_levels=settings.lineart_levels, reference_frame=reference_frame,
        )  # fmt: skip
        made.append(result.output_path)
        side_by_side = write_side_by_side(
            lineart, result.output_path, output_dir, result.fps, cancel, lambda i, n: report(*tracker.side_by_side(i, n)),
            result.frame_durations,
        )  # fmt: skip
    except BaseException:
        for path in made:  # only what this job wrote; the folder too when this job made it and nothing else is in it
            path.unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):
                output_dir.rmdir()
        raise
    plan = result.size_plan
    return JobResult(
        result.output_path, side_by_side, result.seed, len(lineart.frames), result.fps, plan.input_hw, plan.model_hw,
        result.polarity, time.monotonic() - started,
        None if result.lineart_levels is None else result.lineart_levels.describe(),
    )  # fmt: skip


def side_by_side_hw(size_hw: tuple[int, int], max_hw: tuple[int, int] | None = None) -> tuple[int, int]:
    """The size of each half of the side-by-side video for line art of ``size_hw``: the line art's own size when two
    of them fit in ``max_hw`` (default :data:`SIDE_BY_SIDE_MAX_HW`), else scaled down to fit (aspect kept, even
    sides)."""
    height, width = size_hw
    max_hw = max_hw or SIDE_BY_SIDE_MAX_HW
    scale = min(1.0, max_hw[0] / height, max_hw[1] / (2 * width))
    if scale == 1.0:
        return height, width
    return max(2, 2 * round(height * scale / 2)), max(2, 2 * round(width * scale / 2))


def _result_frames(video: Path, size_hw: tuple[int, int]) -> Iterator[np.ndarray]:
    """The frames of a result video this job wrote (H.264, BT.709 limited range), scaled to ``size_hw`` as they are
    decoded. Slice threads only: frame threads would each hold a full-size frame."""
    av = pyav()
    height, width = size_hw
    with av.open(str(video), mode="r") as container:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"
        for frame in container.decode(stream):
            yield frame.to_ndarray(
                format="rgb24", width=width, height=height, interpolation="AREA",
                src_colorspace=av.video.reformatter.Colorspace.ITU709,
                src_color_range=av.video.reformatter.ColorRange.MPEG,
            )  # fmt: skip


def _scaled(frame: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    if frame.shape[:2] == size_hw:
        return frame
    return np.asarray(Image.fromarray(frame).resize(size_hw[::-1], Image.Resampling.BOX))


def write_side_by_side(
    lineart: LineartUpload,
    video: Path,
    output_dir: Path,
    fps: float,
    cancel: threading.Event | None = None,
    written: Callable[[int, int], None] | None = None,
    durations: tuple[float, ...] | None = None,
) -> Path:
    """``<shot>_side_by_side.mp4``: each line-art frame beside its colorized frame, scaled to fit
    :data:`SIDE_BY_SIDE_MAX_HW` (``written(frame, frames)`` after each, 1-based), timed as the result is (``fps``, or
    the line art's own frame ``durations``: a GIF's held drawings)."""
    target = output_dir / f"{lineart.shot_name}_side_by_side.mp4"
    count = len(lineart.frames)
    half_hw = side_by_side_hw(lineart.size_hw)
    with open_writer(target, fps=fps, durations=durations) as writer:
        frames = zip(lineart.frames, _result_frames(video, half_hw), strict=True)
        for index, (drawing, colour) in enumerate(frames):
            if cancel is not None and cancel.is_set():
                raise JobCancelled
            writer.write(np.concatenate([_scaled(drawing, half_hw), colour], axis=1))
            if written is not None:
                written(index + 1, count)
    return target
