"""EDMD, Euclidean distance map difference (LVCD paper §6.1): how well generated frames follow the sketch.

**edmd** (the paper's form): "extract sketches from the generated frames; Euclidean distance maps of the
generated-frame sketch and of the input sketch; RMSE of their difference". For each frame:

1. extract a sketch of the generated frame with ``extractor`` (dark lines on white, [0, 1]); the reference is the
   **input line art** the frame was drawn from (normalised to dark lines on white, see :func:`lineart_to_sketch`);
2. binarise both: a pixel is a line pixel when its value is below ``threshold`` (default 0.5). The input line art
   is binarised at its own size and then reduced to the frames' size keeping every line
   (:mod:`lvcd.metrics.linemask`): resized like a colour frame first, its 1-px lines would fade above the threshold;
3. Euclidean distance map: for every pixel, the distance in pixels (at the evaluation resolution, 256x256 by
   default) to the nearest line pixel; a sketch with no line pixel at all gets the image diagonal everywhere;
4. EDMD = RMSE of the difference of the two maps, ``sqrt(mean((D_gen - D_input)^2))``, in pixels.

Lines drawn in the wrong place, missing or extra lines raise it. Its floor is not 0: it includes how differently
the extractor draws the same picture than the input line art was drawn (line width, which edges become lines), so
use the extractor that made the input line art where possible (the paper's inputs came from the
informative-drawings network) and compare methods only with the same extractor.

**edmd_gt** (variant, for when only ground-truth frames are at hand): the reference sketch is extracted from the
ground-truth frame with the **same** extractor, instead of being the input line art. Identical frames give exactly
0 and the extractor's style cancels out, but it is not the paper's definition. The official code was never
released (luckyhzt/LVCD issue #8), so the binarisation and units above are this package's choices.

    >>> edmd_per_frame(pred, lineart, extractor)      # (N, 3, H, W) in [0, 1] -> (N,) pixels   # doctest: +SKIP
    >>> edmd_gt_per_frame(pred, gt, extractor)        # the ground-truth-sketch variant          # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from lvcd.errors import InputError
from lvcd.metrics.clips import as_unit_float
from lvcd.metrics.linemask import SKETCH_THRESHOLD, dark_on_white, line_pixels, resize_lines
from lvcd.metrics.optional import import_distance_transform

SketchExtractor = Callable[[torch.Tensor], torch.Tensor]


def extract_sketches(extractor, frames: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
    """Run ``extractor.batch`` (or the callable itself) on (N, 3, H, W) frames (uint8, or float in [0, 1]);
    return (N, H, W) sketches in [0, 1] on the CPU."""
    run = extractor.batch if hasattr(extractor, "batch") else extractor
    sketches = []
    with torch.no_grad():
        for start in range(0, frames.shape[0], batch_size):
            out = run(as_unit_float(frames[start : start + batch_size]))
            if out.ndim == 4:
                out = out[:, 0]
            sketches.append(out.float().cpu())
    result = torch.cat(sketches)
    if result.shape[-2:] != frames.shape[-2:]:
        raise InputError(
            f"sketch extractor changed the frame size {tuple(frames.shape[-2:])} to {tuple(result.shape[-2:])}"
        )
    return result


def line_mask(sketch: torch.Tensor | np.ndarray, threshold: float = SKETCH_THRESHOLD) -> np.ndarray:
    """Boolean line pixels of dark-lines-on-white sketches in [0, 1]."""
    values = sketch.numpy() if isinstance(sketch, torch.Tensor) else np.asarray(sketch)
    return values < threshold


def distance_map(lines: np.ndarray) -> np.ndarray:
    """(H, W) bool line mask -> (H, W) float64 distance in pixels to the nearest line pixel."""
    distance_transform_edt = import_distance_transform()
    if not lines.any():
        return np.full(lines.shape, math.hypot(*lines.shape))
    return distance_transform_edt(~lines)


def edmd_from_lines(pred_lines, reference_lines) -> np.ndarray:
    """(N, H, W) bool line masks of generated frames and of their reference -> (N,) EDMD in pixels."""
    pred_lines, reference_lines = (
        lines.numpy() if isinstance(lines, torch.Tensor) else np.asarray(lines)
        for lines in (pred_lines, reference_lines)
    )
    if pred_lines.shape != reference_lines.shape:
        raise InputError(f"sketch shapes differ: {pred_lines.shape} vs {reference_lines.shape}")
    values = [
        math.sqrt(float(np.mean((distance_map(p) - distance_map(g)) ** 2)))
        for p, g in zip(pred_lines, reference_lines, strict=True)
    ]
    return np.asarray(values, dtype=np.float64)


def edmd_from_sketches(pred_sketches, gt_sketches, threshold: float = SKETCH_THRESHOLD) -> np.ndarray:
    """(N, H, W) sketches of generated and ground-truth frames -> (N,) EDMD in pixels."""
    return edmd_from_lines(line_mask(pred_sketches, threshold), line_mask(gt_sketches, threshold))


def edmd_per_frame(
    pred: torch.Tensor, lineart: torch.Tensor, extractor, threshold: float = SKETCH_THRESHOLD, batch_size: int = 8
) -> np.ndarray:
    """The paper's EDMD of each frame: the sketch of the generated frame (``extractor``) against the input line art.

    ``pred``: (N, 3, H, W); ``lineart``: (N, C, h, w) or (N, h, w), either polarity, uint8 or float in [0, 1], at
    the frames' size or its own (binarised there, then reduced keeping every line: :mod:`lvcd.metrics.linemask`).
    Returns (N,) pixels.
    """
    if lineart.ndim == 3:
        lineart = lineart[:, None]
    if lineart.ndim != 4 or lineart.shape[0] != pred.shape[0]:
        raise InputError(
            f"EDMD needs one line-art frame per generated frame, got {tuple(lineart.shape)} for frames "
            f"{tuple(pred.shape)}"
        )
    reference = resize_lines(line_pixels(lineart, threshold), tuple(pred.shape[-2:]))
    return edmd_from_lines(line_mask(extract_sketches(extractor, pred, batch_size), threshold), reference)


def edmd_gt_per_frame(
    pred: torch.Tensor, gt: torch.Tensor, extractor, threshold: float = SKETCH_THRESHOLD, batch_size: int = 8
) -> np.ndarray:
    """The ``edmd_gt`` variant: sketches of the generated and the ground-truth frames with the same ``extractor``."""
    if pred.shape != gt.shape:
        raise InputError(f"EDMD needs frames of one shape, got {tuple(pred.shape)} and {tuple(gt.shape)}")
    return edmd_from_sketches(
        extract_sketches(extractor, pred, batch_size), extract_sketches(extractor, gt, batch_size), threshold
    )


def lineart_to_sketch(lineart: torch.Tensor) -> torch.Tensor:
    """Given line art (N, C, H, W) in [0, 1] -> (N, H, W) dark lines on white (inverted when mostly dark)."""
    return dark_on_white(as_unit_float(lineart).mean(dim=1))
