"""Region accuracy: the share of the picture whose flat-colour regions got the right colour.

For data with region label maps (``lvcd data synth``): in each frame, each region (a label) is judged on its
pixels *away from the lines* (pixels within ``margin`` px of a line are left out, so line rendering and the VAE's
soft edges do not count). The region is correct when the mean predicted colour there is within ``threshold``
(RGB Euclidean distance, channels in [0, 1]) of the true colour (the mean of the ground truth there, which for
flat regions is exactly the region's colour). The score is the area-weighted fraction of correct regions over
all frames: sum of the areas of correct regions / sum of the areas of all regions (a region's area is its pixel
count away from the lines). A region that lies entirely within ``margin`` of the lines is not judged at all.
Over many clips, pool the areas (:func:`pool_region_accuracy`) rather than averaging the clips' fractions.

    >>> region_accuracy(pred, truth, labels, lines).accuracy    # (N, 3, H, W) in [0, 1], (N, H, W), (N, H, W)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lvcd.errors import InputError
from lvcd.metrics.clips import as_unit_float

REGION_THRESHOLD = 0.1


@dataclass(frozen=True)
class RegionAccuracy:
    accuracy: float  # area-weighted fraction of correct regions (nan when nothing was judged)
    regions: int  # regions judged (summed over frames)
    correct: int  # of which correct
    area: int  # pixels judged
    correct_area: int  # of which in correct regions


def pool_region_accuracy(results: list[RegionAccuracy]) -> RegionAccuracy:
    """Several results (frames or clips) as one: areas and counts summed, the fraction recomputed."""
    area = sum(r.area for r in results)
    correct_area = sum(r.correct_area for r in results)
    return RegionAccuracy(
        accuracy=correct_area / area if area else float("nan"),
        regions=sum(r.regions for r in results),
        correct=sum(r.correct for r in results),
        area=area,
        correct_area=correct_area,
    )


def label_boundaries(labels: torch.Tensor) -> torch.Tensor:
    """(N, H, W) bool: pixels whose label differs from that of a 4-neighbour (both sides of every boundary)."""
    boundary = torch.zeros(labels.shape, dtype=torch.bool, device=labels.device)
    horizontal = labels[:, :, 1:] != labels[:, :, :-1]
    vertical = labels[:, 1:, :] != labels[:, :-1, :]
    boundary[:, :, 1:] |= horizontal
    boundary[:, :, :-1] |= horizontal
    boundary[:, 1:, :] |= vertical
    boundary[:, :-1, :] |= vertical
    return boundary


def _away_from_lines(lines: torch.Tensor, margin: int) -> torch.Tensor:
    """(N, H, W) bool: pixels farther than ``margin`` px (Chebyshev) from every line pixel."""
    if margin <= 0:
        return ~lines
    near = F.max_pool2d(lines[:, None].float(), kernel_size=2 * margin + 1, stride=1, padding=margin)[:, 0]
    return near == 0


def region_accuracy(
    pred: torch.Tensor,
    truth: torch.Tensor,
    labels: torch.Tensor,
    lines: torch.Tensor,
    threshold: float = REGION_THRESHOLD,
    margin: int = 1,
) -> RegionAccuracy:
    """pred, truth: (N, 3, H, W) uint8 or float in [0, 1]; labels: (N, H, W) integer region ids; lines: (N, H, W)
    bool, True on the lines."""
    if pred.shape != truth.shape or pred.ndim != 4 or labels.shape != (pred.shape[0], *pred.shape[2:]):
        raise InputError(
            f"region_accuracy needs (N, 3, H, W) frames and (N, H, W) labels, got {tuple(pred.shape)}, "
            f"{tuple(truth.shape)} and {tuple(labels.shape)}"
        )
    if lines.shape != labels.shape:
        raise InputError(f"line mask {tuple(lines.shape)} does not match the labels {tuple(labels.shape)}")
    keep = _away_from_lines(lines.bool(), margin)
    _, compact = torch.unique(labels.long(), return_inverse=True)  # ids 0..K-1 however large the label values are
    num_labels = int(compact.max()) + 1 if compact.numel() else 1
    frame_ids = torch.arange(labels.shape[0], device=labels.device)[:, None, None].expand_as(labels)
    ids = (frame_ids * num_labels + compact)[keep]  # one id per (frame, region)
    count = torch.bincount(ids, minlength=labels.shape[0] * num_labels).double()
    present = count > 0

    def region_means(frames: torch.Tensor) -> torch.Tensor:
        pixels = as_unit_float(frames).double().permute(0, 2, 3, 1)[keep]  # (P, 3)
        sums = torch.stack([torch.bincount(ids, weights=pixels[:, c], minlength=count.shape[0]) for c in range(3)], 1)
        return sums[present] / count[present, None]

    distance = (region_means(pred) - region_means(truth)).norm(dim=1)
    areas = count[present]
    correct = distance <= threshold
    total = float(areas.sum())
    correct_area = float(areas[correct].sum())
    return RegionAccuracy(
        accuracy=correct_area / total if total else float("nan"),
        regions=int(present.sum()),
        correct=int(correct.sum()),
        area=int(total),
        correct_area=int(correct_area),
    )
