"""lvcd: line-art video colorization with diffusion models (LVCD, SIGGRAPH Asia 2024).

>>> from lvcd import LVCDPipeline                                   # doctest: +SKIP
>>> pipe = LVCDPipeline.from_single_file("svd.safetensors", "lvcd.ckpt")  # doctest: +SKIP
>>> result = pipe(reference_image, lineart_frames)                   # doctest: +SKIP
>>> result.frames.shape                 # (N, 3, H, W) float32 in [0, 1]   # doctest: +SKIP

Errors a caller can catch: ``lvcd.LVCDError`` (every one-line error of lvcd), its kinds ``InputError`` (an input or
option) and ``WeightsError`` (a weights file).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = [
    "ColorizeResult",
    "InputError",
    "LVCDConfig",
    "LVCDError",
    "LVCDPipeline",
    "SamplingProgress",
    "WeightsError",
    "__version__",
    "get_config",
]

_FROM = {  # name -> the module that holds it, imported on first use
    "LVCDPipeline": "lvcd.pipeline",
    "ColorizeResult": "lvcd.result",
    "SamplingProgress": "lvcd.pipeline",
    "LVCDConfig": "lvcd.config",
    "get_config": "lvcd.config",
    "LVCDError": "lvcd.errors",
    "InputError": "lvcd.errors",
    "WeightsError": "lvcd.errors",
}


def __getattr__(name: str):
    # Lazy imports keep `import lvcd` and the CLI's --help fast (no torch import until needed).
    if name in _FROM:
        import importlib

        return getattr(importlib.import_module(_FROM[name]), name)
    raise AttributeError(f"module 'lvcd' has no attribute {name!r}")
