"""EDMD: the paper's form (generated-frame sketch vs the input line art) and the edmd_gt variant (vs the
ground truth's sketch), on constructed cases with hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lvcd.errors import InputError
from lvcd.metrics.edmd import distance_map, edmd_gt_per_frame, edmd_per_frame, lineart_to_sketch

from .synthetic import dark_line_sketch, line_drawing, to_float


def _vertical_line(column: int, height: int = 6, width: int = 8) -> torch.Tensor:
    """(1, 3, H, W) float: one black full-height line at ``column`` on white."""
    image = torch.ones(1, 3, height, width)
    image[..., column] = 0.0
    return image


def _thick_line_sketch(frames: torch.Tensor) -> torch.Tensor:
    """An extractor whose style differs from the input line art: every line 3 px wide (a min-filter of the luma)."""
    return -F.max_pool2d(-frames.mean(dim=1, keepdim=True), kernel_size=3, stride=1, padding=1)


def test_distance_map_of_a_single_point():
    lines = np.zeros((5, 7), bool)
    lines[2, 3] = True
    distances = distance_map(lines)
    assert distances[2, 3] == 0.0
    assert distances[0, 0] == pytest.approx(math.hypot(2, 3))
    assert distance_map(np.zeros((3, 4), bool)).min() == pytest.approx(5.0)  # no lines: the diagonal everywhere


def test_edmd_paper_form_hand_computed_against_the_input_line_art():
    """Input line at column 2, generated line at column 4 of 8: distance maps |x-2| and |x-4| differ by
    -2,-2,-2,0,2,2,2,2 along a row, so EDMD = sqrt(28/8)."""
    lineart = torch.full((1, 6, 8), 255, dtype=torch.uint8)
    lineart[..., 2] = 0
    pred = _vertical_line(4)
    assert edmd_per_frame(pred, lineart, dark_line_sketch)[0] == pytest.approx(math.sqrt(3.5))
    white_on_black = 255 - lineart  # either polarity of line art is accepted
    assert edmd_per_frame(pred, white_on_black, dark_line_sketch)[0] == pytest.approx(math.sqrt(3.5))
    assert edmd_per_frame(_vertical_line(2), lineart, dark_line_sketch)[0] == 0.0  # lines where the input has them


def test_edmd_gt_variant_hand_computed_against_the_ground_truth_sketch():
    pred, gt = _vertical_line(4), _vertical_line(2)
    assert edmd_gt_per_frame(pred, gt, dark_line_sketch)[0] == pytest.approx(math.sqrt(3.5))
    assert edmd_gt_per_frame(gt, gt, dark_line_sketch)[0] == 0.0


def test_edmd_variants_differ_by_what_the_extractor_adds():
    """A perfect frame scores 0 in edmd_gt whatever the extractor (its style cancels); the paper's form keeps the
    gap between the extractor's lines (3 px wide here) and the input line art's (1 px): a floor above 0."""
    gt = _vertical_line(3)
    lineart = gt[:, :1]
    assert edmd_gt_per_frame(gt, gt, _thick_line_sketch)[0] == 0.0
    floor = edmd_per_frame(gt, lineart, _thick_line_sketch)[0]
    assert floor > 0
    assert edmd_per_frame(_vertical_line(6), lineart, _thick_line_sketch)[0] > floor  # misplaced lines: above it


def test_edmd_grows_with_misplaced_lines():
    lineart = to_float(line_drawing()[None])
    values = [edmd_per_frame(to_float(line_drawing(offset=k)[None]), lineart, dark_line_sketch)[0] for k in (1, 3, 6)]
    assert 0 < values[0] < values[1] < values[2]
    blank = torch.ones_like(lineart)  # all lines missing
    assert edmd_per_frame(blank, lineart, dark_line_sketch)[0] > values[2]


def test_edmd_identical_frames_is_zero_in_both_forms():
    frames = to_float(np.stack([line_drawing(offset=k) for k in range(3)]))
    assert edmd_gt_per_frame(frames, frames, dark_line_sketch).tolist() == [0.0, 0.0, 0.0]
    assert edmd_per_frame(frames, frames, dark_line_sketch).tolist() == [0.0, 0.0, 0.0]


def test_edmd_accepts_an_extractor_with_batch_method():
    class Extractor:
        def batch(self, frames):
            return dark_line_sketch(frames)

    gt = to_float(line_drawing()[None])
    pred = to_float(line_drawing(offset=2)[None])
    assert edmd_gt_per_frame(pred, gt, Extractor())[0] == edmd_gt_per_frame(pred, gt, dark_line_sketch)[0]
    assert edmd_per_frame(pred, gt, Extractor())[0] == edmd_per_frame(pred, gt, dark_line_sketch)[0]


def test_edmd_input_errors():
    pred = _vertical_line(2).expand(2, -1, -1, -1)
    with pytest.raises(InputError, match="one line-art frame per generated frame"):
        edmd_per_frame(pred, _vertical_line(2), dark_line_sketch)
    with pytest.raises(InputError, match="one shape"):
        edmd_gt_per_frame(pred, _vertical_line(2), dark_line_sketch)


def test_lineart_polarity_is_normalised():
    dark_on_white = to_float(line_drawing()[None])
    assert torch.equal(lineart_to_sketch(dark_on_white), lineart_to_sketch(1.0 - dark_on_white))
