"""Input line art as a binary line mask at the evaluation size, without losing thin lines.

Colour frames are resized with antialiased bilinear filtering (:func:`lvcd.metrics.clips.resize_frames`); doing the
same to line art and thresholding afterwards loses thin lines: a 1-px vertical line of 576x320 line art shrunk to
256x256 is a grey smear above the threshold, so EDMD would be measured against part of the sketch. Instead:

1. per frame, grey = mean over channels in [0, 1], flipped when mostly dark (white lines on black become dark on
   white); a pixel is a line pixel when its grey is below ``threshold`` (0.5), at the line art's **own size**;
2. at the evaluation size, a pixel is a line pixel where the mask, resized as colour frames are (antialiased
   bilinear), is at least 0.5: lines 2 px and thicker keep the width they had before;
3. lines that rule drops are put back: every source line pixel is assigned to the target pixel its centre falls in
   (when enlarging: each target pixel takes the source pixel under its centre); a target pixel holding any line
   pixel becomes a line pixel unless step 2 marked it or one of its 8 neighbours, and those restored pixels are
   grown by one pixel within the pixels holding line pixels, so a restored line reaches the lines it meets. A 1-px
   line comes out 1 px wide, and every source line pixel lies in or next to a line pixel of the result.

    >>> lines = line_pixels(lineart)                  # (N, C, h, w) uint8 -> (N, h, w) bool   # doctest: +SKIP
    >>> resize_lines(lines, (256, 256))               # (N, 256, 256) bool                     # doctest: +SKIP
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SKETCH_THRESHOLD = 0.5


def dark_on_white(gray: torch.Tensor) -> torch.Tensor:
    """(N, H, W) grey in [0, 1] -> the same with each mostly dark frame inverted (dark lines on white)."""
    inverted = gray.flatten(1).mean(dim=1) < 0.5
    return torch.where(inverted.view(-1, 1, 1), 1.0 - gray, gray)


def line_pixels(lineart: torch.Tensor, threshold: float = SKETCH_THRESHOLD) -> torch.Tensor:
    """Line art (N, C, H, W) or (N, H, W), uint8 or float in [0, 1], either polarity -> (N, H, W) bool line pixels."""
    values = lineart.float() / 255.0 if lineart.dtype == torch.uint8 else lineart.float()
    gray = values if values.ndim == 3 else values.mean(dim=1)
    return dark_on_white(gray) < threshold


def _assignment(source: int, target: int) -> torch.Tensor:
    """(target, source) 0/1: source pixel j belongs to target pixel i when its centre lies in i's footprint, or
    when i's centre lies in j (the nearest rule, which alone covers every target pixel when enlarging)."""
    matrix = torch.zeros(target, source)
    sources = torch.arange(source)
    matrix[(2 * sources + 1) * target // (2 * source), sources] = 1.0  # integer form of floor((j + 0.5) * t / s)
    targets = torch.arange(target)
    matrix[targets, (2 * targets + 1) * source // (2 * target)] = 1.0
    return matrix


def resize_lines(lines: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, h, w) bool line mask -> (N, H, W) bool at ``size`` (the rules: the module docstring). The identity at the
    same size."""
    height, width = lines.shape[-2:]
    if (height, width) == tuple(size):
        return lines.clone()
    mask = lines.float()[:, None]  # (N, 1, h, w)
    kept = F.interpolate(mask, size=size, mode="bilinear", antialias=True, align_corners=False) >= 0.5
    rows, cols = _assignment(height, size[0]), _assignment(width, size[1])
    assigned = (rows @ mask @ cols.T) > 0  # any line pixel assigned; counts are exact in float32 at these sizes
    lost = assigned & ~_grown(kept)  # lines step 2 left without a line pixel nearby
    # Grown back by one pixel within the assigned pixels, so a restored line reaches the lines it meets.
    return (kept | (assigned & _grown(lost)))[:, 0]


def _grown(mask: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) bool -> the same with every pixel next to a True one (8-neighbourhood) set."""
    return F.max_pool2d(mask.float(), kernel_size=3, stride=1, padding=1) > 0
