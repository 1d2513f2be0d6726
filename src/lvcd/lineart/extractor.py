"""Line-art extraction from colour frames, with the official detector's call semantics.

LVCD's notebook calls ControlNet's ``LineartDetector(img, coarse=False)``: uint8 RGB -> /255 -> (1, 3, H, W) float
-> informative-drawings generator -> x255 -> clip -> uint8 HxW (dark lines ~0 on white ~255). The colorizer then
uses ``1 - lines/255``. :class:`LineartExtractor` reproduces that call exactly, with one improvement: the network
needs H and W to be multiples of 4, so other sizes are reflect-padded (bottom/right) and cropped back instead of
failing. For multiples of 4 nothing is padded and the result equals the official one bit for bit.

    >>> extractor = get_extractor("informative", weights="sk_model.pth")   # doctest: +SKIP
    >>> lines = extractor(rgb)           # HxWx3 uint8 -> HxW uint8        # doctest: +SKIP
    >>> batch = extractor.batch(frames)  # (N,3,H,W) [0,1] -> (N,1,H,W) [0,1]   # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lvcd.devices import require_device
from lvcd.errors import InputError, WeightsError, setting
from lvcd.lineart.informative import (
    DOWNLOAD_HINT,
    InformativeDrawingsGenerator,
    check_informative_weights,
    load_informative_drawings,
)
from lvcd.lineart.xdog import xdog_tensor

METHODS = ("informative", "informative-coarse", "xdog")
WEIGHT_FILES = {"informative": "sk_model.pth", "informative-coarse": "sk_model2.pth"}
WEIGHTS_ENV_VAR = "LVCD_LINEART_WEIGHTS"
HF_REPO = "lllyasviel/Annotators"

# The notebook extracts with coarse=False; the training-set sketch script is not published (spec §7.13), so
# only the fine informative-drawings model is known to match what LVCD saw in training.
_DISTRIBUTION_WARNINGS = {
    "informative-coarse": (
        "line art from the coarse model (sk_model2.pth) may differ from LVCD's training line art "
        "(the official notebook uses the fine sk_model.pth); expect somewhat lower colorization quality."
    ),
    "xdog": (
        "xdog line art is outside LVCD's training distribution (the model was trained on informative-drawings "
        "line art, sk_model.pth); expect lower colorization quality. Use {informative} with sk_model.pth "
        "for the best results."
    ),
}

_MULTIPLE = 4  # two stride-2 stages
_MIN_SIDE = 8  # keeps the 1/4-resolution bottleneck >= 2 px, which its reflection pads need


def default_weights_dir() -> Path:
    """``$XDG_CACHE_HOME/lvcd/lineart`` (default ``~/.cache/lvcd/lineart``), searched for sk_model*.pth."""
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "lvcd" / "lineart"


def _huggingface_cached(filename: str) -> Path | None:
    """The file if a previous ``hf download lllyasviel/Annotators`` left it in the HF cache (offline)."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(HF_REPO, filename)
    return Path(found) if isinstance(found, str) and Path(found).is_file() else None


# How a caller names the weights and the method in its messages (lvcd.errors.setting): a command's flags, or
# templates that put the value in ("{}"). The library's default is worded for Python callers of get_extractor and of
# LVCDPipeline(extract_lineart=...) alike.
OPTIONS = ("weights={}", "line-art method {!r}")
LINEART_CLI_OPTIONS = ("--weights", "--method")  # `lvcd lineart`; `lvcd colorize` has --lineart-weights, ...


def distribution_warning(method: str, options: tuple[str, str] = OPTIONS) -> str | None:
    """Why the line art of ``method`` is outside LVCD's training distribution (None for "informative"), advising the
    in-distribution method in the caller's ``options``."""
    warning = _DISTRIBUTION_WARNINGS.get(method)
    return warning and warning.format(informative=setting(options[1], "informative"))


def resolve_weights(method: str, weights: str | os.PathLike | None = None, options: tuple[str, str] = OPTIONS) -> Path:
    """Where the weights of ``method`` are: ``weights`` (file or folder), else $LVCD_LINEART_WEIGHTS (file or
    folder), else the default cache folder, else the Hugging Face cache. Raises WeightsError if none has them, naming
    the caller's ``options`` (how it names the weights and the method: :func:`lvcd.errors.setting`)."""
    filename = WEIGHT_FILES[method]
    if weights is not None:
        path = Path(weights).expanduser()
        return path / filename if path.is_dir() else path
    from_env = os.environ.get(WEIGHTS_ENV_VAR)
    if from_env:
        path = Path(from_env).expanduser()
        path = path / filename if path.is_dir() else path
        if not path.is_file():
            state = "which is not a file" if path.exists() else "which does not exist"
            raise WeightsError(
                f"${WEIGHTS_ENV_VAR} points to {path}, {state}. {DOWNLOAD_HINT}, or pass {setting(options[0], 'PATH')}."
            )
        return path
    searched = default_weights_dir() / filename
    if searched.is_file():
        return searched
    cached = _huggingface_cached(filename)
    if cached is not None:
        return cached
    raise WeightsError(
        f"No weights for line-art method '{method}': {filename} was not found (looked in {searched} and the "
        f"Hugging Face cache of {HF_REPO}). {DOWNLOAD_HINT}, then pass {setting(options[0], 'PATH')} (or set "
        f"${WEIGHTS_ENV_VAR}, or put it in {searched.parent}). Without weights, {setting(options[1], 'xdog')} works "
        "but its line art is outside LVCD's training distribution, so colorization quality is lower."
    )


def _pad_for_network(images: torch.Tensor) -> torch.Tensor:
    """Pad (N, C, H, W) at the bottom/right to multiples of 4 (at least 8): reflect, or replicate if too small."""
    height, width = images.shape[-2:]
    pad_h = max(-(-height // _MULTIPLE) * _MULTIPLE, _MIN_SIDE) - height
    pad_w = max(-(-width // _MULTIPLE) * _MULTIPLE, _MIN_SIDE) - width
    if pad_h == 0 and pad_w == 0:
        return images
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(images, (0, pad_w, 0, pad_h), mode=mode)


class LineartExtractor:
    """Colour frames -> line art, dark lines on white, by one of :data:`METHODS`. Build with :func:`get_extractor`.

    Attributes:
        method: "informative" | "informative-coarse" | "xdog".
        in_distribution: whether this line art matches what LVCD was trained on (only "informative").
        warning: why it does not, or None.
        device: where the network runs and where :meth:`batch` returns its result.
    """

    def __init__(
        self,
        method: str,
        model: InformativeDrawingsGenerator | None = None,
        device: str | torch.device = "cpu",
        chunk_size: int = 8,
    ) -> None:
        if method not in METHODS:
            raise InputError(f"Unknown line-art method {method!r}; choose one of {', '.join(METHODS)}.")
        if (model is None) != (method == "xdog"):
            raise ValueError(f"method {method!r} {'takes no' if method == 'xdog' else 'needs a'} generator model")
        self.method = method
        self.device = require_device(device)
        self.model = model.to(self.device).eval() if model is not None else None
        self.in_distribution = method == "informative"
        self.warning = distribution_warning(method)
        self.chunk_size = chunk_size

    def __repr__(self) -> str:
        return f"LineartExtractor(method={self.method!r}, device={str(self.device)!r})"

    @torch.no_grad()  # not inference_mode: callers may modify batch() results in place
    def _run(self, rgb01: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) float32 in [0, 1] on self.device -> (N, 1, H, W) in [0, 1]."""
        if self.model is None:
            return xdog_tensor(rgb01)
        height, width = rgb01.shape[-2:]
        return self.model(_pad_for_network(rgb01))[..., :height, :width]

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        """HxWx3 uint8 RGB -> HxW uint8 line art, dark lines (~0) on white (~255), any H and W."""
        if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            shape = getattr(rgb, "shape", None)
            dtype = getattr(rgb, "dtype", type(rgb).__name__)
            raise InputError(
                f"Line-art extraction expects an HxWx3 uint8 RGB image, got shape {shape} dtype {dtype}; "
                "convert with PIL Image.convert('RGB') / np.asarray."
            )
        # Same order of operations as the official detector, so multiples of 4 match it exactly.
        image = torch.from_numpy(np.ascontiguousarray(rgb)).float().to(self.device) / 255.0
        lines = self._run(image.permute(2, 0, 1)[None])[0, 0]
        return (lines.cpu().float().numpy() * 255.0).clip(0, 255).astype(np.uint8)

    def batch(self, frames: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) float RGB in [0, 1] -> (N, 1, H, W) float in [0, 1], dark lines on white, on self.device.

        Not quantized to uint8 (for metrics). Runs ``chunk_size`` frames at a time; instance norm is per frame,
        so chunking does not change the result.
        """
        if not isinstance(frames, torch.Tensor) or frames.ndim != 4 or frames.shape[1] != 3:
            raise InputError(f"batch() expects an (N, 3, H, W) tensor, got {getattr(frames, 'shape', type(frames))}")
        if not frames.is_floating_point():
            raise InputError(f"batch() expects float RGB in [0, 1], got dtype {frames.dtype}; divide uint8 by 255.")
        frames = frames.to(self.device, torch.float32)
        if frames.numel() and (frames.min() < -1e-3 or frames.max() > 1 + 1e-3):
            raise InputError(
                f"batch() expects RGB in [0, 1], got values in [{frames.min().item():.3g}, {frames.max().item():.3g}]; "
                "map [-1, 1] with (x + 1) / 2 and [0, 255] with x / 255."
            )
        chunks = [self._run(chunk) for chunk in frames.split(max(1, self.chunk_size))]
        if not chunks:
            return frames.new_empty((0, 1, *frames.shape[-2:]))
        return torch.cat(chunks)


def check_method(
    method: str, weights: str | os.PathLike | None = None, options: tuple[str, str] = OPTIONS
) -> Path | None:
    """``method`` one of :data:`METHODS` and, for a network, its weights file found (``resolve_weights``) and checked
    from its header (:func:`check_informative_weights`: readable, and the generator's, not another network's): the
    file, or None for a method without weights. No network is built and no tensor read (seconds); one-line errors
    name the caller's ``options`` (:func:`lvcd.errors.setting`)."""
    if method not in METHODS:
        given = f"{options[1]} {method!r}" if options[1].startswith("--") else setting(options[1], method)  # quoted
        raise InputError(f"{given} is not one of {', '.join(METHODS)}.")
    if method not in WEIGHT_FILES:
        return None
    path = resolve_weights(method, weights, options)
    if not path.is_file():
        state = "is a folder" if path.is_dir() else "does not exist"
        raise WeightsError(
            f"{setting(options[0], path)} {state}: give {WEIGHT_FILES[method]} or the folder holding it."
        )
    check_informative_weights(path)
    return path


def get_extractor(
    method: str = "informative",
    weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    options: tuple[str, str] = OPTIONS,
) -> LineartExtractor:
    """A ready :class:`LineartExtractor`. "informative" loads sk_model.pth, "informative-coarse" sk_model2.pth,
    from ``weights`` (a file or a folder holding it), else $LVCD_LINEART_WEIGHTS, else ``~/.cache/lvcd/lineart/``,
    else the Hugging Face cache; "xdog" needs no weights (``weights`` is ignored) but is outside LVCD's training
    distribution. Raises WeightsError when the weights are missing or wrong, InputError for a bad method/device
    (before anything is read); messages and the warning name the caller's ``options`` (how it names the weights and
    the method, :func:`lvcd.errors.setting`: Python's ``weights=`` by default, a command passes its flags).

        >>> extractor = get_extractor("xdog")
        >>> extractor.in_distribution
        False
    """
    device = require_device(device)  # before the weights are looked for: the cheaper mistake first
    path = check_method(method, weights, options)
    if path is None:
        extractor = LineartExtractor(method, device=device)
    else:
        extractor = LineartExtractor(method, load_informative_drawings(path, device=device), device=device)
    extractor.warning = distribution_warning(method, options)  # in the caller's own words
    return extractor
