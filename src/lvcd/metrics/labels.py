"""Region label maps for the region metric, and the inputs found beside a clip of an lvcd data root.

Label maps are a folder of single-channel PNGs (8- or 16-bit, one region id per pixel), one per frame, in the
natural order of their names (as frame folders are read), at the size of the ground-truth frames; ``lvcd data
synth`` writes them as ``ROOT/label_<H>/<shot>/<frame>.png``. They are resized to the evaluation size with
nearest-neighbour sampling (ids are not blended).

    >>> labels = load_label_maps("synth/label_64/heldout_0000000", size=(64, 64))   # (T, 64, 64) int64  # doctest: +SKIP
    >>> root_inputs(Path("synth/img_64/heldout_0000000"))       # {"lineart": ..., "labels": ...}     # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from lvcd.errors import InputError
from lvcd.io.images import list_image_files

# Pillow modes of single-channel images whose pixel values are the ids themselves.
_LABEL_MODES = ("L", "P", "I", "I;16", "I;16B", "I;16L", "I;16N")
_IMAGE_DIR = re.compile(r"img_(\d+)")


def label_files(folder: str | os.PathLike) -> list[Path]:
    """The label PNGs of a clip, in natural order; a folder is required (one file per frame)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"label maps must be a folder of single-channel PNGs, one per frame; {folder} is not a folder")
    return list_image_files(folder)


def _check_mode(file: Path, mode: str) -> None:
    if mode not in _LABEL_MODES:
        raise InputError(
            f"{file}: a {mode} image is not a label map; give single-channel PNGs (8- or 16-bit, one region id per "
            "pixel) as `lvcd data synth` writes"
        )


def label_map_size(file: Path) -> tuple[int, int]:
    """(height, width) of a label file, reading only its header; a file that is not a label map is an error."""
    try:
        with Image.open(file) as image:
            size, mode = (image.height, image.width), image.mode
    except (OSError, ValueError) as err:
        raise InputError(f"{file}: cannot be read as a label map ({err})") from None
    _check_mode(file, mode)
    return size


def _read_label_map(file: Path) -> np.ndarray:
    with Image.open(file) as image:
        _check_mode(file, image.mode)
        return np.asarray(image).astype(np.int64)


def load_label_maps(folder: str | os.PathLike, size: tuple[int, int]) -> torch.Tensor:
    """A clip's label maps at the evaluation ``size``: (T, H, W) int64, nearest-neighbour resized."""
    files = label_files(folder)
    maps = [_read_label_map(files[0])]
    for file in files[1:]:
        maps.append(_read_label_map(file))
        if maps[-1].shape != maps[0].shape:
            raise InputError(
                f"{file}: label map of {maps[-1].shape[1]}x{maps[-1].shape[0]} differs from the first one's "
                f"{maps[0].shape[1]}x{maps[0].shape[0]} (width x height); all frames of a clip have one size"
            )
    labels = torch.from_numpy(np.stack(maps))
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    # float32 holds integer ids exactly up to 2**24, far above the 16-bit ids a label PNG can hold
    resized = F.interpolate(labels[:, None].float(), size=size, mode="nearest-exact")[:, 0]
    return resized.round().long()


def root_inputs(gt: str | os.PathLike) -> dict[str, Path]:
    """The line art and label maps that an lvcd data root keeps beside a ground-truth clip folder.

    For ``--gt ROOT/img_<H>/<clip>`` (the layout of ``lvcd data prepare`` and ``lvcd data synth``) this returns
    ``{"lineart": ROOT/draw_<H>/<clip>, "labels": ROOT/label_<H>/<clip>}``, each only when that folder exists;
    for any other path, nothing.
    """
    gt = Path(gt)
    match = _IMAGE_DIR.fullmatch(gt.parent.name)
    if not gt.is_dir() or match is None:
        return {}
    root, height = gt.parent.parent, match.group(1)
    found = {}
    for key, folder in (("lineart", f"draw_{height}"), ("labels", f"label_{height}")):
        candidate = root / folder / gt.name
        if candidate.is_dir():
            found[key] = candidate
    return found
