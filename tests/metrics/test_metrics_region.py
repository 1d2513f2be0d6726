"""Region accuracy on constructed frames: exact colours, one region off, lines and margins, regions on lines only."""

from __future__ import annotations

import math

import pytest
import torch

from lvcd.errors import InputError
from lvcd.metrics.region import label_boundaries, pool_region_accuracy, region_accuracy

# Two regions split at column 4 of a 12x12 frame: label 0 = columns 0-3, label 1 = columns 4-11. The boundary
# pixels are columns 3 and 4; with margin 1 columns 2-5 are left out, so 24 pixels of region 0 and 72 of region 1
# are judged.
COLOURS = torch.tensor([[0.2, 0.5, 0.7], [0.6, 0.3, 0.1]])


def _scene(height: int = 12, width: int = 12, split: int = 4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    labels = torch.zeros(1, height, width, dtype=torch.long)
    labels[..., split:] = 1
    truth = COLOURS[labels].permute(0, 3, 1, 2).contiguous()  # (1, 3, H, W)
    return truth, labels, label_boundaries(labels)


def test_label_boundaries_mark_both_sides():
    _, labels, lines = _scene()
    assert lines[0].any(dim=0).nonzero().flatten().tolist() == [3, 4] and lines[0, :, 3:5].all()


def test_exact_colours_score_one():
    truth, labels, lines = _scene()
    result = region_accuracy(truth.clone(), truth, labels, lines)
    assert result.accuracy == 1.0 and result.regions == 2 and result.correct == 2
    assert result.area == 96 and result.correct_area == 96


def test_one_region_off_by_0_2_scores_the_other_regions_area_share():
    truth, labels, lines = _scene()
    pred = truth.clone()
    pred[:, 0][labels == 0] += 0.2  # region 0's red channel 0.2 off: RGB distance 0.2 > 0.1
    result = region_accuracy(pred, truth, labels, lines)
    assert result.accuracy == pytest.approx(72 / 96) and result.correct == 1 and result.correct_area == 72
    pred[:, 0][labels == 0] -= 0.15  # now 0.05 off: within the threshold
    assert region_accuracy(pred, truth, labels, lines).accuracy == 1.0


def test_uint8_frames_are_read_as_unit_range():
    truth, labels, lines = _scene()
    as_bytes = (truth * 255).round().to(torch.uint8)
    assert region_accuracy(as_bytes, truth, labels, lines).accuracy == 1.0


def test_pixels_next_to_the_lines_are_excluded_by_the_margin():
    truth, labels, lines = _scene()
    pred = truth.clone()
    pred[..., 2] = 0.0  # a dark halo one pixel beside the boundary, inside region 0 (as a soft VAE edge would be)
    assert region_accuracy(pred, truth, labels, lines, margin=1).accuracy == 1.0
    unprotected = region_accuracy(pred, truth, labels, lines, margin=0)
    assert unprotected.area == 120  # every pixel off the lines: 36 + 84
    assert unprotected.correct_area == 84  # the halo is a third of region 0's 36 pixels: its mean 0.29 off
    pred[..., 1] = 0.0  # a halo two pixels wide is not hidden by a margin of one
    assert region_accuracy(pred, truth, labels, lines, margin=1).correct == 1


def test_a_region_that_lies_only_on_lines_is_not_counted():
    truth, labels, _ = _scene()
    labels[..., 9] = 2  # a one-pixel-wide region inside region 1, drawn as a line
    lines = label_boundaries(labels)  # columns 3, 4 and 8, 9, 10
    pred = truth.clone()
    pred[..., 9] = 1.0  # coloured wrong: it does not matter, it is never judged
    result = region_accuracy(pred, truth, labels, lines)
    assert result.regions == 2 and result.accuracy == 1.0  # only regions 0 and 1, away from all lines
    assert result.area == 24 + 12  # region 1 keeps column 6 only (5 and 7 are next to lines)


def test_regions_are_judged_per_frame_and_pooled_by_area():
    truth, labels, lines = _scene()
    pred = truth.clone()
    pred[:, 0][labels == 1] += 0.3  # region 1 wrong in frame 0 ...
    two_frames = region_accuracy(
        torch.cat([pred, truth]), torch.cat([truth, truth]), labels.repeat(2, 1, 1), lines.repeat(2, 1, 1)
    )
    assert two_frames.regions == 4 and two_frames.accuracy == pytest.approx((24 + 96) / 192)  # ... right in frame 1
    pooled = pool_region_accuracy(
        [region_accuracy(pred, truth, labels, lines), region_accuracy(truth, truth, labels, lines)]
    )
    assert pooled == two_frames


def test_large_label_values_and_errors():
    truth, labels, lines = _scene()
    big = labels * 60_000 + 7  # 16-bit ids far apart
    assert region_accuracy(truth, truth, big, lines).regions == 2
    everything_on_lines = torch.ones_like(lines)
    assert math.isnan(region_accuracy(truth, truth, labels, everything_on_lines).accuracy)
    with pytest.raises(InputError, match="labels"):
        region_accuracy(truth, truth, labels[..., :6], lines)
    with pytest.raises(InputError, match="line mask"):
        region_accuracy(truth, truth, labels, lines[..., :6])
