"""Scene (shot) splitting as in the LVCD paper: colour histograms of consecutive frames, cut on a jump.

The paper quantizes RGB to 1,000 colours, takes the colour histogram of every frame and cuts where the
RMSE between the histograms of two consecutive frames exceeds 30. It does not say in what unit the
histogram is counted. We count **pixels of the frame resized to 64x115** (``ANALYSIS_SIZE_HW``: the official
320x576 training frame scaled down 5 times, 7,360 pixels), calibrated on real animation frames:

* normalised fractions cannot reach 30 (their RMSE over 1,000 bins is at most sqrt(2/1000) ~ 0.045), so the
  paper's 30 is a count of pixels, and the frame size it is counted at is the unit;
* counted at 320x576, a continuous 75-frame shot (real hand-drawn animation: camera moves, grain, flicker of
  flat colours) scores up to 297 between neighbouring frames and is cut 29 times. Counted at 64x115 the same
  shot scores at most 11 (median 4); two shots joined score 86 at the join when the second is a close-up of the
  same scene, over 100 when its palette differs. 30 separates the two with margin on both sides
  (tests/data/test_scenes.py checks this on frames of that shot, tests/fixtures/data/shot);
* why the size matters this much: motion inside a shot moves pixels between neighbouring colour bins at
  object edges and in textured areas, a change that grows with the pixel count, while the change between two
  shots is a change of the colour distribution itself, visible at any size.

So every frame is first resized to 64x115 (bilinear, antialiased) and the RMSE is taken over its 1,000 bin
counts, whatever the source or training size (aspect not kept, as the official ``Resize([320, 576])``). The
threshold and the analysis size are configurable (``lvcd data prepare --threshold``); with another analysis size,
scale the threshold with it (roughly in proportion to the pixel count). Over-splitting is the safe side: a false
cut only shortens clips, while a missed cut would train the model on a window across two shots.

Quantization (exactly): each 8-bit channel value ``v`` goes to level ``v * 10 // 256`` (0..9; level
width 25.6), and the bin index is ``100 * R + 10 * G + B``, giving 1,000 bins.

Clips: a scene shorter than ``min_frames`` (15) is dropped, since one training sample needs 15 frames.
A scene longer than ``max_frames`` (200) is, by default, **split into near-equal chunks** of at most
``max_frames`` frames (``long_scenes="split"``) rather than dropped: long takes are common in animation
(pans, dialogue) and dropping them loses data, while a chunk of >= 100 frames still gives the sampler a
long reference prefix. ``long_scenes="drop"`` keeps only scenes of 15..200 frames, as the paper does.

    >>> split = split_scenes(frames)                     # doctest: +SKIP
    >>> split.cuts, split.clips                          # doctest: +SKIP
    ([40, 95], [(0, 40), (40, 95), (95, 150)])
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image

from lvcd.errors import InputError

LEVELS = 10  # quantization levels per channel: 10 ** 3 = 1,000 colours
ANALYSIS_SIZE_HW = (64, 115)  # frames are histogrammed at the official 320x576 scaled down 5 times
REFERENCE_PIXELS = ANALYSIS_SIZE_HW[0] * ANALYSIS_SIZE_HW[1]  # the RMSE unit: pixel counts of such a frame
LONG_SCENE_MODES = ("split", "drop")


@dataclass(frozen=True)
class SceneSplitConfig:
    """How to cut a video into scenes and scenes into training clips.

    threshold: cut between two frames when the RMSE of their 1,000 bin counts exceeds it.
    analysis_size_hw: the size frames are resized to before counting (the counts' unit: pixels of such a frame).
    min_frames / max_frames: the clip length range kept (the official ``nframe_range`` is 15..200).
    long_scenes: ``"split"`` a scene longer than ``max_frames`` into near-equal chunks, or ``"drop"`` it.
    """

    threshold: float = 30.0
    analysis_size_hw: tuple[int, int] = ANALYSIS_SIZE_HW
    min_frames: int = 15
    max_frames: int = 200
    long_scenes: str = "split"

    def __post_init__(self) -> None:
        if self.threshold <= 0:
            raise InputError(f"Scene threshold must be positive, got {self.threshold}.")
        if min(self.analysis_size_hw) <= 0:
            raise InputError(f"analysis_size_hw must be positive, got {self.analysis_size_hw}.")
        if not 1 <= self.min_frames <= self.max_frames:
            raise InputError(
                f"Clip length range {self.min_frames}..{self.max_frames} is empty: use 1 <= min_frames <= max_frames."
            )
        if self.long_scenes not in LONG_SCENE_MODES:
            raise InputError(f"long_scenes must be one of {', '.join(LONG_SCENE_MODES)}, got {self.long_scenes!r}.")

    @property
    def reference_pixels(self) -> int:
        return self.analysis_size_hw[0] * self.analysis_size_hw[1]

    def to_dict(self) -> dict:
        document = asdict(self)
        document["analysis_size_hw"] = list(self.analysis_size_hw)
        return document


def resize_rgb(rgb: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Exact HxW resize (aspect not kept, as the official ``Resize([320, 576])``), bilinear with antialiasing."""
    height, width = size_hw
    if rgb.shape[:2] == (height, width):
        return np.ascontiguousarray(rgb)
    return np.array(Image.fromarray(rgb).resize((width, height), Image.BILINEAR))


def color_histogram(rgb: np.ndarray, levels: int = LEVELS) -> np.ndarray:
    """Normalised histogram of an HxWx3 uint8 RGB frame over ``levels ** 3`` colours: (levels**3,) float64 summing to 1."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(f"Expected an HxWx3 uint8 RGB frame, got shape {rgb.shape} dtype {rgb.dtype}.")
    quantized = (rgb.astype(np.uint16) * levels) >> 8  # v * levels // 256, in 0..levels-1
    bins = (quantized[..., 0] * levels + quantized[..., 1]) * levels + quantized[..., 2]
    counts = np.bincount(bins.ravel(), minlength=levels**3)
    return counts / float(bins.size)


def histogram_rmse(hist_a: np.ndarray, hist_b: np.ndarray, reference_pixels: int = REFERENCE_PIXELS) -> float:
    """RMSE over bins between two normalised histograms, in pixel counts of a ``reference_pixels`` frame."""
    diff = (hist_a - hist_b) * reference_pixels
    return float(np.sqrt(np.mean(diff * diff)))


@dataclass
class SceneDetector:
    """Streaming cut detector: feed frames in order, read ``cuts`` (indices of frames that start a new scene)."""

    config: SceneSplitConfig = field(default_factory=SceneSplitConfig)
    cuts: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)  # scores[i] = RMSE between frame i and i+1
    num_frames: int = 0
    _previous: np.ndarray | None = None

    def update(self, rgb: np.ndarray) -> bool:
        """Add the next HxWx3 uint8 frame (any size); True when it starts a new scene."""
        return self.update_histogram(color_histogram(resize_rgb(rgb, self.config.analysis_size_hw)))

    def update_histogram(self, hist: np.ndarray) -> bool:
        is_cut = False
        if self._previous is not None:
            score = histogram_rmse(self._previous, hist, self.config.reference_pixels)
            self.scores.append(score)
            if score > self.config.threshold:
                self.cuts.append(self.num_frames)
                is_cut = True
        self._previous = hist
        self.num_frames += 1
        return is_cut


def scene_ranges(num_frames: int, cuts: Iterable[int]) -> list[tuple[int, int]]:
    """[start, stop) frame ranges of the scenes delimited by ``cuts``."""
    bounds = [0, *sorted(c for c in cuts if 0 < c < num_frames), num_frames]
    return [(start, stop) for start, stop in zip(bounds[:-1], bounds[1:], strict=True) if stop > start]


def clip_ranges(scenes: Iterable[tuple[int, int]], config: SceneSplitConfig) -> list[tuple[int, int]]:
    """Training clips from scenes: drop short scenes; split (or drop) long ones into near-equal chunks."""
    clips: list[tuple[int, int]] = []
    for start, stop in scenes:
        length = stop - start
        if length < config.min_frames:
            continue
        if length <= config.max_frames:
            clips.append((start, stop))
            continue
        if config.long_scenes == "drop":
            continue
        chunks = -(-length // config.max_frames)
        base, extra = divmod(length, chunks)
        position = start
        for k in range(chunks):
            chunk = base + (1 if k < extra else 0)
            if chunk >= config.min_frames:
                clips.append((position, position + chunk))
            position += chunk
    return clips


@dataclass(frozen=True)
class SceneSplit:
    """Result of splitting one video: scene cuts, per-transition scores and the clips kept."""

    num_frames: int
    cuts: list[int]
    scores: list[float]
    clips: list[tuple[int, int]]

    @property
    def scenes(self) -> list[tuple[int, int]]:
        return scene_ranges(self.num_frames, self.cuts)


def split_scenes(frames: Iterable[np.ndarray], config: SceneSplitConfig | None = None) -> SceneSplit:
    """Split a stream of HxWx3 uint8 RGB frames (any size; histogrammed at ``analysis_size_hw``) into scenes and clips."""
    config = config or SceneSplitConfig()
    detector = SceneDetector(config)
    for frame in frames:
        detector.update(frame)
    return SceneSplit(
        num_frames=detector.num_frames,
        cuts=list(detector.cuts),
        scores=list(detector.scores),
        clips=clip_ranges(scene_ranges(detector.num_frames, detector.cuts), config),
    )
