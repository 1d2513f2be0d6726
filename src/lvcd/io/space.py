"""Room on disk: whether a file of a known size fits where it will be written (before the slow work that makes it),
and sizes in words."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from lvcd.errors import InputError


def human_size(num_bytes: float) -> str:
    """``1234567`` -> ``'1.23 MB'`` (decimal units, as file managers and ``df -H`` show them)."""
    for unit in ("B", "KB", "MB", "GB"):
        if num_bytes < 1000 or unit == "GB":
            return f"{num_bytes:.0f} {unit}" if unit == "B" else f"{num_bytes:.2f} {unit}"
        num_bytes /= 1000
    raise AssertionError("unreachable")


def check_free_space(target: str | os.PathLike, needed: int, what: str) -> None:
    """Refuse (one line) writing ``needed`` bytes to ``target`` when the filesystem that will hold it (and the
    atomic temporary beside it, :func:`lvcd.io.atomic_output`; an existing target is replaced only once the new file
    is complete, so it frees nothing) has less room free. A folder whose free space cannot be read is not refused."""
    folder = Path(target).expanduser().absolute().parent
    while not folder.exists() and folder != folder.parent:  # the folders atomic_output will create
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return
    if needed > free:
        raise InputError(
            f"{target}: {what} need {human_size(needed)} and {folder} has {human_size(free)} free; free "
            f"{human_size(needed - free)} there or choose another output location."
        )
