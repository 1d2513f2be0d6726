"""Line-art extraction: the informative-drawings network LVCD was trained with, and a weight-free XDoG fallback.

>>> from lvcd.lineart import get_extractor
>>> extractor = get_extractor("xdog")           # or "informative" with weights="sk_model.pth"
>>> import numpy as np
>>> extractor(np.full((16, 16, 3), 255, np.uint8)).min()   # a blank frame has no lines
np.uint8(255)
"""

from __future__ import annotations

from lvcd.lineart.extractor import (
    METHODS,
    WEIGHT_FILES,
    WEIGHTS_ENV_VAR,
    LineartExtractor,
    default_weights_dir,
    get_extractor,
    resolve_weights,
)
from lvcd.lineart.informative import InformativeDrawingsGenerator, load_informative_drawings
from lvcd.lineart.source import ExtractedLineart
from lvcd.lineart.xdog import xdog, xdog_tensor

__all__ = [
    "METHODS",
    "WEIGHT_FILES",
    "WEIGHTS_ENV_VAR",
    "ExtractedLineart",
    "InformativeDrawingsGenerator",
    "LineartExtractor",
    "default_weights_dir",
    "get_extractor",
    "load_informative_drawings",
    "resolve_weights",
    "xdog",
    "xdog_tensor",
]
