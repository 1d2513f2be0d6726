"""LVCD nodes for ComfyUI: load the official weights, colorize a batch of line art from one coloured frame, extract
line art. Link or copy this folder into ``ComfyUI/custom_nodes/`` (see README.md in this folder).

Importing the pack does no work: the lvcd library (and the weights) are loaded when a node runs. When the library is
not installed in ComfyUI's Python but this folder sits in a clone of the lvcd repository, the clone's ``src`` is used.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path


def _library_source(pack_dir: Path) -> Path | None:
    """The ``src`` folder of the lvcd clone this pack lives in, when ``lvcd`` is not importable otherwise."""
    if importlib.util.find_spec("lvcd") is not None:
        return None
    source = pack_dir.resolve().parent / "src"
    return source if (source / "lvcd" / "__init__.py").is_file() else None


_source = _library_source(Path(__file__).parent)
if _source is not None:
    sys.path.append(str(_source))

from .helpers import LIBRARY_MISSING  # noqa: E402
from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402

if importlib.util.find_spec("lvcd") is None:  # said in ComfyUI's start-up log; each node says it again when run
    logging.getLogger(__name__).warning("LVCD nodes: %s.", LIBRARY_MISSING)

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
