"""lvcd.io.lineart_input: polarity detection on real (derived) line art, and the hint convention.

The fixtures in tests/fixtures/io/lineart/ are XDoG line art derived from three frames of the official
LVCD test clip and downscaled to 288x160 (see make_lineart_fixtures.py): dark, anti-aliased lines and
some dark shading on white, as a user's line art would be.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from lvcd.errors import InputError
from lvcd.io.frames import load_image
from lvcd.io.lineart_input import detect_polarity, detect_sequence_polarity, lineart_to_hint

LINEART = Path(__file__).parents[1] / "fixtures" / "io" / "lineart"


@pytest.fixture(scope="module")
def real_lineart() -> list[np.ndarray]:
    files = sorted(LINEART.glob("frame_*.png"))
    assert len(files) == 3
    return [np.asarray(Image.open(path)) for path in files]


def _binarize(gray: np.ndarray) -> np.ndarray:
    return np.where(gray < 128, 0, 255).astype(np.uint8)


def _jpeg(gray: np.ndarray, quality: int = 60) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(gray).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer))


def test_fixtures_are_real_line_art(real_lineart):
    for gray in real_lineart:
        assert gray.shape == (160, 288) and gray.dtype == np.uint8
        line_fraction = float((gray < 128).mean())
        assert 0.02 < line_fraction < 0.3  # sparse lines, not a blank or a photo
        assert 0 < float(((gray > 0) & (gray < 255)).mean())  # anti-aliased: intermediate grays exist


def test_polarity_of_real_line_art_inverted_binarized_and_jpeg(real_lineart):
    for gray in real_lineart:
        assert detect_polarity(gray) == "dark-lines"
        assert detect_polarity(255 - gray) == "bright-lines"
        assert detect_polarity(_binarize(gray)) == "dark-lines"
        assert detect_polarity(255 - _binarize(gray)) == "bright-lines"
        assert detect_polarity(_jpeg(gray)) == "dark-lines"
        assert detect_polarity(_jpeg(255 - gray)) == "bright-lines"
        assert detect_polarity(np.repeat(gray[..., None], 3, axis=2)) == "dark-lines"  # RGB input


def test_polarity_of_sparse_thin_and_antialiased_lines():
    sheet = np.full((256, 256), 255, np.uint8)
    sheet[100, 20:200] = 0  # one 1-pixel line: 0.3% of the pixels
    assert detect_polarity(sheet) == "dark-lines"
    assert detect_polarity(255 - sheet) == "bright-lines"
    large = Image.new("L", (1024, 1024), 255)
    ImageDraw.Draw(large).ellipse((100, 100, 900, 900), outline=0, width=3)
    faint = np.asarray(large.resize((128, 128), Image.Resampling.BOX))  # sub-pixel line: never reaches black
    assert faint.min() > 100
    assert detect_polarity(faint) == "dark-lines"
    assert detect_polarity(255 - faint) == "bright-lines"


def test_polarity_on_noisy_gray_paper_and_blank_frames():
    paper = np.clip(np.random.default_rng(0).normal(200, 8, (128, 128)), 0, 255).astype(np.uint8)
    paper[40:42, :] = 40
    paper[:, 60] = 50
    assert detect_polarity(paper) == "dark-lines"
    assert detect_polarity(255 - paper) == "bright-lines"
    assert detect_polarity(np.full((16, 16), 255, np.uint8)) == "dark-lines"
    assert detect_polarity(np.zeros((16, 16), np.uint8)) == "bright-lines"


def test_sequence_polarity_majority_and_frame_limit(real_lineart):
    blank = np.full((160, 288), 255, np.uint8)
    assert detect_sequence_polarity([blank, *real_lineart]) == "dark-lines"
    assert detect_sequence_polarity([255 - g for g in real_lineart] + [blank]) == "bright-lines"
    mixed = [real_lineart[0], 255 - real_lineart[1], real_lineart[2]]
    assert detect_sequence_polarity(mixed) == "dark-lines"

    def frames_then_error():
        yield from [255 - g for g in real_lineart[:2]]
        raise AssertionError("read more than max_frames")

    assert detect_sequence_polarity(frames_then_error(), max_frames=2) == "bright-lines"


def test_hint_convention_on_real_line_art(real_lineart):
    gray = real_lineart[0]
    hint = lineart_to_hint(gray)
    assert hint.dtype == np.float32 and hint.shape == gray.shape
    assert 0.0 <= hint.min() and hint.max() <= 1.0
    assert np.all(hint[gray == 0] == 1.0) and np.all(hint[gray == 255] == 0.0)  # lines ~ 1 on 0
    assert float(hint.mean()) < 0.25  # mostly background
    # The official mapping, bit for bit: 1 - skt/255 on the uint8 sketch, then float32.
    assert np.array_equal(hint, (1 - gray / 255).astype(np.float32))
    assert np.array_equal(lineart_to_hint(255 - gray), hint)  # bright lines detected and mapped alike
    assert np.array_equal(lineart_to_hint(255 - gray, "bright-lines"), hint)
    assert np.array_equal(lineart_to_hint(np.repeat(gray[..., None], 3, axis=2), "dark-lines"), hint)


def test_hint_from_loaded_files_and_colour_line_art(tmp_path, real_lineart):
    path = tmp_path / "line.png"
    Image.fromarray(real_lineart[1]).save(path)
    assert np.array_equal(lineart_to_hint(load_image(path)), lineart_to_hint(real_lineart[1]))
    blue_pencil = np.full((4, 4, 3), 255, np.uint8)
    blue_pencil[1] = [0, 0, 255]  # BT.601 luma of pure blue = 0.114 * 255
    hint = lineart_to_hint(blue_pencil, "dark-lines")
    assert hint[1, 0] == pytest.approx(1 - 0.114, abs=1e-4) and hint[0, 0] == 0.0


def test_invalid_polarity_is_an_input_error():
    with pytest.raises(InputError, match="polarity"):
        lineart_to_hint(np.zeros((2, 2), np.uint8), "white-lines")  # type: ignore[arg-type]
