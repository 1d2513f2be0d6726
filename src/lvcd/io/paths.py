"""Where an output may go: never onto, into or around an input, and only where writing can succeed.

Checked before any slow work (loading weights, decoding video), so a mistake costs nothing. Inputs are compared by
resolved path *and* by inode (a hard link or a second mount of the same file is the same file), folders included:
an output inside an input folder, or a folder output that would replace a folder holding an input, is refused.

    >>> check_not_input("out.mp4", {"--reference": "ref.png"})          # doctest: +SKIP
    >>> check_output_location("renders/shot.mp4")                      # doctest: +SKIP
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path

from lvcd.errors import InputError


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _resolved(path: Path, named: str) -> Path:
    """``path.resolve()``; a link loop on the way (RuntimeError or ELOOP) is InputError naming ``named``."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):
        raise InputError(
            f"{named}: a link on this path leads back to itself (a link loop); fix the link or choose another path."
        ) from None


def _dangling_link(target: Path) -> Path | None:
    """The first of ``target`` and its folders that is a link to nothing (or a link loop), else None."""
    for path in (target, *target.parents):
        if path.is_symlink() and not path.exists():
            return path
    return None


def is_within(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it, links resolved."""
    return _is_within(_resolved(Path(path).expanduser(), str(path)), _resolved(Path(folder).expanduser(), str(folder)))


def check_not_input(
    target: str | os.PathLike,
    inputs: Mapping[str, object] | Iterable[object],
    option: str = "--output",
    contains_ok: bool = False,
) -> None:
    """Refuse an output that is, is inside, or (unless ``contains_ok``: an output folder that is added to, never
    replaced) contains one of ``inputs`` (``{option name: path}`` or paths; None entries are skipped). The one-line
    error names both and says what to do."""
    named = inputs.items() if isinstance(inputs, Mapping) else (("an input", given) for given in inputs)
    target = Path(target).expanduser()
    resolved = _resolved(target, f"{option} {target}")
    for name, given in named:
        if given is None or not isinstance(given, (str, os.PathLike)):
            continue
        source = Path(given).expanduser()
        what = f"{name} {source}" if name != "an input" else f"the input {source}"
        source_resolved = _resolved(source, what)
        if _is_within(resolved, source_resolved) or _same_file(target, source):
            raise InputError(
                f"{option} {target} would write onto or into {what}; lvcd never writes its inputs. "
                "Choose another output path."
            )
        if not contains_ok and _is_within(source_resolved, resolved):
            raise InputError(
                f"{option} {target} would replace a folder that holds {what}; lvcd never deletes its inputs. "
                "Choose another output path."
            )


def check_output_location(target: str | os.PathLike, option: str = "--output") -> None:
    """Refuse an output whose folder cannot be created or written (a file in the way, a read-only or immutable
    folder, no permission), by creating and deleting one hidden probe file there, and an output on a path through a
    link to nothing (or a link loop)."""
    target = Path(target).expanduser()
    dangling = _dangling_link(target)
    if dangling is not None:  # writing through it would create folders wherever it points
        _resolved(dangling, f"{option} {target}")  # a link loop is said as one
        raise InputError(
            f"{option} {target}: {dangling} is a link to {os.readlink(dangling)}, which does not exist; give the "
            "path it should lead to, or remove the link."
        )
    folder = target.parent
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    if not folder.is_dir():
        raise InputError(f"{option} {target}: {folder} is a file, not a folder; choose another output path.")
    probe = folder / f".lvcd-probe-{uuid.uuid4().hex[:8]}"
    try:
        os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        os.unlink(probe)
    except OSError as err:
        reason = err.strerror or str(err)
        raise InputError(
            f"{option} {target}: cannot write in {folder} ({reason}); choose a writable output location."
        ) from None
