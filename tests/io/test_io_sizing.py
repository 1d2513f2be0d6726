"""lvcd.io.sizing: processing size plans for any frame size, fitting, padding and restoring."""

from __future__ import annotations

import numpy as np
import pytest

from lvcd.errors import InputError
from lvcd.io.sizing import fit_hint, fit_image, plan_size, restore


def _smooth_rgb(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    return np.stack(
        [255 * x / max(width - 1, 1), 255 * y / max(height - 1, 1), 128 + 60 * np.sin(x / 17.0)], axis=-1
    ).astype(np.uint8)


def test_trained_size_is_identity():
    plan = plan_size((320, 576))
    assert plan.model_hw == plan.content_hw == plan.input_hw == (320, 576)
    assert plan.offset_yx == (0, 0) and plan.is_identity
    image = _smooth_rgb(320, 576)
    hint = np.random.default_rng(0).random((320, 576), dtype=np.float32)
    assert np.array_equal(fit_image(image, plan), image)
    assert np.array_equal(fit_hint(hint, plan), hint)
    assert np.array_equal(restore(image, plan), image)


@pytest.mark.parametrize("input_hw", [(333, 500), (1080, 1920), (500, 333), (720, 1280), (100, 2000), (31, 47)])
def test_plans_keep_aspect_with_multiples_of_64(input_hw):
    plan = plan_size(input_hw)
    (model_h, model_w), (content_h, content_w) = plan.model_hw, plan.content_hw
    assert model_h % 64 == 0 and model_w % 64 == 0
    assert 0.5 < model_h * model_w / (320 * 576) < 2.0  # near the trained area
    assert content_h <= model_h and content_w <= model_w
    assert content_h == model_h or content_w == model_w  # scaled to fit: one side touches
    # aspect kept: the content is the input scaled by one factor, up to 1 pixel of rounding
    scale = content_h / input_hw[0] if content_h == model_h else content_w / input_hw[1]
    assert abs(content_h - input_hw[0] * scale) <= 1 and abs(content_w - input_hw[1] * scale) <= 1
    top, left = plan.offset_yx
    assert top == (model_h - content_h) // 2 and left == (model_w - content_w) // 2
    image = _smooth_rgb(*input_hw)
    fitted = fit_image(image, plan)
    assert fitted.shape == (model_h, model_w, 3) and fitted.dtype == np.uint8
    assert restore(fitted, plan).shape == (*input_hw, 3)


def test_specific_plans():
    assert plan_size((333, 500)).model_hw == (384, 576)  # 0.1% padding beats 320x576 with 17% padding
    assert plan_size((500, 333)).model_hw == (576, 384)
    plan = plan_size((1080, 1920))
    assert plan.model_hw == (320, 576) and plan.content_hw == (320, 569) and plan.offset_yx == (0, 3)


def test_fit_image_pads_by_edge_replication_or_constant():
    plan = plan_size((1080, 1920))
    image = _smooth_rgb(1080, 1920)
    fitted = fit_image(image, plan)
    left, width = plan.offset_yx[1], plan.content_hw[1]
    assert np.array_equal(fitted[:, :left], np.repeat(fitted[:, left : left + 1], left, axis=1))
    right = left + width
    assert np.array_equal(fitted[:, right:], np.repeat(fitted[:, right - 1 : right], 576 - right, axis=1))
    black = fit_image(image, plan, pad_value=0)
    assert np.all(black[:, :left] == 0) and np.array_equal(black[:, left:right], fitted[:, left:right])
    coloured = fit_image(image, plan, pad_value=(10, 20, 30))
    assert coloured[0, 0].tolist() == [10, 20, 30]


def test_fit_hint_pads_with_no_lines_and_keeps_lines():
    plan = plan_size((1080, 1920))
    hint = np.zeros((1080, 1920), np.float32)
    hint[500:503, 100:1800] = 1.0  # a 3-pixel line, downscaled about 3.4x
    fitted = fit_hint(hint, plan)
    assert fitted.shape == (320, 576) and fitted.dtype == np.float32
    assert 0.0 <= fitted.min() and fitted.max() <= 1.0
    assert fitted.max() > 0.5  # the line survives the antialiased downscale
    left = plan.offset_yx[1]
    assert np.all(fitted[:, :left] == 0) and np.all(fitted[:, left + plan.content_hw[1] :] == 0)


def test_restore_round_trip_is_close_and_exact_size():
    for input_hw in [(333, 500), (1080, 1920), (241, 399)]:
        plan = plan_size(input_hw)
        image = _smooth_rgb(*input_hw)
        restored = restore(fit_image(image, plan), plan)
        assert restored.shape == image.shape
        assert np.abs(restored.astype(int) - image).mean() < 3.0


def test_forced_size():
    plan = plan_size((1080, 1920), forced_hw=(384, 640))
    assert plan.model_hw == (384, 640) and plan.content_hw == (360, 640) and plan.offset_yx == (12, 0)
    with pytest.raises(InputError, match=r"--size 300x500.*multiples of 64.*320x512.*320x448"):
        plan_size((1080, 1920), forced_hw=(300, 500))
    with pytest.raises(InputError, match="positive"):
        plan_size((1080, 1920), forced_hw=(0, 512))


def test_wrong_shapes_are_rejected():
    plan = plan_size((333, 500))
    with pytest.raises(ValueError, match="fit_image"):
        fit_image(np.zeros((320, 576, 3), np.uint8), plan)
    with pytest.raises(ValueError, match="restore"):
        restore(np.zeros((333, 500, 3), np.uint8), plan)
    with pytest.raises(InputError):
        plan_size((0, 10))


def test_parse_size_is_the_one_size_parser():
    from lvcd.io import parse_size

    assert parse_size("320x576") == parse_size("320*576") == parse_size(" 320 × 576 ") == (320, 576)
    assert parse_size("256") == parse_size(256) == (256, 256)
    assert parse_size((384, 640)) == (384, 640)
    assert parse_size(None) is None and parse_size("") is None and parse_size("AUTO") is None
    for bad in ("big", "1x2x3", "3.5x4", "-3x4", "x"):
        with pytest.raises(InputError, match="HEIGHTxWIDTH"):
            parse_size(bad)
    with pytest.raises(InputError, match="positive"):
        parse_size("0x5")
    with pytest.raises(InputError, match=r"--eval-size 16x16 is too small: at least 32"):
        parse_size("16", option="--eval-size", minimum=32)


def test_restore_takes_the_pipelines_float_tensors_too():
    import torch

    plan = plan_size((333, 500))
    image = _smooth_rgb(333, 500)
    fitted = fit_image(image, plan)
    as_tensor = restore(torch.from_numpy(fitted).permute(2, 0, 1).float() / 255, plan)
    assert as_tensor.shape == (3, 333, 500) and as_tensor.dtype == torch.float32
    assert 0 <= as_tensor.min() and as_tensor.max() <= 1
    from_array = restore(fitted, plan)
    assert np.array_equal((as_tensor * 255).round().to(torch.uint8).permute(1, 2, 0).numpy(), from_array)
