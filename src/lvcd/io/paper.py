"""Scanned line art: the paper brought to white and the ink to black before the drawing becomes a hint.

LVCD's ControlNet learned from extracted sketches: white paper (hint 0) and dark lines. A scan or photograph of a
drawing has grey, grainy paper (say 200 +- 5) and grey ink, and the official mapping ``1 - gray/255`` turns that paper
into a 0.2 haze over the whole hint, which the model reads as lines everywhere. With the demo model, 4 held-out
synthetic shots (25 frames, 10 steps) score region accuracy 0.865 on their clean line art and 0.089 on the same
drawings on grey paper (paper 200, ink 40, noise 4): the colours are lost. Levels bring them back (see
benchmarks/RESULTS.md, "Scanned line art").

Per frame (scans differ in exposure):

1. uneven lighting (a photo under a lamp, a vignette: the paper's brightness spreading over 16 levels or more) is
   flattened, dividing by the paper's smooth brightness (:func:`paper_light`, a robust quadratic fit);
2. the paper is the histogram's mode refined by the median of the pixels near it, its grain a robust deviation
   (1.4826 MAD); everything within 3 grain deviations of the paper becomes white;
3. the ink is the 5th percentile of the line pixels (those more than 24 levels darker than the paper) and becomes
   black; the range between is stretched linearly (anti-aliasing and pressure kept).

Bright-line art is handled inverted. ``auto`` (the default everywhere) levels a shot only when its paper is not clean:
paper darker than 247, grain of 4 levels or more, or a shadow (a white sheet whose brightness falls off smoothly over
16 levels or more, in a corner or along a side: light varies continuously, where a grey fill or a screen tone on
digital art is a few flat levels), judged on its first frames. Blocks nearer the ink than the paper, such as black
bars and fills, are never taken for lighting. Line art on white paper, digital or binarized, and the sketches lvcd
extracts itself, are left exactly as the official code reads them.

    >>> scan = np.full((16, 16), 200, np.uint8); scan[4] = 40
    >>> levels = measure_levels(scan); (levels.paper, levels.ink, levels.needed)
    (200.0, 40.0, True)
    >>> levels.apply(scan)[3:5, 0].tolist()
    [255.0, 0.0]
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import islice

import numpy as np

from lvcd.errors import InputError

LEVELS = ("auto", "on", "off")
LINE_MARGIN = 24  # levels darker than the paper by more than this are line pixels (as in polarity detection)
CLEAN_PAPER = 247  # paper at least this bright ...
CLEAN_GRAIN = 4.0  # ... and grain below this: the sheet is clean and auto leaves it alone
INK_PERCENTILE = 5.0
MIN_RANGE = 32.0  # the ink is never stretched closer than this to the white point
UNEVEN_LIGHT = 16.0  # paper light spreading over more levels than this in a frame (a lamp, a vignette): flattened
MAX_DARK_BLOCKS = 0.10  # more blocks than this without paper (letterbox bars, large fills): lighting not estimated
_MAD_TO_STD = 1.4826


def paper_level(gray: np.ndarray) -> int:
    """The background level of a line-art frame: the mode of its 0..255 histogram smoothed over +-4 levels."""
    levels = gray.ravel() if gray.dtype == np.uint8 else np.rint(gray).astype(np.int64).clip(0, 255).ravel()
    histogram = np.bincount(levels, minlength=256).astype(np.float64)
    return int(np.argmax(np.convolve(histogram, np.ones(9), mode="same")))


@dataclass(frozen=True)
class PaperLevels:
    """One frame's levels, on dark-lines gray (paper bright): ``apply`` maps ``white`` and above to 255, ``ink`` and
    below to 0, linearly between."""

    paper: float
    grain: float
    white: float
    ink: float
    uneven: float = 0.0  # spread of the paper's brightness over the frame (5th to 95th percentile of paper_light)
    shadow: float = 0.0  # ``uneven`` when the paper's brightness varies continuously (light does), else 0

    @property
    def needed(self) -> bool:
        """Whether ``auto`` levels this sheet: grey or grainy paper, or a shadow over white paper. Uneven brightness
        in a few flat levels does not count, so that digital line art on white with large grey or black areas stays
        exactly as the official code reads it."""
        return self.paper < CLEAN_PAPER or self.grain >= CLEAN_GRAIN or self.shadow >= UNEVEN_LIGHT

    def describe(self) -> str:
        lighting = f", uneven lighting ({self.uneven:.0f} levels) flattened" if self.uneven >= UNEVEN_LIGHT else ""
        return (
            f"scanned paper levelled: paper {self.paper:.0f} (grain {self.grain:.1f}) to white, ink {self.ink:.0f} "
            f"to black{lighting}"
        )

    def apply(self, gray: np.ndarray) -> np.ndarray:
        scaled = (np.asarray(gray, dtype=np.float32) - self.ink) / np.float32(self.white - self.ink)
        return np.clip(scaled, 0.0, 1.0) * np.float32(255.0)


def _ink_level(values: np.ndarray, paper: float) -> float:
    """The ink: the 5th percentile of the line pixels (more than ``LINE_MARGIN`` darker than ``paper``); 0 when there
    are too few to tell."""
    lines = values[values < paper - LINE_MARGIN]
    return float(np.percentile(lines, INK_PERCENTILE)) if lines.size >= 16 else 0.0


@dataclass(frozen=True)
class _LightFit:
    coefficients: np.ndarray  # of the quadratic surface (see _surface)
    dark: float  # fraction of blocks too dark to be paper (nearer the ink than the paper)
    continuous: bool  # the paper blocks' brightness varies without jumps (light, not flat grey areas)


def _continuous(values: np.ndarray) -> bool:
    """Whether brightness values (paper blocks) spread continuously: between their 5th and 95th percentiles no jump
    exceeds a quarter of that range (a grey fill or screen tone on white is two flat levels: one jump, all of it)."""
    low, high = np.percentile(values, [5.0, 95.0])
    inner = np.sort(values[(values >= low) & (values <= high)])
    return inner.size > 1 and float(np.diff(inner).max()) <= max(0.25 * (high - low), 2.0)


def _light_fit(gray: np.ndarray) -> _LightFit:
    """The quadratic paper-brightness surface of :func:`paper_light`, fitted to block maxima."""
    gray = np.asarray(gray, dtype=np.float32)
    h, w = gray.shape
    block = max(2, min(h, w) // 16)
    hb, wb = -(-h // block), -(-w // block)
    padded = np.pad(gray, ((0, hb * block - h), (0, wb * block - w)), mode="edge")
    peaks = padded.reshape(hb, block, wb, block).max(axis=(1, 3)).ravel().astype(np.float64)
    y, x = np.meshgrid((np.arange(hb) + 0.5) * block / h, (np.arange(wb) + 0.5) * block / w, indexing="ij")
    terms = np.stack([np.ones_like(x), x, y, x * x, x * y, y * y], axis=-1).reshape(-1, 6)
    # A block whose brightest pixel is nearer the ink than the paper holds no paper (a bar, a fill): never fitted,
    # however smoothly such blocks line up (bars at both ends would otherwise pass for a vignette).
    paper = float(paper_level(gray))
    paper_blocks = peaks > (paper + _ink_level(gray.ravel(), paper)) / 2
    if not paper_blocks.any():
        return _LightFit(np.array([paper, 0, 0, 0, 0, 0], dtype=np.float64), 1.0, False)
    keep = paper_blocks
    for _ in range(4):
        coefficients = np.linalg.lstsq(terms[keep], peaks[keep], rcond=None)[0]
        residual = peaks - terms @ coefficients
        spread = _MAD_TO_STD * np.median(np.abs(residual[keep])) + 1.0
        keep = paper_blocks & (residual > -3.0 * spread)
    return _LightFit(coefficients, float(1.0 - paper_blocks.mean()), _continuous(peaks[paper_blocks]))


def _surface(c: np.ndarray, h: int, w: int) -> np.ndarray:
    ys = ((np.arange(h, dtype=np.float32) + 0.5) / h)[:, None]
    xs = ((np.arange(w, dtype=np.float32) + 0.5) / w)[None, :]
    c = c.astype(np.float32)
    return (c[0] + c[1] * xs + c[3] * xs * xs) + ys * (c[2] + c[4] * xs) + c[5] * ys * ys


def _spread(fit: _LightFit) -> float:
    """How unevenly a frame's paper is lit: the 5th to 95th percentile range of the fitted surface (on a grid); 0 when
    more than ``MAX_DARK_BLOCKS`` of the frame shows no paper (letterbox bars, large fills), where lighting cannot be
    told from ink and is left alone."""
    if fit.dark > MAX_DARK_BLOCKS:
        return 0.0
    low, high = np.percentile(_surface(fit.coefficients, 32, 32), [5.0, 95.0])
    return float(high - low)


def paper_light(gray: np.ndarray) -> np.ndarray:
    """The paper's brightness under each pixel, smooth (HxW float32): the maxima of blocks of 1/16 of the shorter side
    (lines are thin, paper shows in almost every block) fitted by a quadratic surface in x and y (a lamp's fall-off, a
    vignette), robustly: blocks far below the fit (ink fills, dense hatching) are left out and the fit repeated."""
    return _surface(_light_fit(gray).coefficients, *np.shape(gray))


def _levels(gray: np.ndarray, uneven: float, shadow: float = 0.0) -> PaperLevels:
    values = np.asarray(gray, dtype=np.float32).ravel()
    mode = paper_level(gray)
    near = values[np.abs(values - mode) <= LINE_MARGIN]
    paper = float(np.median(near))
    grain = float(_MAD_TO_STD * np.median(np.abs(near - paper)))
    white = max(paper - 3.0 * grain, MIN_RANGE)
    ink = float(np.clip(_ink_level(values, paper), 0.0, white - MIN_RANGE))
    return PaperLevels(paper, grain, white, ink, uneven, shadow)


def measure_levels(gray: np.ndarray) -> PaperLevels:
    """The levels of one HxW gray frame (uint8 or float 0..255) with dark lines on brighter paper."""
    fit = _light_fit(gray)
    uneven = _spread(fit)
    return _levels(gray, uneven, uneven if fit.continuous else 0.0)


def levelled_hint(dark: np.ndarray) -> np.ndarray:
    """A dark-lines gray frame (0..255) -> its hint (lines ~1 on 0, float32) after its own levels, its lighting
    flattened first when uneven (divided by the paper's smooth brightness, brought to its median)."""
    dark = np.asarray(dark, dtype=np.float32)
    fit = _light_fit(dark)
    uneven = _spread(fit)
    if uneven >= UNEVEN_LIGHT:
        light = _surface(fit.coefficients, *dark.shape)
        dark = dark * (np.float32(np.median(light)) / np.maximum(light, np.float32(1.0)))
    return (1.0 - _levels(dark, uneven).apply(dark) / np.float32(255.0)).astype(np.float32)


def shot_levels(grays: Iterable[np.ndarray], max_frames: int = 8) -> PaperLevels:
    """A shot's levels: the median over its first ``max_frames`` dark-lines gray frames (for ``auto``'s decision and
    the report; each frame is levelled with its own)."""
    measured = [measure_levels(gray) for gray in islice(grays, max(1, max_frames))]
    if not measured:
        raise ValueError("shot_levels needs at least one frame")
    fields = PaperLevels.__dataclass_fields__
    return PaperLevels(*(float(np.median([getattr(m, name) for m in measured])) for name in fields))


def check_levels(mode: str) -> str:
    if mode not in LEVELS:
        raise InputError(
            f"Line-art levels {mode!r} is not one of {', '.join(LEVELS)} (auto: level grey or grainy scanned paper)."
        )
    return mode
