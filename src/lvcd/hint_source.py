"""What a work directory's hints file was made from, so that a resumed job reuses it instead of reading every
line-art frame again (a decode pass of minutes for a long 1080p shot).

The record beside ``hints.npy`` (``hints.json``) holds the sha256 of the line-art files' names and bytes, and every
setting that maps a frame to its hint (processing size plan, polarity, paper levelling, hint format, lvcd version).
The hints are reused only when all of it matches and the store is whole; anything else (line art given as arrays or
tensors, a file changed by one byte, another size) builds them afresh. Hashing reads the files' bytes, no decoding: a
few seconds for gigabytes of frames.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from tqdm.auto import tqdm

import lvcd
from lvcd.io.atomic import write_json_atomic
from lvcd.io.sizing import SizePlan

HINTS_FORMAT = 1  # raise it when what a frame's hint is changes (readers, polarity, levelling, fitting)
_CHUNK = 1 << 20
_QUIET_BYTES = 256 << 20  # files this small hash in well under a second: no progress bar


def record_path(store_path: str | Path) -> Path:
    """The record of the hints file ``store_path`` (``hints.npy`` -> ``hints.json``)."""
    return Path(store_path).with_suffix(".json")


def files_digest(files: Sequence[Path], progress: bool = True) -> str:
    """sha256 over each file's name and bytes, in order (a progress bar in bytes for large inputs)."""
    digest = hashlib.sha256()
    total = sum(path.stat().st_size for path in files)
    with tqdm(
        total=total, desc="line art check", unit="B", unit_scale=True, disable=not progress or total < _QUIET_BYTES
    ) as bar:
        for path in files:
            digest.update(json.dumps([path.name, path.stat().st_size]).encode())
            with open(path, "rb") as handle:
                while chunk := handle.read(_CHUNK):
                    digest.update(chunk)
                    bar.update(len(chunk))
    return digest.hexdigest()


def hint_record(
    files: Sequence[Path] | None, count: int, plan: SizePlan, polarity: str, levels: bool, progress: bool = True
) -> dict | None:
    """What the hints of ``count`` frames read from ``files`` are made from; None when the frames are not files (or
    a file cannot be read now: the frames' reading reports it)."""
    if not files:
        return None
    try:
        digest = files_digest(files, progress)
    except OSError:
        return None
    return {
        "format": HINTS_FORMAT,
        "lvcd": lvcd.__version__,
        "files_sha256": digest,
        "count": count,
        "plan": {name: list(value) for name, value in asdict(plan).items()},
        "polarity": polarity,
        "levels": bool(levels),
    }


def recorded(store_path: str | Path) -> dict | None:
    """The record kept beside a hints file, None when there is none or it cannot be read."""
    try:
        document = json.loads(record_path(store_path).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def forget(store_path: str | Path) -> None:
    """Remove the record before its hints file is rewritten (a store cut short is never taken for a recorded one)."""
    record_path(store_path).unlink(missing_ok=True)


def remember(store_path: str | Path, record: dict | None) -> None:
    """Keep ``record`` beside a hints file just written whole (nothing when the frames were not files)."""
    if record is not None:
        write_json_atomic(record_path(store_path), record)
