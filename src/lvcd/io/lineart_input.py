"""User line art -> the model's hint convention: lines ~ 1 on a 0 background, float32 in [0, 1].

The official pipeline (spec §3.2) feeds ``1 - sketch/255`` where the extractor's sketch has dark lines
(~0) on white (~255). Users bring line art in either polarity (dark on white from most tools, white on
black from some extractors and inverted exports), so the polarity is detected unless given.

>>> hint = lineart_to_hint(np.full((4, 4), 255, np.uint8))   # blank white sheet -> no lines
>>> float(hint.max())
0.0
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from typing import Literal

import numpy as np

from lvcd.errors import InputError
from lvcd.io.frames import to_rgb_uint8
from lvcd.io.paper import paper_level

Polarity = Literal["auto", "dark-lines", "bright-lines"]
DetectedPolarity = Literal["dark-lines", "bright-lines"]
POLARITIES: tuple[str, ...] = ("auto", "dark-lines", "bright-lines")

# ITU-R BT.601 luma, the weights Pillow's convert("L") uses. The official line art is one channel
# replicated to 3 identical channels, for which any weighted mean returns that channel exactly;
# _to_gray short-circuits that case so the official inputs stay bit-exact.
LUMA_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)

# Gray levels within this distance of the background level count as background (paper grain, JPEG
# ringing, the faint tail of anti-aliasing); only stronger deviations vote for a line polarity.
_BACKGROUND_MARGIN = 24


def _to_gray(image: np.ndarray) -> np.ndarray:
    """HxW or HxWxC image -> HxW gray, uint8 when the input is uint8 gray or 3 equal channels, else float32."""
    image = np.asarray(image)
    if image.ndim == 2 and image.dtype == np.uint8:
        return image
    rgb = image if image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8 else to_rgb_uint8(image)
    if np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]):
        return rgb[..., 0]
    return rgb.astype(np.float32) @ LUMA_WEIGHTS


def _polarity_score(gray: np.ndarray) -> float:
    """Signed confidence in [-1, 1]: > 0 for dark lines, < 0 for bright lines, 0 when undecidable.

    Line art is mostly background with a minority of line pixels, so the background is the histogram
    mode (smoothed over +-4 levels so noise does not split the peak), and lines are the pixels that
    deviate strongly from it. The side (darker or brighter than the background) holding more deviation,
    weighted by distance, is the line polarity. This holds for binarized art (two spikes), anti-aliased
    lines, gray paper, sparse frames with a single thin line, and heavy shading that stays a minority.
    """
    levels = np.rint(gray).astype(np.int64).clip(0, 255).ravel() if gray.dtype != np.uint8 else gray.ravel()
    histogram = np.bincount(levels, minlength=256).astype(np.float64)
    distance = np.arange(256) - paper_level(gray)
    darker = float((histogram * -distance)[distance < -_BACKGROUND_MARGIN].sum())
    brighter = float((histogram * distance)[distance > _BACKGROUND_MARGIN].sum())
    if darker + brighter == 0.0:
        return 0.0
    return (darker - brighter) / (darker + brighter)


def _fallback_polarity(gray: np.ndarray) -> DetectedPolarity:
    """For a frame without lines (a blank sheet): white paper means dark lines, black paper bright lines."""
    return "dark-lines" if float(np.median(gray)) >= 128 else "bright-lines"


def detect_polarity(gray: np.ndarray) -> DetectedPolarity:
    """Whether a line-art frame has dark lines on a light background or bright lines on a dark one.

    ``gray``: HxW uint8 (an HxWx3 frame is converted to gray first).

    >>> sheet = np.full((8, 8), 255, np.uint8); sheet[4, :] = 0
    >>> detect_polarity(sheet), detect_polarity(255 - sheet)
    ('dark-lines', 'bright-lines')
    """
    gray = _to_gray(gray)
    score = _polarity_score(gray)
    if score == 0.0:
        return _fallback_polarity(gray)
    return "dark-lines" if score > 0 else "bright-lines"


def detect_sequence_polarity(frames: Iterable[np.ndarray], max_frames: int = 8) -> DetectedPolarity:
    """Majority polarity over the first ``max_frames`` frames (ties broken by the summed confidence).

    Frames without lines abstain. Consumes up to ``max_frames`` items of ``frames`` (pass a fresh
    iterator, e.g. ``iter(source)``, then iterate the source again for processing).
    """
    votes = {"dark-lines": 0, "bright-lines": 0}
    total_score = 0.0
    first_gray: np.ndarray | None = None
    for frame in islice(frames, max(1, max_frames)):
        gray = _to_gray(frame)
        first_gray = gray if first_gray is None else first_gray
        score = _polarity_score(gray)
        total_score += score
        if score != 0.0:
            votes["dark-lines" if score > 0 else "bright-lines"] += 1
    if first_gray is None:
        raise ValueError("detect_sequence_polarity needs at least one frame")
    if votes["dark-lines"] != votes["bright-lines"]:
        return max(votes, key=votes.__getitem__)  # type: ignore[return-value]
    if total_score != 0.0:
        return "dark-lines" if total_score > 0 else "bright-lines"
    return _fallback_polarity(first_gray)


def dark_lines_gray(image: np.ndarray, polarity: DetectedPolarity) -> np.ndarray:
    """A line-art frame as gray with dark lines on brighter paper (bright-line art inverted), float32 0..255."""
    gray = _to_gray(image).astype(np.float32)
    return 255.0 - gray if polarity == "bright-lines" else gray


def lineart_to_hint(image: np.ndarray, polarity: Polarity = "auto") -> np.ndarray:
    """Any line-art frame (HxW or HxWx3 uint8) -> HxW float32 hint in [0, 1] with lines ~ 1 on 0.

    ``dark-lines``: ``1 - gray/255`` (the official mapping); ``bright-lines``: ``gray/255``;
    ``auto``: :func:`detect_polarity` on this frame. For a whole shot, detect once with
    :func:`detect_sequence_polarity` and pass the result, so the polarity cannot flip between frames.

    >>> lineart_to_hint(np.array([[0, 255]], np.uint8), "dark-lines").tolist()
    [[1.0, 0.0]]
    """
    if polarity not in POLARITIES:
        raise InputError(f"line-art polarity {polarity!r} is not one of {', '.join(POLARITIES)}.")
    gray = _to_gray(image)
    if polarity == "auto":
        polarity = detect_polarity(gray)
    # float64 then float32, as the official ``1 - skt/255`` on a uint8 numpy array, for bit parity.
    scaled = gray / 255.0
    hint = 1.0 - scaled if polarity == "dark-lines" else scaled
    return np.clip(hint, 0.0, 1.0).astype(np.float32)
