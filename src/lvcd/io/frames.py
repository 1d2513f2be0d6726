"""Reading frames: folders of images, videos (PyAV), animated GIF/WebP/APNG and single images.

Every source yields ``HxWx3 uint8 RGB`` arrays one frame at a time, so a shot of any length is never
held in memory. User-facing problems (missing path, unknown type, unreadable file, zero frames) raise
:class:`lvcd.errors.InputError` naming the file; inputs are only ever opened for reading.

>>> source = FrameSource.open("shot/lineart")           # doctest: +SKIP
>>> source.check_uniform_size()                          # doctest: +SKIP
>>> for name, frame in zip(source.names, source): ...    # doctest: +SKIP
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import av

from lvcd.errors import InputError
from lvcd.io.images import (
    _PIL_ERRORS,
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    _composite_over_white,
    _open_pil,
    _oriented_size_hw,
    _pil_to_rgb,
    list_image_files,
    load_image,
    natural_key,
    number_chunks,
    to_rgb_uint8,
)
from lvcd.io.pyav import av_errors, pyav
from lvcd.io.timing import animation_durations, durations_from_timestamps

__all__ = [
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "FrameSource",
    "list_image_files",
    "load_image",
    "natural_key",
    "to_rgb_uint8",
]

_SUPPORTED = (
    "a folder of images, an image/animated GIF ("
    + ", ".join(sorted(IMAGE_SUFFIXES | {".gif"}))
    + ") or a video ("
    + ", ".join(sorted(VIDEO_SUFFIXES))
    + ")"
)


def _index_names(count: int) -> list[str]:
    """Zero-padded frame indices, at least 5 digits: ``00000, 00001, ...``."""
    width = max(5, len(str(max(count - 1, 0))))
    return [f"{index:0{width}d}" for index in range(count)]


class FrameSource(ABC):
    """A sequence of frames of one shot. Use :meth:`FrameSource.open`; iterate for ``HxWx3 uint8 RGB``.

    Attributes: ``path``; ``names`` (file stems for folders, zero-padded indices otherwise);
    ``size_hw`` (size of the first frame); ``fps`` (for videos and animations, when known); ``frame_durations``
    (seconds, one per frame, for videos and animations whose frames are not all shown for the same time: a GIF
    holding a drawing, a variable frame rate; None otherwise; see :mod:`lvcd.io.timing`).
    Iterating raises InputError if a frame's size differs from ``size_hw``: a shot has one size.
    """

    path: Path
    fps: float | None = None

    @property
    def frame_durations(self) -> tuple[float, ...] | None:
        """How long each frame is shown (seconds) when that varies from frame to frame, else None."""
        return None

    @classmethod
    def open(cls, path: str | Path) -> FrameSource:
        """Open a folder of images, a video file, an animated image, or a single image.

        Raises InputError for a missing path, an unknown file type, zero frames, or an undecodable file.
        """
        path = Path(path)
        if not path.exists():
            raise InputError(f"{path}: not found. Give {_SUPPORTED}.")
        if path.is_dir():
            return _FolderSource(path)
        suffix = path.suffix.lower()
        if suffix in VIDEO_SUFFIXES:
            return _VideoSource(path)
        if suffix in IMAGE_SUFFIXES or suffix == ".gif":
            return _PillowSequenceSource(path)
        raise InputError(f"{path}: unknown file type {suffix or '(no suffix)'!r}. Give {_SUPPORTED}.")

    @property
    @abstractmethod
    def names(self) -> list[str]: ...

    @property
    @abstractmethod
    def size_hw(self) -> tuple[int, int]: ...

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def __iter__(self) -> Iterator[np.ndarray]: ...

    @abstractmethod
    def check_uniform_size(self) -> None:
        """Raise InputError naming the first frame whose size differs from the first frame's."""

    def check_intact(self) -> None:  # noqa: B027 - optional: only folders of images have files to read through
        """Raise InputError naming a frame file that is damaged (folders of images; a video's frame count is checked
        when it is counted)."""

    def _check_frame_size(self, frame: np.ndarray, what: str) -> np.ndarray:
        self._check_size_hw(frame.shape[:2], what)
        return frame

    def _check_size_hw(self, size_hw: tuple[int, ...], what: str) -> None:
        if tuple(size_hw) != self.size_hw:
            height, width = size_hw
            raise InputError(
                f"{what}: size {width}x{height} differs from the first frame's {self.size_hw[1]}x{self.size_hw[0]} "
                "(width x height). All frames of a shot must have the same size; resize or remove it."
            )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


class _FolderSource(FrameSource):
    """Image files directly inside a folder, in natural order; names are the file stems."""

    def __init__(self, folder: Path) -> None:
        self.path = folder
        self.files = list_image_files(folder)
        # a stem's text and its numbers by value: frame_10 and frame_010 are one frame (names differing in case stay
        # two frames, as on a case-sensitive disk; their output frames are numbered, see LineartFrames.names)
        numbers: dict[tuple, Path] = {}
        for file in self.files:
            number = number_chunks(file.stem)
            if number in numbers:
                same = numbers[number]
                if same.stem == file.stem:
                    how = f"share the name {file.stem!r}"
                else:
                    how = "are the same frame number (the names differ only in zeros before a number)"
                raise InputError(f"{folder}: {same.name} and {file.name} {how}. Keep one file per frame.")
            numbers[number] = file
        self._names = [file.stem for file in self.files]

    @property
    def names(self) -> list[str]:
        return list(self._names)

    @cached_property
    def size_hw(self) -> tuple[int, int]:
        return self._header_size_hw(self.files[0])

    def __len__(self) -> int:
        return len(self.files)

    def __iter__(self) -> Iterator[np.ndarray]:
        for file in self.files:
            yield self._check_frame_size(load_image(file), str(file))

    @staticmethod
    def _header_size_hw(file: Path) -> tuple[int, int]:
        image = _open_pil(file)
        with image:
            return _oriented_size_hw(image)

    def check_uniform_size(self) -> None:
        """Reads only the file headers (and EXIF orientation), not the pixels."""
        for file in self.files[1:]:
            self._check_size_hw(self._header_size_hw(file), str(file))

    def check_intact(self) -> None:
        """Every file read through without decoding its pixels (Pillow's ``verify``: a PNG's chunks and their CRCs),
        so a truncated or damaged frame is found before long work, not when its turn comes."""
        for file in self.files:
            try:
                with _open_pil(file) as image:
                    image.verify()
            except _PIL_ERRORS as err:
                raise InputError(
                    f"{file}: the image data is damaged ({type(err).__name__}: {err}); export the frame again."
                ) from None


class _PillowSequenceSource(FrameSource):
    """A still image (1 frame) or an animated GIF / WebP / APNG / multi-page TIFF, decoded by Pillow."""

    def __init__(self, path: Path) -> None:
        self.path = path
        image = _open_pil(path)
        with image:
            try:
                self._count = int(getattr(image, "n_frames", 1))
                if self._count > 1:
                    self._size_hw = (image.height, image.width)
                    image.load()  # WebP reports a frame's duration only once it is loaded
                    duration_ms = image.info.get("duration") or 0
                    self.fps = 1000.0 / duration_ms if duration_ms > 0 else None
                else:
                    self._size_hw = _oriented_size_hw(image)
            except _PIL_ERRORS as err:
                raise InputError(f"{path}: the image data cannot be decoded ({err}). Re-export the file.") from err
        if self._count < 1:
            raise InputError(f"{path}: holds no frames.")

    @property
    def names(self) -> list[str]:
        return _index_names(self._count)

    @property
    def size_hw(self) -> tuple[int, int]:
        return self._size_hw

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._count == 1:
            yield self._check_frame_size(load_image(self.path), str(self.path))
            return
        image = _open_pil(self.path)
        with image:
            for index in range(self._count):
                try:
                    image.seek(index)
                    frame = _pil_to_rgb(image)
                except _PIL_ERRORS as err:
                    raise InputError(
                        f"{self.path}: frame {index} cannot be decoded ({err}). Re-export the file."
                    ) from err
                yield self._check_frame_size(frame, f"{self.path} frame {index}")

    @cached_property
    def frame_durations(self) -> tuple[float, ...] | None:
        """Read once, when first asked for (:func:`lvcd.io.timing.animation_durations`)."""
        if self._count < 2:
            return None
        image = _open_pil(self.path)
        with image:
            try:
                return animation_durations(image, self._count)
            except _PIL_ERRORS as err:
                raise InputError(f"{self.path}: a frame cannot be decoded ({err}). Re-export the file.") from err

    def check_uniform_size(self) -> None:
        """Pillow renders every frame of an animation (GIF, WebP, APNG) onto one canvas; a multi-page TIFF's pages
        each have their own size, read here from their headers (seeking decodes no pixels)."""
        if self._count == 1:
            return
        image = _open_pil(self.path)
        with image:
            if image.format != "TIFF":
                return
            for index in range(1, self._count):
                try:
                    image.seek(index)
                except _PIL_ERRORS as err:
                    raise InputError(f"{self.path}: page {index} cannot be read ({err}). Re-export the file.") from err
                self._check_size_hw((image.height, image.width), f"{self.path} page {index}")


class _VideoSource(FrameSource):
    """A video file decoded with PyAV (FFmpeg). The frame count is counted by decoding, once, on demand,
    because container headers are often missing or wrong (WebM stores none; edited MP4s lie)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._count: int | None = None
        self._declared = 0  # the frame count the container's header states (0: none stated)
        self._declared_seconds: float | None = None  # the video stream's duration as the file states it, if it does
        self._decoded_seconds: float | None = None  # the time the frames of the last full decoding pass reach
        self._durations: tuple[float, ...] | None = None  # set by a full decoding pass (see frame_durations)
        self._timed = False  # whether a full decoding pass has set _durations
        frames = self._decode(convert=True)
        try:
            first = next(frames, None)
        finally:
            frames.close()  # closes the container now, not at garbage collection
        if first is None:
            raise InputError(f"{path}: the video holds no decodable frames.")
        self._size_hw = (int(first.shape[0]), int(first.shape[1]))

    def _open_container(self) -> tuple[av.container.InputContainer, av.video.stream.VideoStream]:
        try:
            container = pyav().open(str(self.path), mode="r")
        except av_errors() as err:
            raise InputError(
                f"{self.path}: cannot be opened as a video ({err}). Re-encode it, e.g. to H.264 MP4."
            ) from err
        if not container.streams.video:
            container.close()
            raise InputError(f"{self.path}: the file has no video stream.")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        self._declared = int(stream.frames or 0)
        self._declared_seconds = _declared_seconds(container, stream)
        if self.fps is None:
            rate = stream.average_rate or stream.guessed_rate
            self.fps = float(rate) if rate else None
        return container, stream

    def _decode(self, convert: bool) -> Iterator[np.ndarray]:
        """Decoded frames as RGB arrays, or (``convert=False``, much cheaper) as empty (H, W, 0) arrays
        carrying only the displayed size."""
        container, stream = self._open_container()
        index = -1
        first_time = end_time = None  # seconds: the first frame's start, the latest frame's end
        timestamps: list[int | None] = []  # each frame's pts, in display order
        last_end, time_base = None, stream.time_base  # where the last frame ends (pts) by its own duration
        try:
            for index, frame in enumerate(container.decode(stream)):  # noqa: B007
                timestamps.append(frame.pts)
                own = getattr(frame, "duration", None)
                last_end = frame.pts + own if own and frame.pts is not None else None
                if frame.time is not None:
                    first_time = frame.time if first_time is None else min(first_time, frame.time)
                    end_time = max(end_time or 0.0, frame.time + self._frame_seconds(frame))
                if convert:
                    yield _video_frame_to_rgb(frame)
                else:
                    turned = _quarter_turns(frame) % 2
                    yield np.empty(
                        (frame.width, frame.height, 0) if turned else (frame.height, frame.width, 0), np.uint8
                    )
        except av_errors() as err:
            raise InputError(
                f"{self.path}: decoding failed at frame {index + 1} ({err}). The file may be truncated; re-encode it."
            ) from err
        finally:
            container.close()
        # set once the pass is whole: the time the frames span, or the last one's end where the stated duration
        # counts from 0 while the frames start later (a cut that kept its timestamps; video after audio)
        self._decoded_seconds = None if first_time is None else max(end_time - first_time, end_time)
        # where the last frame ends: at the duration the file states (an MP4's sample durations follow the decoding
        # order, so a frame's own can be another frame's), else by its own duration
        stated_end = round(self._declared_seconds / time_base) if self._declared_seconds and time_base else None
        self._durations = durations_from_timestamps(timestamps, time_base, (stated_end, last_end))
        self._timed = True

    @property
    def frame_durations(self) -> tuple[float, ...] | None:
        """From the frames' timestamps (a variable frame rate); the first call decodes the stream once, without colour
        conversion, unless a full pass (counting the frames, checking their sizes) has already run."""
        if not self._timed:
            self._count = self._checked_count(sum(1 for _ in self._decode(convert=False)))
        return self._durations

    def _frame_seconds(self, frame: av.VideoFrame) -> float:
        """How long a decoded frame is shown: its own duration where the stream has one, else one frame at fps."""
        duration, time_base = getattr(frame, "duration", None), frame.time_base
        if duration and time_base:
            return float(duration * time_base)
        return 1.0 / self.fps if self.fps else 0.0

    @property
    def names(self) -> list[str]:
        return _index_names(len(self))

    @property
    def size_hw(self) -> tuple[int, int]:
        return self._size_hw

    def __len__(self) -> int:
        if self._count is None:
            self._count = self._checked_count(sum(1 for _ in self._decode(convert=False)))
        return self._count

    def _checked_count(self, decoded: int) -> int:
        """Threaded FFmpeg decoding ends a truncated file quietly: fewer frames than the header states is an error.

        Matroska / WebM state no frame count, only a duration: there the frames must span it, roughly. Refused only
        when clearly short both in frames (expected at the stream's frame rate) and in the time the decoded frames
        span (their timestamps), so a variable frame rate, whose average rate may be far off, still passes."""
        if decoded < self._declared:
            raise InputError(
                f"{self.path}: the container declares {self._declared} frames but only {decoded} decode; the file is "
                "truncated or damaged. Copy or export it again (or re-encode it, e.g. to H.264 MP4)."
            )
        seconds, spanned, rate = self._declared_seconds, self._decoded_seconds, self.fps
        if self._declared or not seconds or spanned is None or not rate:
            return decoded
        expected = round(seconds * rate)
        if decoded < 0.9 * expected and seconds - spanned > max(0.1 * seconds, 2.0 / rate):
            raise InputError(
                f"{self.path}: the file states a duration of {seconds:.3g} s ({expected} frames expected at "
                f"{rate:.4g} fps) but only {decoded} frames ({spanned:.3g} s) decode; the file is truncated or "
                "damaged; export it again (or re-encode it, e.g. to H.264 MP4)."
            )
        return decoded

    def check_uniform_size(self) -> None:
        """Decodes the stream without colour conversion: a resolution change mid-stream is reported."""
        count = 0
        for count, frame in enumerate(self._decode(convert=False), start=1):
            self._check_frame_size(frame, f"{self.path} frame {count - 1}")
        self._count = self._checked_count(count)

    def __iter__(self) -> Iterator[np.ndarray]:
        count = 0
        for count, frame in enumerate(self._decode(convert=True), start=1):
            yield self._check_frame_size(frame, f"{self.path} frame {count - 1}")
        self._checked_count(count)


def _declared_seconds(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float | None:
    """The video stream's duration as the file states it: the stream's own; Matroska's per-track ``DURATION`` tag
    (FFmpeg and mkvmerge write it); the whole file's only where the video is its one stream (an audio track may run
    longer). None when the file states none."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tags = {str(key).upper(): value for key, value in (stream.metadata or {}).items()}
    hours, _, rest = str(tags.get("DURATION", "")).partition(":")
    minutes, _, secs = rest.partition(":")
    try:
        return int(hours) * 3600 + int(minutes) * 60 + float(secs)
    except ValueError:
        pass
    if container.duration and len(container.streams) == 1:
        return container.duration / 1_000_000  # in AV_TIME_BASE units
    return None


def _video_frame_to_rgb(frame: av.VideoFrame) -> np.ndarray:
    """Decoded frame -> HxWx3 uint8 RGB, honouring the colour matrix, full/limited range, alpha and rotation."""
    options: dict = {}
    # Untagged YUV: do what players do (BT.709 from 720 lines up, BT.601 below). 2 = AVCOL_SPC_UNSPECIFIED.
    if frame.colorspace == 2 and frame.height >= 720 and not frame.format.is_rgb:
        options["src_colorspace"] = pyav().video.reformatter.Colorspace.ITU709
    if any(component.is_alpha for component in frame.format.components):
        rgb = _composite_over_white(frame.to_ndarray(format="rgba", **options))
    else:
        rgb = frame.to_ndarray(format="rgb24", **options)
    quarter_turns = _quarter_turns(frame)
    if quarter_turns:
        rgb = np.rot90(rgb, k=quarter_turns)
    return np.ascontiguousarray(rgb)


def _quarter_turns(frame: av.VideoFrame) -> int:
    """Display matrix (phone videos): counter-clockwise quarter turns, the direction of np.rot90's k > 0."""
    return int(round((frame.rotation or 0) / 90.0)) % 4
