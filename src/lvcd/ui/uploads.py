"""The page's uploads as pipeline inputs: checked up front, in natural order of the user's file names.

The page receives server-side copies of the user's files (gradio keeps each in its own folder under the user's file
name). Nothing here needs gradio. Every problem raises :class:`lvcd.errors.InputError` whose message starts with the
page field and names the user's file, never the server's copy; :func:`user_message` scrubs any server path that a
library message still carries.

>>> lineart = read_lineart(["/srv/up/1/f10.png", "/srv/up/2/f2.png"])   # doctest: +SKIP
>>> [upload.name for upload in lineart.uploads]                         # doctest: +SKIP
['f2.png', 'f10.png']
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from lvcd.errors import InputError
from lvcd.io import IMAGE_SUFFIXES, VIDEO_SUFFIXES, FrameSource, load_image, natural_key

REFERENCE_FIELD = "Coloured reference"
LINEART_FIELD = "Line art"
MOVING_SUFFIXES = VIDEO_SUFFIXES | {".gif"}
_READABLE = "PNG, JPEG, WebP, BMP or TIFF"
_PIL_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError)
_EXIF_ORIENTATION = 0x0112


@dataclass(frozen=True)
class Upload:
    """One uploaded file: ``path`` is the server's copy, ``name`` the user's file name (what messages show)."""

    path: Path
    name: str

    @classmethod
    def of(cls, file: str | os.PathLike) -> Upload:
        path = Path(file)
        return cls(path, getattr(file, "orig_name", None) or path.name)


class UploadedImages:
    """Line-art frames uploaded as image files: sized, counted and re-iterable, one frame in memory at a time."""

    path = None  # no file on disk stands for the whole shot
    fps = None

    def __init__(self, uploads: Sequence[Upload], size_hw: tuple[int, int]):
        self.uploads = list(uploads)
        self.size_hw = size_hw

    def __len__(self) -> int:
        return len(self.uploads)

    def __iter__(self) -> Iterator[np.ndarray]:
        for upload in self.uploads:
            frame = load_image(upload.path)
            if frame.shape[:2] != self.size_hw:  # the header check passed, so only a lying header gets here
                raise _size_mismatch(upload, frame.shape[:2], self.uploads[0], self.size_hw)
            yield frame


@dataclass
class LineartUpload:
    """The line art as the pipeline reads it, with what the page shows about it."""

    frames: UploadedImages | FrameSource
    uploads: list[Upload]  # frame order for images; the one video/GIF otherwise
    size_hw: tuple[int, int]
    fps: float | None  # the rate of an uploaded video or GIF
    shot_name: str

    @property
    def is_video(self) -> bool:
        return isinstance(self.frames, FrameSource)


def image_size_hw(upload: Upload, field: str, max_side: int, max_pixels: int | None = None) -> tuple[int, int]:
    """Height and width of an uploaded image from its header (EXIF orientation applied), checked against limits
    (``max_pixels``: a frame's pixels, None for no limit)."""
    try:
        with Image.open(upload.path) as image:
            width, height = image.size
            try:
                orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
            except Exception:  # a broken EXIF block does not make the picture unusable
                orientation = 1
    except Image.DecompressionBombError:
        raise InputError(
            f"{field}: {upload.name} has too many pixels to open safely; downscale it to at most {max_side} pixels "
            "a side and upload it again."
        ) from None
    except _PIL_ERRORS:
        raise InputError(
            f"{field}: {upload.name} is not an image this page can read. Upload a {_READABLE} picture."
        ) from None
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    if max(width, height) > max_side:
        raise InputError(
            f"{field}: {upload.name} is {width}x{height} pixels; this page accepts at most {max_side} pixels a side. "
            "Downscale it and upload it again."
        )
    check_pixels(upload, field, (height, width), max_pixels)
    try:  # read through (a PNG's chunks and their checksums) without decoding: a truncated file is found now
        with Image.open(upload.path) as image:
            image.verify()
    except _PIL_ERRORS:
        raise InputError(
            f"{field}: {upload.name} is damaged (cut short or corrupt); export it again and upload it again."
        ) from None
    return height, width


def check_pixels(upload: Upload, field: str, size_hw: tuple[int, int], max_pixels: int | None) -> None:
    """Refuse a picture or video frame above ``max_pixels`` pixels (None: no limit): its memory grows with them."""
    height, width = size_hw
    if max_pixels is not None and height * width > max_pixels:
        raise InputError(
            f"{field}: {upload.name} is {width}x{height} pixels ({height * width / 1e6:.1f} megapixels); this page "
            f"accepts at most {max_pixels / 1e6:.1f} megapixels a picture. Downscale it and upload it again, or "
            "colorize it with the command line (lvcd colorize)."
        )


def check_frame_count(count: int, max_frames: int | None) -> None:
    """Refuse more line-art frames than ``max_frames`` (None: no limit)."""
    if max_frames is not None and count > max_frames:
        raise InputError(
            f"{LINEART_FIELD}: {count} frames are more than this page takes in one shot ({max_frames}); colorize the "
            f"shot in parts of at most {max_frames} frames, or with the command line (lvcd colorize)."
        )


def check_reference(file: str | os.PathLike | None, max_side: int, max_pixels: int | None = None) -> Upload:
    """The coloured reference upload, checked (a readable image within the size limit)."""
    if not file:
        raise InputError(f"{REFERENCE_FIELD}: upload the coloured version of frame 0 of the shot.")
    upload = Upload.of(file)
    if upload.path.suffix.lower() in MOVING_SUFFIXES:
        raise InputError(f"{REFERENCE_FIELD}: {upload.name} is a video; upload one coloured picture ({_READABLE}).")
    image_size_hw(upload, REFERENCE_FIELD, max_side, max_pixels)
    return upload


def read_lineart(
    files: Sequence[str | os.PathLike] | None,
    max_side: int,
    max_pixels: int | None = None,
    max_frames: int | None = None,
) -> LineartUpload:
    """Uploaded line art -> frames in natural order of the file names (a video or GIF: its frames), all checked
    (``max_pixels`` a frame and ``max_frames`` frames: None for no limit).

    Every uploaded image is a frame, hidden names (``.f3.png``) included; two files of the same name are an error,
    since their order would be a guess.
    """
    uploads = [Upload.of(file) for file in files or []]
    if not uploads:
        raise InputError(f"{LINEART_FIELD}: upload the drawings of every frame (images), or one video or GIF.")
    moving = [upload for upload in uploads if upload.path.suffix.lower() in MOVING_SUFFIXES]
    if moving:
        if len(uploads) > 1:
            raise InputError(
                f"{LINEART_FIELD}: upload either one video/GIF or a set of images, not both "
                f"({moving[0].name} came with {len(uploads) - 1} other file(s))."
            )
        return _read_moving(moving[0], max_side, max_pixels, max_frames)
    unknown = [upload.name for upload in uploads if upload.path.suffix.lower() not in IMAGE_SUFFIXES]
    if unknown:
        raise InputError(
            f"{LINEART_FIELD}: {', '.join(unknown[:3])}{' ...' if len(unknown) > 3 else ''} is not an image or a video "
            f"(images: {', '.join(sorted(IMAGE_SUFFIXES))}; videos: {', '.join(sorted(MOVING_SUFFIXES))})."
        )
    check_frame_count(len(uploads), max_frames)  # before reading each file's header
    seen: dict[str, Upload] = {}
    for upload in uploads:
        if upload.name in seen:
            raise InputError(
                f"{LINEART_FIELD}: two uploaded files are named {upload.name}; the frame order comes from the names, "
                "so give each frame its own name and upload them again."
            )
        seen[upload.name] = upload
    ordered = sorted(uploads, key=lambda upload: natural_key(upload.name))
    size_hw = image_size_hw(ordered[0], LINEART_FIELD, max_side, max_pixels)
    for upload in ordered[1:]:
        other_hw = image_size_hw(upload, LINEART_FIELD, max_side, max_pixels)
        if other_hw != size_hw:
            raise _size_mismatch(upload, other_hw, ordered[0], size_hw)
    return LineartUpload(UploadedImages(ordered, size_hw), ordered, size_hw, None, shot_name(ordered))


def _read_moving(upload: Upload, max_side: int, max_pixels: int | None, max_frames: int | None) -> LineartUpload:
    try:
        source = FrameSource.open(upload.path)
        height, width = source.size_hw
        if max(height, width) > max_side:
            raise InputError(
                f"{upload.name} is {width}x{height} pixels; this page accepts at most {max_side} pixels a side. "
                "Downscale it and upload it again."
            )
    except InputError as err:
        raise InputError(f"{LINEART_FIELD}: {user_message(err, [upload])}") from None
    check_pixels(upload, LINEART_FIELD, (height, width), max_pixels)  # before decoding the whole stream
    try:
        source.check_uniform_size()  # decodes the stream once (counts the frames, finds a resolution change)
        len(source)
    except InputError as err:
        raise InputError(f"{LINEART_FIELD}: {user_message(err, [upload])}") from None
    check_frame_count(len(source), max_frames)
    return LineartUpload(source, [upload], (height, width), source.fps, shot_name([upload]))


def _size_mismatch(upload: Upload, size_hw, first: Upload, first_hw) -> InputError:
    return InputError(
        f"{LINEART_FIELD}: {upload.name} is {size_hw[1]}x{size_hw[0]} pixels but {first.name} is "
        f"{first_hw[1]}x{first_hw[0]}; all frames of a shot must have one size."
    )


def shot_name(uploads: Sequence[Upload]) -> str:
    """A file-name-safe name for the shot: a video's name, or what the frame names share (``walk_0001.png``,
    ``walk_0002.png`` -> ``walk``); ``shot`` when they share nothing."""
    stems = [Path(upload.name).stem.lstrip(".") for upload in uploads]  # a hidden file's dot is not the shot's
    common = os.path.commonprefix(stems) if len(stems) > 1 else stems[0]
    if len(stems) > 1:
        common = re.sub(r"\d+$", "", common)
    common = re.sub(r"[^\w.-]+", "_", common).strip("._- ")
    return common[:80] or "shot"


# Library messages are written for the command line; the page shows them with its own field names.
_FLAG_FIELDS = {
    "--size": "Processing size",
    "--fps": "Frames per second",
    "--seed": "Seed",
    "--steps": "Steps",
    "--sampler": "Sampler",
    "--polarity": "Line polarity",
    "--reference": REFERENCE_FIELD,
    "--lineart": LINEART_FIELD,
}
_OTHER_FLAG = re.compile(r"(?<![\w-])--([a-z][a-z0-9-]*)")


def user_message(err: BaseException, uploads: Iterable[Upload] = (), private_dirs: Iterable[str | Path] = ()) -> str:
    """The error's message for the page: uploaded files by the user's names, no server path, no CLI flag."""
    text = str(err) or type(err).__name__
    for upload in uploads:
        for form in {str(upload.path), str(upload.path.resolve())}:
            text = text.replace(form, upload.name)
    roots = {str(Path(d)) for d in private_dirs} | {tempfile.gettempdir(), str(Path(tempfile.gettempdir()).resolve())}
    for root in sorted(roots, key=len, reverse=True):
        text = re.sub(re.escape(root) + r"[/\\][^\s'\"(),;:]*", lambda match: Path(match.group()).name, text)
    for flag, field in _FLAG_FIELDS.items():
        text = re.sub(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", field, text)
    return _OTHER_FLAG.sub(lambda match: f"the {match.group(1).replace('-', ' ')} setting", text)
