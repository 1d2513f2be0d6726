"""lvcd: line-art video colorization with diffusion models (LVCD, SIGGRAPH Asia 2024).

>>> from lvcd import LVCDPipeline                                   # doctest: +SKIP
>>> pipe = LVCDPipeline.from_single_file("svd.safetensors", "lvcd.ckpt")  # doctest: +SKIP
>>> result = pipe(reference_image, lineart_frames)                   # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["LVCDPipeline", "LVCDConfig", "get_config", "__version__"]


def __getattr__(name: str):
    # Lazy imports keep `import lvcd` and the CLI's --help fast (no torch import until needed).
    if name == "LVCDPipeline":
        from lvcd.pipeline import LVCDPipeline

        return LVCDPipeline
    if name in ("LVCDConfig", "get_config"):
        from lvcd import config

        return getattr(config, name)
    raise AttributeError(f"module 'lvcd' has no attribute {name!r}")
