"""Writing frames: H.264 MP4, VP9 WebM, GIF or a folder of PNGs, streamed and atomic.

Frames go to a hidden temporary file/folder next to the target (``.NAME.partial-XXXXXXXX``, an
:class:`lvcd.io.atomic.AtomicOutput`) and are renamed onto the target only by :meth:`FrameWriter.close`. An aborted or killed run therefore never
leaves a partial output at the target, and a pre-existing output stays untouched until the new one is
complete. Nothing is accumulated in memory: every frame is encoded or saved as it arrives.

Codec choices:
- ``.mp4`` (also ``.m4v``, ``.mov``, ``.mkv``, ``.avi``): H.264 (libx264), CRF 18, BT.709 limited range,
  tagged so players decode the colours as written. ``yuv420p`` (plays everywhere) when width and height
  are even. libx264 refuses 4:2:0 at odd sizes, so odd sizes use ``yuv444p`` (High 4:4:4): the exact
  frame size is kept, but some browsers and QuickTime cannot play it; VLC, mpv, FFmpeg and Chrome on
  most platforms can. Use ``.webm`` or a PNG folder for odd sizes where that matters. Frames above 4K UHD
  are encoded without B-frames and with one reference frame, which halves what the encoder holds in memory.
- ``.webm``: VP9 (libvpx-vp9), constant quality (CRF 30), ``yuv420p``; VP9 handles odd sizes itself.
- ``.gif``: FFmpeg's GIF encoder with one palette per frame: a frame of at most 256 colours gets exactly its own
  colours; others Pillow's median cut, no dithering, so flat colours do not flicker between frames. Palettes and
  encoding are made in a worker thread while the caller makes the next frame (in order, so the bytes are the same).
  GIF delays are in 1/100 s, so fps is rounded per frame.
- Given per-frame durations (:meth:`FrameWriter.set_frame_durations`: a GIF's holds, a variable frame rate), MP4, MKV
  and WebM place every frame at its own time on a 90 kHz clock and GIF on its 1/100 s one (:mod:`lvcd.io.timing`);
  AVI holds one rate only, and a folder of PNGs no timing.
- anything else: a folder of ``00000.png, 00001.png, ...`` (or the names given to :meth:`FrameWriter.write`; the
  pipeline gives the line-art files' names).

>>> with open_writer("out.mp4", fps=20) as writer:      # doctest: +SKIP
...     for frame in frames:
...         writer.write(frame)
"""

from __future__ import annotations

import math
import os
import uuid
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from PIL import Image

from lvcd.errors import InputError
from lvcd.io.atomic import AtomicOutput, recover_replaced
from lvcd.io.formats import (  # noqa: F401  (re-exported: callers import them from here)
    _BITEXACT,
    _BT709,
    _H264_CONTAINERS,
    _VP9_OPTIONS,
    FPS_RANGE,
    GIF_MAX_FPS,
    GIF_MIN_FPS,
    LARGE_FRAME_PIXELS,
    OutputKind,
    frame_rate_problem,
    gif_palette_frame,
    h264_options,
    output_kind,
    video_format_notes,
)
from lvcd.io.images import to_rgb_uint8
from lvcd.io.paths import check_not_input
from lvcd.io.pyav import pyav
from lvcd.io.timing import DEFAULT_FPS, FrameClock, TimedMuxer, output_clock, timing_notes

if TYPE_CHECKING:
    from collections.abc import Sequence

    import av


_GIF_AHEAD = 2  # GIF frames handed to the encoding thread and not yet encoded: memory stays bounded


def usable_frame_name(name: str) -> bool:
    """Whether ``name`` can name a PNG frame of an output folder: not empty, not hidden, no folder separator."""
    return bool(name) and not name.startswith(".") and "/" not in name and "\\" not in name


def frame_names_problem(names: list[str]) -> str | None:
    """Why ``names`` cannot name the PNG frames of one output folder (one cannot name a file, or two differ only in
    case: one file on macOS and Windows), or None when they can."""
    seen: dict[str, str] = {}
    for name in names:
        if not usable_frame_name(name):
            return f"the frame name {name!r} cannot name a PNG file"
        other = seen.setdefault(name.casefold(), name)
        if other != name:
            return f"the frame names {other!r} and {name!r} differ only in case (one file on macOS and Windows)"
    return None


_OS_LITTER = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})  # what file browsers drop into any folder


def check_replaceable(target: Path) -> None:
    """Refuse (InputError) to replace a folder holding anything but PNG frames: ``--overwrite`` replaces a shot's
    frames, never a folder of other work that happens to have the output's name."""
    if target.is_symlink() or not target.is_dir():
        return
    others = sorted(
        entry.name + ("/" if entry.is_dir(follow_symlinks=False) else "")
        for entry in os.scandir(target)
        if not (entry.is_file(follow_symlinks=False) and entry.name.lower().endswith(".png"))
        and entry.name not in _OS_LITTER
    )
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise InputError(
            f"{target}: holds more than PNG frames ({shown}); --overwrite (overwrite=True) replaces only a folder of "
            "frames. Move those away, or choose another output."
        )


def open_writer(
    path: str | Path,
    fps: float = DEFAULT_FPS,
    overwrite: bool = False,
    inputs: tuple[Path, ...] | list[Path] | tuple = (),
    durations: Sequence[float] | None = None,
) -> FrameWriter:
    """Open an atomic, streaming writer for ``path`` (format from :func:`output_kind`); ``durations``: each frame's
    own duration in seconds, when they vary (see :meth:`FrameWriter.set_frame_durations`), else one rate, ``fps``.

    An earlier output that a killed ``--overwrite`` left moved aside is first moved back (:func:`recover_replaced`).
    Raises InputError if ``path`` exists and ``overwrite`` is false, if it is a folder holding more than PNG frames
    (:func:`check_replaceable`), if ``path`` is, is inside, or contains one of ``inputs``, or if ``fps`` is no frame
    rate a video holds (:func:`frame_rate_problem`). Missing parent folders are created.
    """
    target = Path(path).expanduser().resolve()
    check_not_input(target, tuple(inputs))
    kind = output_kind(target)
    recover_replaced(target)  # an earlier --overwrite killed after moving the old output aside: it is moved back
    if (target.exists() or target.is_symlink()) and not overwrite:
        raise InputError(
            f"{path}: already exists. Use --overwrite (overwrite=True in Python) to replace it, or choose another name."
        )
    if overwrite:
        check_replaceable(target)
    try:
        fps = float(fps)
    except (TypeError, ValueError):
        fps = math.nan
    problem = frame_rate_problem(fps, kind)
    if problem is not None:
        raise InputError(f"fps {fps!r}: {problem}.")
    writer = _PngFolderWriter(target, overwrite) if kind == "png" else _VideoWriter(target, overwrite, kind, fps)
    if durations is not None:
        try:
            writer.set_frame_durations(durations)
        except BaseException:
            writer.abort()
            raise
    return writer


class FrameWriter:
    """Streams HxWx3 uint8 frames to a temporary output; :meth:`close` renames it onto the target.

    Use as a context manager: leaving the block normally closes (finalizes), an exception aborts.
    """

    def __init__(self, target: Path, overwrite: bool, folder: bool) -> None:
        self.path = target
        self.output = AtomicOutput(target, folder=folder, overwrite=overwrite)
        self.temp_path = self.output.path
        self.frames_written = 0
        self.size_hw: tuple[int, int] | None = None
        self.frame_durations: tuple[float, ...] | None = None  # seconds, one per frame: when the frames are timed
        self._state: Literal["open", "closed", "aborted", "kept"] = "open"

    def set_frame_durations(self, durations: Sequence[float] | None) -> None:
        """Show each frame for its own time (seconds; None: one constant rate), before the first frame is written: a
        GIF's held drawings, a variable frame rate (:attr:`lvcd.io.FrameSource.frame_durations`). A folder of PNGs
        keeps no timing. Raises InputError for durations the output cannot hold."""
        if self.frames_written:
            raise RuntimeError(f"{self.path}: frame durations are set before the first frame is written")
        self.frame_durations = self._keep_timing(None if durations is None else tuple(durations))

    def _keep_timing(self, durations: tuple | None) -> tuple[float, ...] | None:
        """The durations the output keeps (InputError for ones it cannot hold): a folder of PNGs keeps none."""
        return None

    def write(self, frame: np.ndarray, name: str | None = None) -> None:
        """Append one frame (HxWx3 uint8; other image-likes go through ``to_rgb_uint8``).

        ``name``: the file stem for PNG folders (default: the zero-padded index); ignored for videos.
        """
        if self._state != "open":
            raise RuntimeError(f"{self.path}: writer is {self._state}")
        frame = to_rgb_uint8(frame)
        if self.size_hw is None:
            self.size_hw = (int(frame.shape[0]), int(frame.shape[1]))
        elif frame.shape[:2] != self.size_hw:
            raise ValueError(
                f"{self.path}: frame {self.frames_written} has size {frame.shape[:2]}, expected {self.size_hw}"
            )
        self._write(frame, name)
        self.frames_written += 1

    def close(self) -> Path:
        """Finish the file and rename it onto the target atomically; returns the final path."""
        if self._state == "closed":
            return self.path
        if self._state != "open":
            raise RuntimeError(f"{self.path}: writer is {self._state}")
        if self.frames_written == 0:
            self.abort()
            raise ValueError(f"{self.path}: no frames were written; nothing to save")
        try:
            self._finish()
        except BaseException:
            self.abort()
            raise
        self._commit()
        self._state = "closed"
        return self.path

    def abort(self) -> None:
        """Drop the temporary output; any pre-existing output at the target is left untouched."""
        if self._state != "open":
            return
        self._state = "aborted"
        try:
            self._discard()
        finally:
            self.output.discard()

    def _commit(self) -> None:
        try:
            if self.output.overwrite:
                check_replaceable(self.path)  # again: the folder may have been filled while the shot ran
            self.output.commit()
        except (FileExistsError, InputError) as err:
            self._state = "kept"  # never delete the finished result: the user decides what to keep
            kept = self.path.with_name(f"{self.path.stem}.lvcd-{uuid.uuid4().hex[:8]}{self.path.suffix}")
            os.replace(self.temp_path, kept)  # a visible name: no clean-up of temporaries ever takes it
            self.output.discard()
            why = (
                str(err)
                if isinstance(err, InputError)
                else f"{self.path}: appeared while writing and --overwrite (overwrite=True) was not given"
            )
            raise InputError(f"{why.rstrip('.')}; the result is kept at {kept}.") from None

    def __enter__(self) -> FrameWriter:
        return self

    def __exit__(self, exc_type, exc, traceback) -> None:
        if exc_type is not None:
            self.abort()
        else:
            self.close()

    def __del__(self) -> None:  # never leave hidden temporaries behind when a writer is dropped
        if getattr(self, "_state", None) == "open":
            try:
                self.abort()
            except Exception:
                pass

    # Subclass hooks.
    def _write(self, frame: np.ndarray, name: str | None) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        """Flush everything into ``temp_path``."""

    def _discard(self) -> None:
        """Release handles before the temporary output is removed."""


class _PngFolderWriter(FrameWriter):
    def __init__(self, target: Path, overwrite: bool) -> None:
        super().__init__(target, overwrite, folder=True)
        self._names: set[str] = set()

    def _write(self, frame: np.ndarray, name: str | None) -> None:
        name = f"{self.frames_written:05d}" if name is None else str(name)
        # case-folded: two names differing only in case would be one file on macOS and Windows
        if not usable_frame_name(name) or name.casefold() in self._names:
            raise ValueError(f"{self.path}: invalid or repeated frame name {name!r}")
        self._names.add(name.casefold())
        Image.fromarray(frame).save(self.temp_path / f"{name}.png", compress_level=4)


_ENCODERS = {"mp4": "libx264", "webm": "libvpx-vp9", "gif": "gif"}  # the FFmpeg encoder each video kind uses


class _VideoWriter(FrameWriter):
    def __init__(self, target: Path, overwrite: bool, kind: OutputKind, fps: float) -> None:
        av = pyav()  # here, before any frame is computed: a missing PyAV or encoder is said at once
        if _ENCODERS[kind] not in av.codecs_available:
            raise InputError(
                f"{target}: this PyAV's FFmpeg has no {_ENCODERS[kind]} encoder to write it (a build without it); "
                "install PyAV's own wheels (pip install --force-reinstall av) or write PNG frames to a folder."
            )
        super().__init__(target, overwrite, folder=False)
        self.kind = kind
        self.fps = fps
        self.rate = Fraction(fps).limit_denominator(1001)
        self._av = av
        self._container: av.container.OutputContainer | None = None
        self._stream = None
        self._encoder: ThreadPoolExecutor | None = None  # GIF only: makes the palettes and encodes
        self._ahead: deque[Future] = deque()
        self._clock: FrameClock | None = None  # each frame's start, when the frames are timed
        self._timed_muxer: TimedMuxer | None = None

    def _keep_timing(self, durations: tuple | None) -> tuple[float, ...] | None:
        self._clock = None  # first: durations refused (InputError) leave one rate
        self._clock = None if durations is None else output_clock(self.path, self.kind, durations, self.fps)
        return None if self._clock is None else tuple(float(duration) for duration in durations)

    def _open(self, height: int, width: int) -> None:
        clock = self._clock
        notes = video_format_notes(self.kind, self.fps if clock is None else None, height, width)
        notes += timing_notes(self.kind, self.frame_durations) if clock is not None else []
        for note in notes:
            warnings.warn(f"{self.path}: {note}.", stacklevel=2)
        rate = self.rate if clock is None else clock.average_rate()
        if self.kind == "mp4":
            fmt = _H264_CONTAINERS[self.path.suffix.lower()]
            options = {**_BITEXACT, **({"movflags": "faststart"} if fmt in ("mp4", "mov") else {})}
            container = self._av.open(str(self.temp_path), mode="w", format=fmt, options=options)
            stream = container.add_stream("libx264", rate=rate, options=h264_options(height, width))
            stream.pix_fmt = "yuv420p" if height % 2 == 0 and width % 2 == 0 else "yuv444p"
        elif self.kind == "webm":
            container = self._av.open(str(self.temp_path), mode="w", format="webm", options=dict(_BITEXACT))
            stream = container.add_stream("libvpx-vp9", rate=rate, options=dict(_VP9_OPTIONS))
            stream.pix_fmt = "yuv420p"
        else:
            # the muxer times a frame by the next one's start; the last one's delay is given (else it is the one before)
            options = {} if clock is None else {"final_delay": str(clock.end - clock.starts[-1])}
            container = self._av.open(str(self.temp_path), mode="w", format="gif", options=options)
            stream = container.add_stream("gif", rate=rate)
            stream.pix_fmt = "pal8"
        if clock is not None:
            stream.time_base = stream.codec_context.time_base = clock.time_base
            self._timed_muxer = TimedMuxer(container, clock)
        self._container = container
        stream.width, stream.height = width, height
        if self.kind != "gif":
            context = stream.codec_context
            context.colorspace = context.color_primaries = context.color_trc = _BT709
            context.color_range = int(self._av.video.reformatter.ColorRange.MPEG)
        self._stream = stream

    def _to_video_frame(self, frame: np.ndarray, index: int) -> av.VideoFrame:
        if self.kind == "gif":
            video_frame = self._av.VideoFrame.from_ndarray(gif_palette_frame(frame), format="pal8")
        else:
            video_frame = self._av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(
                format=self._stream.pix_fmt,
                dst_colorspace=self._av.video.reformatter.Colorspace.ITU709,
                dst_color_range=self._av.video.reformatter.ColorRange.MPEG,
            )
        if self._clock is None:
            video_frame.pts, video_frame.time_base = index, 1 / self.rate
        else:
            video_frame.pts, video_frame.time_base = self._clock.starts[index], self._clock.time_base
        return video_frame

    def _encode(self, frame: np.ndarray | None, index: int = 0) -> None:
        """Encode one frame (None: flush the encoder) and mux what comes out."""
        for packet in self._stream.encode(None if frame is None else self._to_video_frame(frame, index)):
            (self._timed_muxer or self._container).mux(packet)

    def _write(self, frame: np.ndarray, name: str | None) -> None:
        if self._clock is not None and self.frames_written >= len(self._clock):
            raise ValueError(f"{self.path}: frame {self.frames_written} has no duration ({len(self._clock)} given)")
        if self._container is None:
            try:
                self._open(*frame.shape[:2])
            except BaseException:
                self._discard()
                raise
        if self.kind != "gif":
            self._encode(frame, self.frames_written)
            return
        # A GIF frame's palette costs up to a second (median cut of a noisy frame): made in one worker thread, in
        # order, while the caller makes the next frame. The copy: a caller may reuse its frame buffer.
        if self._encoder is None:
            self._encoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lvcd-gif")
        while len(self._ahead) >= _GIF_AHEAD:
            self._ahead.popleft().result()  # an earlier frame's error is raised here
        self._ahead.append(self._encoder.submit(self._encode, np.array(frame), self.frames_written))

    def _wait_for_encoder(self, cancel: bool) -> None:
        """Let the encoding thread finish its frames; ``cancel``: drop those not started and ignore errors."""
        try:
            while self._ahead:
                future = self._ahead.popleft()
                if cancel:
                    if not future.cancel():
                        future.exception()  # waits for it; the error goes with the discarded output
                else:
                    future.result()
        finally:
            if self._encoder is not None:
                for future in self._ahead:  # after an error: the frames behind it are not encoded
                    future.cancel()
                self._ahead.clear()
                self._encoder.shutdown(wait=True)
                self._encoder = None

    def _finish(self) -> None:
        self._wait_for_encoder(cancel=False)
        self._encode(None)
        if self._timed_muxer is not None:
            self._timed_muxer.finish()
        self._container.close()
        self._container = None

    def _discard(self) -> None:
        self._wait_for_encoder(cancel=True)
        if self._container is not None:
            try:
                self._container.close()
            except Exception:
                pass
            self._container = None
