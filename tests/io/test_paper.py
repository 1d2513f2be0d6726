"""Scanned line art (lvcd.io.paper): grey, grainy paper to white and ink to black; clean line art untouched."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lvcd.errors import InputError
from lvcd.hints import LineartFrames, frame_to_hint, resolve_levels
from lvcd.io.lineart_input import lineart_to_hint
from lvcd.io.paper import measure_levels, shot_levels
from lvcd.testing.drawings import scanned


def drawing(size: int = 96, seed: int = 0) -> np.ndarray:
    """Dark-lines line art: white paper, a few black anti-aliased strokes (about 5 % of the pixels)."""
    rng = np.random.default_rng(seed)
    sheet = np.full((size, size), 255.0)
    ys, xs = np.mgrid[:size, :size]
    for _ in range(4):
        cy, cx, radius = rng.uniform(20, size - 20, 2).tolist() + [rng.uniform(8, 20)]
        distance = np.abs(np.hypot(ys - cy, xs - cx) - radius)
        sheet = np.minimum(sheet, np.clip(distance - 0.5, 0, 1) * 255)
    return sheet.round().astype(np.uint8)


def test_a_scan_is_measured_and_brought_to_white_paper_and_black_ink():
    clean = drawing()
    scan = scanned(clean, paper=200, ink=40, grain=4)
    levels = measure_levels(scan)
    assert levels.paper == pytest.approx(200, abs=1) and levels.grain == pytest.approx(4, abs=0.6)
    assert levels.white == pytest.approx(levels.paper - 3 * levels.grain) and 30 <= levels.ink <= 50
    assert levels.needed and "paper 200" in levels.describe()
    hint, official = frame_to_hint(scan, "dark-lines", levels=True), lineart_to_hint(scan, "dark-lines")
    paper, lines = clean == 255, clean == 0
    assert official[paper].mean() == pytest.approx(1 - 200 / 255, abs=0.01)  # the haze levels remove
    assert hint[paper].mean() < 0.005 and (hint[paper] == 0).mean() > 0.99  # paper: white, grain gone
    assert hint[lines].mean() > 0.95  # ink: black
    assert np.abs(hint - lineart_to_hint(clean, "dark-lines")).mean() < 0.01  # about the clean drawing's hint


def test_clean_line_art_is_left_exactly_as_the_official_code_reads_it():
    clean = drawing()
    assert not measure_levels(clean).needed  # paper 255, no grain
    assert not measure_levels(scanned(clean, paper=250, ink=0, grain=1)).needed  # a good scan
    assert measure_levels(scanned(clean, paper=252, ink=0, grain=8)).needed  # white but grainy
    frames = LineartFrames([clean, clean])
    assert resolve_levels(frames, "dark-lines", "auto") is None
    binary = (clean > 128).astype(np.uint8) * 255
    assert resolve_levels(LineartFrames([binary]), "dark-lines", "auto") is None
    assert np.array_equal(frame_to_hint(clean, "dark-lines", False), (1.0 - clean / 255.0).astype(np.float32))
    forced = resolve_levels(frames, "dark-lines", "on")  # "on": the median levels, even of a clean sheet
    assert forced is not None and forced.paper == 255
    with pytest.raises(InputError, match="not one of auto, on, off"):
        resolve_levels(frames, "dark-lines", "always")


def test_every_frame_is_levelled_with_its_own_paper():
    """Scans differ in exposure: each frame's paper goes to white, whatever the shot's median."""
    clean = drawing()
    light, dark = scanned(clean, 225, 40, 3, seed=1), scanned(clean, 180, 30, 3, seed=2)
    frames = LineartFrames([light, dark, light])
    levels = resolve_levels(frames, "dark-lines", "auto")
    assert levels is not None and levels.paper == pytest.approx(225, abs=1)  # median of 225, 180, 225
    for scan in (light, dark):
        assert frame_to_hint(scan, "dark-lines", True)[clean == 255].mean() < 0.005


def test_bright_lines_and_float_frames_are_levelled_alike():
    clean = drawing()
    scan = scanned(clean, 200, 40, 4)
    dark_hint = frame_to_hint(scan, "dark-lines", True)
    assert np.allclose(frame_to_hint(255 - scan, "bright-lines", True), dark_hint, atol=1e-5)
    assert np.allclose(frame_to_hint(scan.astype(np.float32) / 255, "dark-lines", True), dark_hint, atol=1e-4)
    tensor = torch.from_numpy(scan).float()[None, None] / 255  # (N, 1, H, W) in [0, 1], as the API takes it
    assert resolve_levels(LineartFrames(tensor), "dark-lines", "auto") is not None
    rgb = np.repeat(scan[..., None], 3, axis=2)
    assert np.array_equal(frame_to_hint(rgb, "dark-lines", levels=True), frame_to_hint(scan, "dark-lines", True))


def test_a_blank_sheet_and_sparse_lines_stay_sane():
    blank = np.full((64, 64), 210, np.uint8)
    levels = measure_levels(blank)
    assert levels.ink == 0.0 and levels.white == 210.0  # no lines: nothing to stretch to black
    assert frame_to_hint(blank, "dark-lines", True).max() == 0.0
    faint = blank.copy()
    faint[32, 10:20] = 190  # pencil barely darker than the paper: not stretched to black
    assert measure_levels(faint).ink == 0.0
    assert shot_levels([blank, faint]).paper == 210.0


def test_a_photo_under_a_lamp_is_flattened_before_its_levels():
    """Paper lit from 240 down to 80 across the frame (ink at 15 % of the light): no single white point separates the
    dim paper from the bright ink; dividing by the paper's smooth brightness first does."""
    from lvcd.io.paper import UNEVEN_LIGHT, levelled_hint, paper_light

    clean = drawing(128)
    light = 240 - 160 * np.linspace(0, 1, 128)[None, :].repeat(128, axis=0)
    darkness = 1 - clean / 255.0
    noise = np.random.default_rng(0).normal(0, 3, clean.shape)
    photo = np.clip(np.rint(light * (1 - darkness) + 0.15 * light * darkness + noise), 0, 255).astype(np.uint8)
    estimate = paper_light(photo)
    assert np.abs(estimate - light)[8:-8, 8:-8].mean() < 12  # the lamp's gradient, a little above (grain maxima)
    levels = measure_levels(photo)
    assert levels.uneven >= UNEVEN_LIGHT and levels.needed and "uneven lighting" in levels.describe()
    hint = levelled_hint(photo.astype(np.float32))
    paper, lines = clean == 255, clean == 0
    for side in (slice(0, 64), slice(64, 128)):  # bright and dim halves alike
        assert hint[:, side][paper[:, side]].mean() < 0.02 and hint[:, side][lines[:, side]].mean() > 0.9


def test_an_ink_fill_on_even_paper_is_not_taken_for_shadow():
    from lvcd.io.paper import levelled_hint

    sheet = np.full((128, 128), 200, np.uint8)
    sheet[48:78, 48:78] = 30  # a filled shape under a quarter of the frame wide (black hair, a shadow area)
    assert measure_levels(sheet).uneven < 1
    hint = levelled_hint(sheet.astype(np.float32))
    assert hint[48:78, 48:78].min() == 1.0 and hint[:30].max() == 0.0


def _shaded(clean: np.ndarray, light: np.ndarray) -> np.ndarray:
    darkness = 1 - clean / 255.0
    noise = np.random.default_rng(0).normal(0, 1.5, clean.shape)
    return np.clip(np.rint(light * (1 - darkness) + 0.12 * light * darkness + noise), 0, 255).astype(np.uint8)


def test_a_white_scan_shadowed_in_a_corner_is_levelled_by_auto():
    """Clean white paper (250, little grain) under a shadow falling to 170 in one corner: the paper's mode and grain
    look clean, the shadow is a haze up to 0.3 in the corner; light varies continuously, so auto levels it."""
    clean = drawing(192)
    ys, xs = np.mgrid[:192, :192] / 191
    scan = _shaded(clean, 250 - 80 * np.clip(1 - np.hypot(xs - 1, ys - 1) / 0.7, 0, 1) ** 1.5)
    levels = measure_levels(scan)
    assert levels.paper >= 247 and levels.grain < 4 and levels.shadow >= 30 and levels.needed
    assert "uneven lighting" in levels.describe()
    assert resolve_levels(LineartFrames([scan, scan]), "dark-lines", "auto") is not None
    corner = clean[144:, 144:] == 255
    assert lineart_to_hint(scan, "dark-lines")[144:, 144:][corner].mean() > 0.15  # the haze read as drawn
    hint = frame_to_hint(scan, "dark-lines", levels=True)
    assert hint[144:, 144:][corner].mean() < 0.01 and hint[clean == 0].mean() > 0.9


@pytest.mark.parametrize("fill", ["quadrant 220", "band 200", "two greys", "screen tone"])
def test_grey_areas_of_digital_line_art_are_not_taken_for_a_shadow(fill):
    """Digital line art on white with flat grey areas (fills, screen tones): the paper's brightness jumps between a
    few flat levels, unlike light; auto leaves it as the official code reads it."""
    clean = drawing(192)
    art = clean.copy()
    if fill == "quadrant 220":
        art[:96, :96] = np.minimum(art[:96, :96], 220)
    elif fill == "band 200":
        art[:, :64] = np.minimum(art[:, :64], 200)
    elif fill == "two greys":
        art[:64, 96:] = np.minimum(art[:64, 96:], 230)
        art[128:, :96] = np.minimum(art[128:, :96], 190)
    else:
        dots = np.where(np.add.outer(np.arange(192), np.arange(192)) % 4 == 0, 160, 255)
        art[96:] = np.minimum(art[96:], dots[96:])
    levels = measure_levels(art)
    assert levels.shadow == 0 and not levels.needed
    assert resolve_levels(LineartFrames([art]), "dark-lines", "auto") is None


@pytest.mark.parametrize("dark", ["letterbox", "left band", "quadrant"])
def test_black_bars_and_large_fills_are_ink_not_shadow(dark):
    """Clean line art with black bars or a large fill stays exactly as the official code reads it; on a scan, the
    bars stay black (they are not taken for a shadow and flattened away)."""
    h, w = 180, 320
    clean = np.full((h, w), 255, np.uint8)
    clean[60:62, 20:300] = 0
    clean[30:150, 150:152] = 0
    if dark == "letterbox":
        clean[: h // 12], clean[-(h // 12) :] = 0, 0
    elif dark == "left band":
        clean[:, : w // 8] = 0
    else:
        clean[: h // 2, : w // 2] = 0
    frames = LineartFrames([clean])
    assert resolve_levels(frames, "dark-lines", "auto") is None
    scan = scanned(clean, paper=200, ink=40, grain=4)
    assert resolve_levels(LineartFrames([scan]), "dark-lines", "auto") is not None
    hint = frame_to_hint(scan, "dark-lines", True)
    assert hint[clean == 0].mean() > 0.95 and hint[clean == 255].mean() < 0.01


def test_the_official_fixture_sketches_are_read_as_drawn():
    """The goldens of the official code (tests/fixtures/tiny) feed sketches as hints: auto must leave them alone."""
    from pathlib import Path

    from safetensors.torch import load_file

    sketches = load_file(str(Path(__file__).parents[1] / "fixtures" / "tiny" / "sample_N35.safetensors"))
    assert resolve_levels(LineartFrames(sketches["sketches_1ch"]), "bright-lines", "auto") is None


def test_auto_does_not_level_art_read_with_the_wrong_polarity():
    """Dark lines on white forced as bright-lines: the 'paper' is black (0). Levelling it ('paper 0 to white, ink 0
    to black') would be nonsense; auto leaves it, the forced polarity is the user's choice."""
    clean = drawing()
    assert resolve_levels(LineartFrames([clean]), "bright-lines", "auto") is None
    assert resolve_levels(LineartFrames([scanned(clean, 200, 40, 4)]), "dark-lines", "auto") is not None
