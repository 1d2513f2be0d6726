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

from .synthetic import dark_line_sketch, line_drawing, to_float, write_pngs


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


# --- input line art at its own size ----------------------------------------------------------------------------------

LINE_STEP = 40


def _grid(line: int = 1, height: int = 320, width: int = 576) -> np.ndarray:
    """(H, W, 3) uint8 line art at LVCD's 576x320: black lines ``line`` px wide every 40 px both ways, on white."""
    image = np.full((height, width, 3), 255, np.uint8)
    for x in range(20, width, LINE_STEP):
        image[:, x : x + line] = 0
    for y in range(20, height, LINE_STEP):
        image[y : y + line] = 0
    return image


def _centre_lines(size: int = 256, height: int = 320, width: int = 576) -> tuple[list[int], list[int]]:
    """Rows and columns at ``size``x``size`` whose footprints hold the centres of _grid's 1-px lines."""
    rows = [int((y + 0.5) * size / height) for y in range(20, height, LINE_STEP)]
    return rows, [int((x + 0.5) * size / width) for x in range(20, width, LINE_STEP)]


def test_one_pixel_input_lines_all_survive_the_reduction_to_the_evaluation_size(tmp_path):
    """Resized as colour frames are, then thresholded, every 1-px vertical line of 576x320 line art vanished at
    256x256 (2.25x narrower): EDMD was measured against part of the sketch."""
    from lvcd.metrics.clips import load_lineart

    folder = write_pngs(tmp_path / "lineart", _grid()[None])
    lines = load_lineart(folder, (256, 256))[0].numpy()  # (256, 256) bool
    rows, columns = _centre_lines()
    assert np.flatnonzero(lines.all(axis=0)).tolist() == columns  # 14 vertical lines, 1 px wide each
    assert np.flatnonzero(lines.all(axis=1)).tolist() == rows  # 8 horizontal ones
    inverted = load_lineart(write_pngs(tmp_path / "white_on_black", 255 - _grid()[None]), (256, 256))
    assert torch.equal(inverted[0], torch.from_numpy(lines))


def test_edmd_of_a_perfect_sketch_of_one_pixel_line_art_is_zero(tmp_path):
    """The paper's EDMD of frames whose sketch is exactly the input line art at 256x256 is 0; it was about 6 px when
    the input's vertical lines were lost."""
    from lvcd.metrics import ClipSpec, EvalSettings, MetricTools, evaluate_clips

    rows, columns = _centre_lines()
    perfect = torch.ones(1, 1, 256, 256)
    perfect[..., rows, :] = 0.0
    perfect[..., columns] = 0.0
    extractor = lambda frames: perfect.expand(frames.shape[0], -1, -1, -1)  # noqa: E731
    grid = _grid()
    folder = write_pngs(tmp_path / "lineart", np.stack([grid, grid]))
    spec = ClipSpec("grid", pred=folder, gt=folder, lineart=folder)
    report = evaluate_clips([spec], MetricTools(sketch=extractor), EvalSettings(metrics=("edmd",)), progress=False)
    assert report.clips[0].metrics["edmd"] == 0.0
    frames = torch.from_numpy(grid).permute(2, 0, 1)[None]  # the API takes line art at its own size too
    assert edmd_per_frame(F.interpolate(frames.float(), size=(256, 256)), frames, extractor).tolist() == [0.0]


@pytest.mark.parametrize("line", [3, 5])
def test_thicker_input_lines_keep_the_width_they_had(line):
    """Only lines that would vanish are restored: 3- and 5-px lines come out as resizing and thresholding made them."""
    from lvcd.metrics.clips import resize_frames
    from lvcd.metrics.linemask import line_pixels, resize_lines

    frames = torch.from_numpy(_grid(line)).permute(2, 0, 1)[None]
    before = lineart_to_sketch(resize_frames(frames, (256, 256)).float() / 255.0) < 0.5
    assert torch.equal(resize_lines(line_pixels(frames), (256, 256)), before)
