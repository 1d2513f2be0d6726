"""Any frame size and aspect -> the model's processing size, and back.

LVCD was trained at 320x576 (H x W) only; the network runs at any multiple of 64 (spec §7 item 4).
:func:`plan_size` picks a processing size of about the trained *area*, keeping the input's aspect:
the content is resized to fit inside the model size and the rest is padded, then :func:`restore` crops
the padding off and resizes back, so every output frame has exactly the user's size.

Padding choices (see :func:`fit_image`, :func:`fit_hint`):
- reference image: **edge replication** (default ``pad_value="edge"``). A constant black or white band
  would be a colour region of its own, which the model may copy into the shot, and its hard border is
  an edge feature on the content boundary; replicated edges continue the reference colours smoothly.
- line-art hint: **0** (= no lines), so the padding adds no strokes for the model to colour.

>>> plan = plan_size((1080, 1920))
>>> plan.model_hw, plan.content_hw, plan.offset_yx
((320, 576), (320, 569), (0, 3))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image

from lvcd.config import TRAIN_SIZE_HW
from lvcd.errors import InputError

# Cost of one unit of padded fraction relative to one unit of |log(area / trained area)|: a fully
# padded plan (pad fraction 1) costs as much as a 7.4x area mismatch. With it 333x500 -> 384x576
# (20% more area, 0.1% padding) beats 320x576 (17% padding).
_PAD_WEIGHT = 2.0


@dataclass(frozen=True)
class SizePlan:
    """How one shot is mapped to the model and back. All sizes are (height, width)."""

    input_hw: tuple[int, int]  # the user's frame size
    model_hw: tuple[int, int]  # processing size, multiples of `multiple`
    content_hw: tuple[int, int]  # size of the resized content inside model_hw (aspect kept)
    offset_yx: tuple[int, int]  # top-left corner of the content inside model_hw (centered padding)

    @property
    def is_identity(self) -> bool:
        """True when frames go to the model unchanged (no resize, no padding)."""
        return self.input_hw == self.model_hw == self.content_hw


def _content_fit(input_hw: tuple[int, int], model_hw: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    """Largest aspect-kept size of ``input_hw`` inside ``model_hw``, and its centered offset."""
    (height, width), (model_h, model_w) = input_hw, model_hw
    if model_h * width <= model_w * height:  # height binds
        content = (model_h, min(model_w, max(1, round(width * model_h / height))))
    else:
        content = (min(model_h, max(1, round(height * model_w / width))), model_w)
    return content, ((model_h - content[0]) // 2, (model_w - content[1]) // 2)


def _parse_positive_hw(hw: tuple[int, int], what: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in hw)
    except (TypeError, ValueError) as err:
        raise InputError(f"{what} {hw!r}: expected (height, width).") from err
    if height <= 0 or width <= 0:
        raise InputError(f"{what} {height}x{width}: height and width must be positive.")
    return height, width


def _nearest_multiples(value: int, multiple: int) -> list[int]:
    lower = max(multiple, value // multiple * multiple)
    upper = max(multiple, -(-value // multiple) * multiple)
    return sorted({lower, upper}, key=lambda v: (abs(v - value), v))


def plan_size(
    input_hw: tuple[int, int],
    target_hw: tuple[int, int] = TRAIN_SIZE_HW,
    multiple: int = 64,
    forced_hw: tuple[int, int] | None = None,
    option: str = "--size",
) -> SizePlan:
    """Plan the processing size for frames of ``input_hw``.

    Without ``forced_hw``: the model size is a pair of multiples of ``multiple`` minimizing
    ``|log(area / target area)| + 2 * padded fraction``, so the area stays near the trained one and the
    aspect is kept with little padding. An input of exactly ``target_hw`` maps to itself (no resize,
    no padding: parity with the official pipeline at 576x320).
    With ``forced_hw`` (the user's ``--size HxW``): that size, which must be multiples of ``multiple``;
    otherwise InputError naming the nearest valid sizes (and the setting as ``option`` names it).

    >>> plan_size((320, 576)).is_identity
    True
    """
    input_hw = _parse_positive_hw(input_hw, "frame size")
    if forced_hw is not None:
        forced = _parse_positive_hw(forced_hw, option)
        if forced[0] % multiple or forced[1] % multiple:
            options = [f"{h}x{w}" for h in _nearest_multiples(forced[0], multiple)
                       for w in _nearest_multiples(forced[1], multiple)]  # fmt: skip
            raise InputError(
                f"{option} {forced[0]}x{forced[1]}: height and width must be multiples of {multiple}. "
                f"Nearest valid sizes: {', '.join(options)}."
            )
        model_hw = forced
    else:
        model_hw = _search_model_size(input_hw, _parse_positive_hw(target_hw, "target size"), multiple)
    content_hw, offset_yx = _content_fit(input_hw, model_hw)
    return SizePlan(input_hw=input_hw, model_hw=model_hw, content_hw=content_hw, offset_yx=offset_yx)


def _search_model_size(input_hw: tuple[int, int], target_hw: tuple[int, int], multiple: int) -> tuple[int, int]:
    height, width = input_hw
    scale = math.sqrt(target_hw[0] * target_hw[1] / (height * width))

    def steps(ideal: float) -> list[int]:
        center = ideal / multiple
        return sorted({max(1, s) for s in range(math.floor(center) - 1, math.ceil(center) + 2)})

    best: tuple[float, int, tuple[int, int]] | None = None
    target_area = target_hw[0] * target_hw[1]
    for step_h in steps(height * scale):
        for step_w in steps(width * scale):
            model_hw = (step_h * multiple, step_w * multiple)
            content_hw, _ = _content_fit(input_hw, model_hw)
            area = model_hw[0] * model_hw[1]
            padded = 1.0 - content_hw[0] * content_hw[1] / area
            cost = abs(math.log(area / target_area)) + _PAD_WEIGHT * padded
            candidate = (round(cost, 12), area, model_hw)
            best = candidate if best is None or candidate < best else best
    assert best is not None
    return best[2]


def _resize(array: np.ndarray, size_hw: tuple[int, int], resample: Image.Resampling) -> np.ndarray:
    """Resize HxW or HxWxC (uint8 or float) with Pillow; Pillow's filters antialias when downscaling."""
    if array.shape[:2] == size_hw:
        return array.copy()
    width_height = (size_hw[1], size_hw[0])
    if array.dtype == np.uint8 and (array.ndim == 2 or array.shape[2] in (3, 4)):
        return np.asarray(Image.fromarray(array).resize(width_height, resample))
    channels = [array] if array.ndim == 2 else [array[..., c] for c in range(array.shape[2])]
    resized = [np.asarray(Image.fromarray(c.astype(np.float32)).resize(width_height, resample)) for c in channels]
    out = resized[0] if array.ndim == 2 else np.stack(resized, axis=-1)
    return (
        out.astype(array.dtype)
        if np.issubdtype(array.dtype, np.floating)
        else np.clip(np.rint(out), 0, 255).astype(array.dtype)
    )


def _pad(array: np.ndarray, plan: SizePlan, pad_value: float | tuple | Literal["edge"]) -> np.ndarray:
    (top, left), (content_h, content_w), (model_h, model_w) = plan.offset_yx, plan.content_hw, plan.model_hw
    widths = [(top, model_h - content_h - top), (left, model_w - content_w - left)] + [(0, 0)] * (array.ndim - 2)
    if pad_value == "edge":
        return np.pad(array, widths, mode="edge")
    out = np.empty((model_h, model_w, *array.shape[2:]), dtype=array.dtype)
    out[...] = np.asarray(pad_value, dtype=array.dtype)
    out[top : top + content_h, left : left + content_w] = array
    return out


def _check_shape(array: np.ndarray, expected_hw: tuple[int, int], what: str) -> None:
    if array.ndim not in (2, 3) or tuple(array.shape[:2]) != tuple(expected_hw):
        raise ValueError(f"{what}: expected an array of size {expected_hw} (H, W), got shape {array.shape}")


def fit_image(image: np.ndarray, plan: SizePlan, pad_value: float | tuple | Literal["edge"] = "edge") -> np.ndarray:
    """``input_hw`` image (HxW or HxWxC, uint8 or float) -> ``model_hw``: bicubic resize, then pad.

    ``pad_value``: ``"edge"`` (replicate the border; the default, used for the reference image) or a
    constant (a number, or one value per channel). Bicubic, antialiased by Pillow when downscaling;
    uint8 results are clipped, so there is no ringing overflow.
    """
    image = np.asarray(image)
    _check_shape(image, plan.input_hw, "fit_image")
    if plan.is_identity:
        return image.copy()
    return _pad(_resize(image, plan.content_hw, Image.Resampling.BICUBIC), plan, pad_value)


def fit_hint(hint: np.ndarray, plan: SizePlan) -> np.ndarray:
    """``input_hw`` float line map (lines ~ 1 on 0) -> ``model_hw``: bilinear antialiased resize, pad with 0.

    Bilinear (a triangle filter when downscaling, like the official torchvision ``Resize``) cannot
    overshoot, so no faint halo strokes appear beside the lines and values stay in [0, 1].
    """
    hint = np.asarray(hint)
    _check_shape(hint, plan.input_hw, "fit_hint")
    if plan.is_identity:
        return hint.copy()
    resized = np.clip(_resize(hint, plan.content_hw, Image.Resampling.BILINEAR), 0.0, 1.0)
    return _pad(resized.astype(hint.dtype, copy=False), plan, 0.0)


def restore(frame, plan: SizePlan):
    """A ``model_hw`` output frame -> crop the padding off -> resize to exactly ``input_hw`` (bicubic, antialiased).

    ``frame``: a (C, H, W) float tensor in [0, 1] (as :class:`lvcd.LVCDPipeline` makes them; the result is clamped to
    [0, 1]) or an HxWxC uint8 array (the result is rounded back to uint8). One implementation for both, in torch.
    """
    import torch
    import torch.nn.functional as F

    if not isinstance(frame, torch.Tensor):
        frame = np.asarray(frame)
        _check_shape(frame, plan.model_hw, "restore")
        tensor = torch.from_numpy(np.ascontiguousarray(frame)).float().permute(2, 0, 1) / 255.0
        restored = restore(tensor, plan)
        return (restored * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
    if frame.ndim != 3 or tuple(frame.shape[-2:]) != tuple(plan.model_hw):
        raise ValueError(f"restore: expected a (C, H, W) tensor of size {plan.model_hw}, got {tuple(frame.shape)}")
    (top, left), (height, width) = plan.offset_yx, plan.content_hw
    frame = frame[:, top : top + height, left : left + width]
    if (height, width) != plan.input_hw:
        frame = F.interpolate(frame[None], size=plan.input_hw, mode="bicubic", antialias=True, align_corners=False)[0]
    return frame.clamp(0, 1)


_SIZE_SEPARATORS = ("x", "*", "×")


def _whole(number):
    """A side given as a number: a whole float (64.0) as its int; anything else as it is (refused later)."""
    return int(number) if isinstance(number, float) and number.is_integer() else number


def parse_size(value, option: str = "--size", minimum: int = 1) -> tuple[int, int] | None:
    """A size as the user writes it -> (height, width): ``"320x576"`` (also ``320*576``, ``320×576``) -> (320, 576);
    ``"256"`` or ``256`` -> (256, 256); an (h, w) pair (also of whole floats, or a numpy array) passes through; None,
    ``""`` or ``"auto"`` -> None.

    ``option`` names the setting in errors; sides under ``minimum`` are refused.

    >>> parse_size("320x576"), parse_size("256"), parse_size("auto")
    ((320, 576), (256, 256), None)
    """
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "auto")):
        return None
    if isinstance(value, (tuple, list)) or (hasattr(value, "tolist") and getattr(value, "ndim", 0) == 1):
        parts = [_whole(part) for part in (value.tolist() if hasattr(value, "tolist") else value)]  # numpy, tensors
    else:
        text = str(value).strip().lower()
        for separator in _SIZE_SEPARATORS[1:]:
            text = text.replace(separator, "x")
        parts = [part.strip() for part in text.split("x")]
    try:
        if len(parts) not in (1, 2) or not all(str(p).isdigit() for p in parts):
            raise ValueError
        height, width = (int(parts[0]), int(parts[-1]))
    except ValueError:
        raise InputError(
            f"{option} {value!r} is not HEIGHTxWIDTH or one number for a square, e.g. 320x576 or 256."
        ) from None
    if min(height, width) < 1:
        raise InputError(f"{option} {height}x{width}: height and width must be positive.")
    if min(height, width) < minimum:
        raise InputError(f"{option} {height}x{width} is too small: at least {minimum} pixels a side.")
    return height, width
