"""The weight-free XDoG fallback: lines at edges, white flat regions, the detector's polarity."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lvcd.errors import InputError
from lvcd.lineart import get_extractor, xdog, xdog_tensor


def _shapes() -> np.ndarray:
    """96x128: a light background, a dark-red square and a mid-green square, flat fills."""
    image = np.full((96, 128, 3), (235, 225, 210), np.uint8)
    image[20:70, 16:56] = (200, 40, 40)
    image[30:80, 72:112] = (60, 170, 90)
    return image


def test_lines_at_edges_and_white_flat_regions():
    lines = xdog(_shapes())
    assert lines.dtype == np.uint8 and lines.shape == (96, 128)
    # Dark lines on each edge of the red square (the dark side of every boundary).
    assert lines[45, 14:19].min() < 64  # left edge
    assert lines[45, 53:58].min() < 64  # right edge
    assert lines[18:23, 36].min() < 64  # top edge
    # Flat interiors, whatever their brightness, and the background stay white.
    for region in (lines[30:60, 25:46], lines[40:70, 82:102], lines[85:96, 0:128], lines[0:15, 0:128]):
        assert region.min() == 255
    # Polarity: mostly white, a few dark line pixels, like the informative-drawings detector.
    assert np.median(lines) == 255 and 0.01 < (lines < 128).mean() < 0.2


def test_blank_frame_has_no_lines_and_thin_dark_strokes_stay_dark():
    assert xdog(np.full((20, 30, 3), 90, np.uint8)).min() == 255
    drawing = np.full((40, 40, 3), 250, np.uint8)
    drawing[:, 19:21] = 10  # a 2-pixel ink stroke
    lines = xdog(drawing)
    assert lines[:, 19:21].max() < 64 and lines[:, :15].min() == 255


def test_extractor_matches_function_and_is_flagged_out_of_distribution():
    extractor = get_extractor("xdog")
    assert extractor.method == "xdog" and extractor.in_distribution is False
    assert "training distribution" in extractor.warning
    image = _shapes()
    np.testing.assert_array_equal(extractor(image), xdog(image))
    frames = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    batch = extractor.batch(frames.repeat(2, 1, 1, 1))
    assert batch.shape == (2, 1, 96, 128)
    torch.testing.assert_close(batch[0], xdog_tensor(frames)[0])


def test_tiny_images_and_bad_inputs():
    assert xdog(np.zeros((2, 3, 3), np.uint8)).shape == (2, 3)
    with pytest.raises(InputError):
        xdog(np.zeros((8, 8), np.uint8))
    with pytest.raises(InputError):
        xdog(np.zeros((8, 8, 3), np.float64))
