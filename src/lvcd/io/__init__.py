"""Input and output of frames: readers, line-art conversion, size planning, atomic writers.

- :mod:`lvcd.io.atomic`: ``atomic_output``, ``AtomicOutput``, ``write_json_atomic``: the one atomic writer
- :mod:`lvcd.io.frames`: ``FrameSource``, ``load_image``, ``to_rgb_uint8``, ``list_image_files``, ``natural_key``
- :mod:`lvcd.io.lineart_input`: ``detect_polarity``, ``detect_sequence_polarity``, ``lineart_to_hint``
- :mod:`lvcd.io.manifests`: ``read_entries``, ``entry_fields``, ``entry_path``: the rules of every CSV / JSON manifest
- :mod:`lvcd.io.paper`: ``measure_levels``, ``PaperLevels``, ``LEVELS``: scanned paper to white, ink to black
- :mod:`lvcd.io.sizing`: ``SizePlan``, ``plan_size``, ``fit_image``, ``fit_hint``, ``restore``, ``parse_size``
- :mod:`lvcd.io.writers`: ``open_writer``, ``FrameWriter``, ``output_kind``
"""

from lvcd.io.atomic import AtomicOutput, atomic_output, write_json_atomic
from lvcd.io.frames import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    FrameSource,
    list_image_files,
    load_image,
    natural_key,
    to_rgb_uint8,
)
from lvcd.io.lineart_input import Polarity, detect_polarity, detect_sequence_polarity, lineart_to_hint
from lvcd.io.sizing import SizePlan, fit_hint, fit_image, parse_size, plan_size, restore
from lvcd.io.writers import FrameWriter, open_writer, output_kind

__all__ = [
    "AtomicOutput",
    "IMAGE_SUFFIXES",
    "VIDEO_SUFFIXES",
    "FrameSource",
    "FrameWriter",
    "Polarity",
    "SizePlan",
    "atomic_output",
    "detect_polarity",
    "detect_sequence_polarity",
    "fit_hint",
    "fit_image",
    "lineart_to_hint",
    "list_image_files",
    "load_image",
    "natural_key",
    "open_writer",
    "output_kind",
    "parse_size",
    "plan_size",
    "restore",
    "to_rgb_uint8",
    "write_json_atomic",
]
