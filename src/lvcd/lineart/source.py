"""Line art extracted on the fly from a sequence of colour frames, as a frame source the pipeline takes.

    >>> from lvcd.io import FrameSource                                               # doctest: +SKIP
    >>> lineart = ExtractedLineart(FrameSource.open("shot.mp4"), get_extractor("xdog"))   # doctest: +SKIP
    >>> LVCDPipeline(...)("ref.png", lineart, polarity="dark-lines")                   # doctest: +SKIP

``LVCDPipeline(..., extract_lineart="informative")`` does this for you.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from lvcd.io.images import to_rgb_uint8
from lvcd.lineart.extractor import LineartExtractor


class ExtractedLineart:
    """The line art (HxW uint8, dark lines on white) of a colour source's frames, extracted one frame at a time as
    they are read, so a long shot never sits in memory.

    ``source``: any sized, re-iterable sequence of images with ``size_hw`` (a :class:`lvcd.io.FrameSource`,
    :class:`lvcd.hints.LineartFrames`, ...). Its ``paths`` (or ``path``) and ``fps`` are passed on.
    """

    def __init__(self, source, extractor: LineartExtractor):
        self.source, self.extractor = source, extractor
        self.size_hw = tuple(source.size_hw)
        self.fps = getattr(source, "fps", None)
        paths = list(getattr(source, "paths", None) or [])
        if not paths and getattr(source, "path", None):
            paths = [source.path]
        self.paths = [Path(p) for p in paths]
        self.names = getattr(source, "names", None)

    def __len__(self) -> int:
        return len(self.source)

    def __iter__(self) -> Iterator[np.ndarray]:
        return (self.extractor(to_rgb_uint8(frame)) for frame in self.source)
