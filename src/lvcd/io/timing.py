"""Per-frame timing: a shot whose frames are not all shown for the same time keeps that timing in its output.

Animators' GIFs hold a drawing by giving its frame a longer delay (on twos or threes, a pose held for a second); screen
recordings and phone videos have a variable frame rate. A :class:`lvcd.io.FrameSource` states such timing as
``frame_durations`` (seconds, one per frame), None when its frames share one rate; a writer given the durations
places every frame at its own time (:class:`FrameClock`) instead of at one constant rate. A frame rate given by the
caller (``--fps``) means one constant rate, as before.

>>> clock = FrameClock([0.1, 0.1, 0.3], Fraction(1, 100))
>>> clock.starts, clock.end
([0, 10, 20], 50)
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from lvcd.errors import InputError

if TYPE_CHECKING:
    import av

DEFAULT_FPS = 20.0  # a shot's frame rate when neither the caller nor its line art (a video, an animation) gives one
# MPEG's 90 kHz clock: whole ticks for a millisecond, a GIF's 1/100 s and 1/24, 1/25, 1/30, 1/50, 1/60 s
VIDEO_TIME_BASE = Fraction(1, 90000)
GIF_TIME_BASE = Fraction(1, 100)  # a GIF's delays are whole 1/100 s
GIF_MAX_DELAY = 655.35  # seconds: a GIF delay is 16 bits of 1/100 s
GIF_SHORTEST_PLAYED = 0.02  # browsers play GIF frames shorter than this at 0.1 s


def varying_durations(durations: Sequence[float | None], tolerance: float) -> tuple[float, ...] | None:
    """``durations`` (in any unit) when they differ by more than ``tolerance`` (the rounding of the file's timestamps:
    a 24 fps GIF's 4/4/5 hundredths is one rate), else None; None also when one is unknown or not positive (no timing
    to keep) or there are fewer than two frames."""
    if len(durations) < 2 or any(d is None or not math.isfinite(d) or d <= 0 for d in durations):
        return None
    if max(durations) - min(durations) <= tolerance * (1 + 1e-9):
        return None
    return tuple(float(d) for d in durations)


def animation_durations(image: Image.Image, count: int) -> tuple[float, ...] | None:
    """An animated GIF's, WebP's or APNG's frame delays (seconds) when they vary (:func:`varying_durations`), else
    None; ``image``: the file opened with Pillow, ``count`` its frames. One pass over the frames (WebP states a frame's
    delay only once its pixels are decoded); raises Pillow's errors for a frame that cannot be read."""
    if image.format not in ("GIF", "WEBP", "PNG"):
        return None  # a multi-page TIFF: pages, not frames in time
    delays = []  # milliseconds, as Pillow states them
    for index in range(count):
        image.seek(index)
        if image.format == "WEBP":
            image.load()
        delays.append(image.info.get("duration"))
    varying = varying_durations(delays, 10.0 if image.format == "GIF" else 1.0)  # one unit of the format's delays
    return None if varying is None else tuple(delay / 1000.0 for delay in varying)


def durations_from_timestamps(
    timestamps: Sequence[int | None], time_base: Fraction | None, ends: Sequence[int | None] = ()
) -> tuple[float, ...] | None:
    """A video's frame durations (seconds) from its frames' presentation timestamps (in ``time_base`` units, in display
    order) when the times between them vary by more than one tick, else None; also None for unknown or non-increasing
    timestamps (no timing to trust). The last frame ends at the first of ``ends`` after its start, else lasts as long
    as the one before it."""
    if len(timestamps) < 2 or not time_base or any(pts is None for pts in timestamps):
        return None
    gaps = [later - earlier for earlier, later in zip(timestamps, timestamps[1:], strict=False)]
    if min(gaps) <= 0 or max(gaps) - min(gaps) <= 1:  # one tick: rounding of a constant rate (24 fps in 1/1000 s)
        return None
    last = next((end - timestamps[-1] for end in ends if end is not None and end > timestamps[-1]), gaps[-1])
    return tuple(float(gap * time_base) for gap in [*gaps, last])


def durations_problem(durations: Sequence[float], kind: str) -> str | None:
    """Why ``durations`` cannot time the frames of an output of ``kind`` (see :func:`lvcd.io.output_kind`), or None."""
    if not durations:
        return "no frame durations were given"
    if not all(isinstance(d, numbers.Real) and math.isfinite(d) and d > 0 for d in durations):
        return "a frame's duration must be a positive number of seconds"
    if kind == "gif" and max(durations) > GIF_MAX_DELAY:
        return (
            f"a GIF frame lasts at most {GIF_MAX_DELAY:g} s and one lasts {max(durations):g} s; write .mp4 or .webm, "
            "or give --fps (one constant rate)"
        )
    return None


def timing_notes(kind: str, durations: Sequence[float]) -> list[str]:
    """What a viewer of a video with these frame durations may not get as meant: GIF frames browsers slow down."""
    shortest = min(durations)
    if kind == "gif" and shortest < GIF_SHORTEST_PLAYED:
        return [
            f"GIF frames as short as {shortest:.3g} s: browsers play frames shorter than {GIF_SHORTEST_PLAYED:g} s "
            "at 0.1 s each; write .mp4 or .webm, or give --fps 50 or less (one constant rate)"
        ]
    return []


def source_durations(frames) -> tuple[float, ...] | None:
    """The ``frame_durations`` of a shot's frames, looked up through the wrappers that pass a source's frames on
    (:class:`lvcd.hints.LineartFrames`, :class:`lvcd.lineart.ExtractedLineart`: their ``source``); None when the
    frames have no timing of their own (folders of images, arrays, still images, a constant rate)."""
    for _ in range(8):  # a few wrappers deep at most; a loop of sources ends here too
        if frames is None:
            return None
        durations = getattr(frames, "frame_durations", None)
        if durations is not None:
            return tuple(durations)
        frames = getattr(frames, "source", None)
    return None


def output_timing(fps: float | None, frames) -> tuple[float, tuple[float, ...] | None]:
    """The output's frame rate and per-frame durations: ``fps`` when given (one constant rate, no durations); else the
    line art's own rate (or :data:`DEFAULT_FPS`) and its frames' own durations when they vary (else None)."""
    if fps is not None:
        return fps, None
    return getattr(frames, "fps", None) or DEFAULT_FPS, source_durations(frames)


class FrameClock:
    """Where each frame starts, in whole ticks of ``time_base``, for frames of ``durations`` seconds.

    Each start is rounded from the exact elapsed time (rounding never accumulates: 1/24 s in 1/100 s gives delays of
    4, 4, 4, 5, ...), and every frame gets at least one tick (a frame shorter than a tick would share its start)."""

    def __init__(self, durations: Sequence[float], time_base: Fraction) -> None:
        self.time_base = time_base
        ticks_per_second = 1 / time_base
        elapsed, previous, self.starts = 0.0, -1, []
        for duration in durations:
            start = max(round(elapsed * ticks_per_second), previous + 1)
            self.starts.append(start)
            elapsed, previous = elapsed + duration, start
        self.end = max(round(elapsed * ticks_per_second), previous + 1)  # where the last frame ends
        ends = [*self.starts[1:], self.end]
        self._durations = {start: end - start for start, end in zip(self.starts, ends, strict=True)}

    def __len__(self) -> int:
        return len(self.starts)

    def duration_at(self, start: int) -> int:
        """The duration in ticks of the frame that starts at ``start`` (0 for no frame's start)."""
        return self._durations.get(start, 0)

    def average_rate(self) -> Fraction:
        """Frames per second over the whole shot: the rate a video states beside its own timestamps."""
        rate = Fraction(len(self.starts) / float(self.end * self.time_base)).limit_denominator(1001)
        return rate or Fraction(1, 1001)  # a shot of frames held for hours is no rate of 0


def output_clock(path: Path, kind: str, durations: Sequence[float], fps: float) -> FrameClock | None:
    """The clock that times the frames of a video written to ``path`` (of ``kind``) for ``durations``: a 90 kHz one,
    or a GIF's 1/100 s. None for AVI, which holds one frame rate (``fps``; said in a warning). Raises InputError for
    durations the output cannot hold."""
    problem = durations_problem(durations, kind)
    if problem is not None:
        raise InputError(f"{path}: {problem}.")
    if path.suffix.lower() == ".avi":
        warnings.warn(
            f"{path}: AVI holds one frame rate, so the frames' own timing (held drawings, a variable frame rate) is "
            f"not kept: written at {fps:g} frames per second; write .mp4, .mkv or .webm to keep it.",
            stacklevel=4,
        )
        return None
    return FrameClock(durations, GIF_TIME_BASE if kind == "gif" else VIDEO_TIME_BASE)


class TimedMuxer:
    """Muxes the encoded packets of frames timed by ``clock`` into ``container``, each with its frame's duration
    (Matroska and WebM keep it).

    MP4 and MOV time a sample by the next one's dts instead, and the video's length by the last one's dts and duration;
    with B-frames, x264 gives frames of varying durations dts a few frames behind their pts, so the length the file
    states would fall short by the last frames' durations (measured: 0.8 s for frames spanning 1.2 s). There the latest
    packet is held back until the next one comes, and :meth:`finish` gives the last one the duration that makes the
    video as long as its frames."""

    def __init__(self, container: av.container.OutputContainer, clock: FrameClock) -> None:
        self.container, self.clock = container, clock
        self.holds_last = container.format.name in ("mp4", "mov")
        self.first_dts: int | None = None
        self.held: av.Packet | None = None

    def mux(self, packet: av.Packet) -> None:
        packet.duration = self.clock.duration_at(packet.pts)
        if not self.holds_last or packet.dts is None:
            self.container.mux(packet)
            return
        if self.first_dts is None:
            self.first_dts = packet.dts
        if self.held is not None:
            self.container.mux(self.held)
        self.held = packet

    def finish(self) -> None:
        """Mux the packet held back, once the encoder is flushed."""
        if self.held is not None:
            self.held.duration = self.clock.end + self.first_dts - self.held.dts
            self.container.mux(self.held)
            self.held = None
