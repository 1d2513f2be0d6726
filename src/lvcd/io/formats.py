"""Output formats: which format a path asks for, what frame rates each holds, the encoders' options (bit-exact: the
same frames give the same file), what a viewer may not get as meant, and a GIF frame's own palette.
:mod:`lvcd.io.writers` writes them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from lvcd.errors import InputError
from lvcd.io.images import IMAGE_SUFFIXES

OutputKind = Literal["mp4", "webm", "gif", "png"]
_H264_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi"}
# One encoder thread and bit-exact muxing (no random track/segment ids, no dates, no version strings): the same
# frames give the same file, byte for byte, on every run (a fixed seed reproduces the output file itself).
# mbtree=0: x264's macroblock-tree rate control reads memory it never initialised on some content (flat colours, as
# cel animation has): the same frames encoded twice in one process or in two gave different files. Without it the
# encoding is a function of the frames alone (tests/io/test_io_writers.py encodes under different heap contents).
_H264_OPTIONS = {"crf": "18", "preset": "medium", "threads": "1", "x264-params": "mbtree=0"}
# x264 holds about ten frames of its own (B-frames, 3 references, look-ahead), some 50 bytes per pixel of a frame:
# 1.7 GB at 8192x4096. Frames above 4K UHD are encoded without B-frames and with one reference (about 26 bytes per
# pixel, 0.9 GB at 8192x4096; files somewhat larger). Measured: rc-lookahead=0 saved nothing with these options.
# Smaller frames keep the options above (and their files, byte for byte).
LARGE_FRAME_PIXELS = 3840 * 2160
_H264_LARGE_FRAME_PARAMS = "bframes=0:ref=1"
_VP9_OPTIONS = {"crf": "30", "b": "0", "deadline": "good", "cpu-used": "4", "threads": "1"}
_BITEXACT = {"fflags": "+bitexact"}
_BT709 = 1  # AVCOL_SPC_BT709 = AVCOL_PRI_BT709 = AVCOL_TRC_BT709


FPS_RANGE = (0.001, 1000.0)  # a video's time base is a fraction with a denominator of at most 1001
GIF_MAX_FPS = 50  # GIF delays are whole 1/100 s; browsers play delays under 0.02 s as 0.1 s
GIF_MIN_FPS = 0.002  # a GIF delay is 16 bits of 1/100 s: at most 655.35 s a frame (longer ones wrap around)


def frame_rate_problem(fps: float, kind: OutputKind | None = None) -> str | None:
    """Why ``fps`` cannot be the frame rate of a video (of ``kind``, when given), or None when it can."""
    low, high = FPS_RANGE
    if not (math.isfinite(fps) and low <= fps <= high):
        return f"a frame rate must be a number of frames per second from {low:g} to {high:g}, e.g. 24"
    if kind == "gif" and fps < GIF_MIN_FPS:
        return f"a GIF frame lasts at most 655.35 s: give {GIF_MIN_FPS:g} frames per second or more"
    return None


def video_format_notes(kind: OutputKind, fps: float | None, height: int, width: int) -> list[str]:
    """What a viewer of this video may not get as meant: a GIF faster than browsers play, an odd-sized H.264 (4:4:4,
    which QuickTime, Safari and many editors do not play). ``fps`` None: frames timed one by one
    (:func:`lvcd.io.timing.timing_notes`)."""
    notes = []
    if kind == "gif" and fps is not None and fps > GIF_MAX_FPS:
        notes.append(
            f"a GIF at {fps:g} frames per second: browsers play frames shorter than 0.02 s at 0.1 s each (a slow "
            f"shot); write .mp4 or .webm, or give --fps {GIF_MAX_FPS} or less"
        )
    if kind == "mp4" and (height % 2 or width % 2):
        notes.append(
            f"{width}x{height} frames have an odd side, so H.264 is written in 4:4:4 (High 4:4:4), which QuickTime, "
            "Safari and many editors cannot play; write .webm or PNG frames, or give line art of even size"
        )
    return notes


def output_kind(path: str | Path) -> OutputKind:
    """The output format chosen by the path's suffix; a path without a video suffix is a PNG folder.

    A single-image suffix (``out.png``) is refused: a folder named like an image would only confuse.
    """
    suffix = Path(path).suffix.lower()
    if suffix in _H264_CONTAINERS:
        return "mp4"
    if suffix in (".webm", ".gif"):
        return suffix[1:]  # type: ignore[return-value]
    if suffix in IMAGE_SUFFIXES:
        raise InputError(
            f"{path}: the output is a shot, not one image. Give a folder name for PNG frames "
            f"(e.g. {Path(path).with_suffix('')}), or a .mp4, .webm or .gif file."
        )
    return "png"


def h264_options(height: int, width: int) -> dict[str, str]:
    """libx264 options for frames of ``height`` x ``width``: frames above 4K UHD (:data:`LARGE_FRAME_PIXELS`) get
    settings that keep fewer frames in the encoder's memory."""
    options = dict(_H264_OPTIONS)
    if height * width > LARGE_FRAME_PIXELS:
        options["x264-params"] += ":" + _H264_LARGE_FRAME_PARAMS
    return options


def _packed_rgb(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB -> (...) uint32 ``0xRRGGBB``: one number per colour, ordered as the (r, g, b) tuples."""
    rgb = rgb.astype(np.uint32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def gif_palette_frame(frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One HxWx3 uint8 RGB frame as (HxW uint8 palette indices, 256x4 uint8 ARGB palette) for FFmpeg's ``pal8``.

    A frame of at most 256 colours (flat cel colours) gets exactly its colours, sorted: the pixels median cut gives
    such a frame, in a fraction of its time, and equal frames get equal palettes. Others get Pillow's median cut
    without dithering (dithering would make flat areas flicker from frame to frame).
    """
    image = Image.fromarray(frame)
    counted = image.getcolors(256)  # None: more than 256 colours
    if counted is not None:
        colors = np.array(sorted(color for _, color in counted), dtype=np.uint8).reshape(-1, 3)
        indices = np.searchsorted(_packed_rgb(colors), _packed_rgb(frame)).astype(np.uint8)
    else:
        quantized = image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        colors = np.asarray(quantized.getpalette() or [], dtype=np.uint8).reshape(-1, 3)[:256]
        indices = np.asarray(quantized)
    palette = np.zeros((256, 4), dtype=np.uint8)
    palette[:, 0] = 255  # ARGB, opaque
    palette[: len(colors), 1:] = colors
    return indices, palette
