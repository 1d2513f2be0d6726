"""PyAV, imported on first use. Only video files need it: ``import lvcd``, the CLI, image folders, training and the
benchmarks start without it, so they also run where it is missing (a bare GPU machine) and ``lvcd --help`` is fast.

    >>> av = pyav()   # doctest: +SKIP
    >>> container = av.open("shot.mp4")   # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from types import ModuleType

from lvcd.errors import InputError


def pyav() -> ModuleType:
    """The ``av`` module, or a one-line error saying how to get it."""
    try:
        return importlib.import_module("av")
    except ImportError as err:
        raise InputError(
            "Reading or writing video files needs PyAV: pip install av (folders of images work without it)."
        ) from err


def av_errors() -> tuple[type[BaseException], ...]:
    """What PyAV raises for a file it cannot open, decode or write."""
    return (pyav().error.FFmpegError, OSError, ValueError, RuntimeError)
