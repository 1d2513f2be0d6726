"""Atomic outputs: the one way lvcd writes a file or a folder.

The output is written under a hidden temporary name beside its target (``.NAME.partial-XXXXXXXX``) and renamed onto
the target only when complete. A crash, a kill or an exception therefore never leaves a half-written target, and an
existing target stays untouched until its replacement is complete (a file is replaced in one atomic rename; a folder
is moved aside to ``.NAME.replaced-XXXXXXXX``, the new one moved in, then the old one deleted, or put back if the move
fails). A locked record beside the moved-aside folder (``.NAME.replaced-XXXXXXXX.lvcd``: both names and inodes) says
it is lvcd's: a kill between the two moves leaves the old output there and NAME missing, and the next write of NAME
moves it back first (:func:`recover_replaced`); a kill after them leaves the old one, which that write deletes.

The temporary is locked (:mod:`lvcd.io.locks`) while it is written. An exception deletes it; a kill (SIGKILL, a
power cut) cannot, so the next write of the same target deletes the temporaries of that target whose lock is free:
their writer is dead. Temporaries of a writer still running elsewhere are left alone. Files get the mode the umask
gives a new file (never a private 0600 from a library that creates files its own way).

    >>> with atomic_output("scores.json") as temporary:               # doctest: +SKIP
    ...     temporary.write_text("{}")
    >>> write_json_atomic("config.json", {"steps": 25})                 # doctest: +SKIP
    >>> with atomic_output("frames", folder=True) as staging:          # doctest: +SKIP
    ...     (staging / "00000.png").write_bytes(png)

:class:`AtomicOutput` is the same for outputs written over a longer time (the streaming frame writers): keep it,
then ``commit()`` or ``discard()``.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import stat
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lvcd.errors import InputError
from lvcd.io.locks import HAS_LOCKS, is_abandoned, lock_path, lock_waiting

_TEMPORARY = re.compile(r"\.(?P<target>.+)\.(?P<tag>partial|replaced|creating)-[0-9a-f]{8}(?:\.[^/]*)?")
CREATING = "creating"  # the tag of a temporary for the instant before it is locked and renamed to its ``partial`` name
_CREATING_AGE = 60.0  # seconds: a ``creating`` temporary older than this was left by a writer killed in that instant
_RECORD = ".lvcd"  # the suffix of the record of a folder replacement, beside the moved-aside target
_REPLACEMENT_RECORD = re.compile(r"\.(?P<target>.+)\.replaced-[0-9a-f]{8}" + re.escape(_RECORD))


def sibling(target: Path, tag: str, suffix: str = "") -> Path:
    """A unique hidden path next to ``target``: ``.NAME.TAG-XXXXXXXX`` + ``suffix``."""
    return target.with_name(f".{target.name}.{tag}-{uuid.uuid4().hex[:8]}{suffix}")


def temporary_target(name: str, tag: str = "partial") -> str | None:
    """The target name of a temporary named by :func:`sibling` (``.out.mp4.partial-1a2b3c4d.mp4`` -> ``out.mp4``)."""
    match = _TEMPORARY.fullmatch(name)
    return match.group("target") if match and match.group("tag") == tag else None


def abandoned_temporaries(target: Path, tag: str = "partial") -> list[Path]:
    """The temporaries of ``target`` that a dead writer left behind (their lock is free)."""
    pattern = f".{glob.escape(target.name)}.{tag}-*"
    found = [p for p in target.parent.glob(pattern) if temporary_target(p.name, tag) == target.name]
    return [p for p in sorted(found) if is_abandoned(p)]


def check_no_other_writer(target: str | os.PathLike, option: str = "the output") -> None:
    """Refuse (InputError) while another live writer has a temporary of ``target`` open: two processes writing one
    output would each spend their time and the last to finish would silently win."""
    target = Path(target)
    pattern = f".{glob.escape(target.name)}.partial-*"
    busy = [p for p in target.parent.glob(pattern) if temporary_target(p.name) == target.name and not is_abandoned(p)]
    if busy:
        raise InputError(
            f"{option} {target} is being written by another process right now ({busy[0].name}); wait for it to "
            "finish, or choose another name."
        )


def remove_abandoned_temporaries(target: Path) -> list[Path]:
    """Delete the temporaries a killed writer left next to ``target``; returns them."""
    removed = abandoned_temporaries(target)
    pattern = f".{glob.escape(target.name)}.{CREATING}-*"
    for path in sorted(target.parent.glob(pattern)):  # old ones only: a young one's writer may not hold its lock yet
        with contextlib.suppress(OSError):
            old = time.time() - path.lstat().st_mtime > _CREATING_AGE
            if old and temporary_target(path.name, CREATING) == target.name and is_abandoned(path):
                removed.append(path)
    for path in removed:
        remove(path)
    return removed


def remove_abandoned_in(folder: Path) -> list[Path]:
    """Delete every temporary a killed writer left in ``folder`` (one listing of it, for writers that skip their own
    clean-up, see ``AtomicOutput(sweep=False)``); returns them."""
    removed = []
    for entry in os.scandir(folder) if folder.is_dir() else ():
        match = _TEMPORARY.fullmatch(entry.name)
        if match is None or match.group("tag") == "replaced":
            continue
        path = Path(entry.path)
        with contextlib.suppress(OSError):
            young = match.group("tag") == CREATING and time.time() - path.lstat().st_mtime <= _CREATING_AGE
            if not young and is_abandoned(path):
                removed.append(path)
    for path in removed:
        remove(path)
    return removed


def new_file_mode() -> int:
    """The mode the umask gives a new file (0o644 under the usual umask 022)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def remove(path: Path) -> None:
    """Delete a file, a link or a folder tree (only call it on paths lvcd created)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def commit_path(temporary: Path, target: Path, overwrite: bool = True) -> Path:
    """Rename a finished ``temporary`` file or folder onto ``target``.

    Raises FileExistsError, leaving ``temporary`` in place, when ``target`` exists and ``overwrite`` is false.
    """
    if not (target.exists() or target.is_symlink()):
        os.replace(temporary, target)
        return target
    if not overwrite:
        raise FileExistsError(f"{target} exists")
    if temporary.is_file() and target.is_file() and not target.is_symlink():
        os.replace(temporary, target)  # one atomic step
        return target
    # A folder (or a file/folder swap) cannot be replaced in one step: move the old target aside, move the new one
    # in, then delete the old one; if moving in fails, put the old one back. The locked record says, while it lasts,
    # that the folder aside is lvcd's: what a kill leaves is finished by the next write (recover_replaced).
    backup = sibling(target, "replaced")
    record, fd = _record_replacement(target, temporary, backup)
    try:
        os.replace(target, backup)
        try:
            os.replace(temporary, target)
        except BaseException:
            os.replace(backup, target)
            raise
        remove(backup)
    finally:
        os.close(fd)
        if not (backup.exists() or backup.is_symlink()):  # else left for recover_replaced (an interrupted clean-up)
            record.unlink(missing_ok=True)
    return target


def _identity(path: Path) -> list[int]:
    """What a rename keeps and no other file or folder on this machine shares: device and inode."""
    info = os.lstat(path)
    return [info.st_dev, info.st_ino]


def _record_replacement(target: Path, temporary: Path, backup: Path) -> tuple[Path, int]:
    """The record of a folder replacement (``backup`` + ``.lvcd``: the names, and the identities of the old target
    and of its replacement), and the descriptor that holds its lock; it appears under its name already locked (as a
    temporary does, see :class:`AtomicOutput`)."""
    record = backup.with_name(backup.name + _RECORD)
    creating = sibling(target, CREATING) if HAS_LOCKS else record
    fd = os.open(creating, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        lock_waiting(fd)
        facts = {"target": target.name, "backup": backup.name, "old": _identity(target), "new": _identity(temporary)}
        os.write(fd, json.dumps(facts).encode())
        if creating != record:
            os.rename(creating, record)
    except BaseException:
        os.close(fd)
        creating.unlink(missing_ok=True)
        raise
    return record, fd


def recover_replaced(target: str | os.PathLike) -> list[Path]:
    """Finish what a kill left of lvcd's replacements of ``target`` (see the module docstring), before it is written
    again: with ``target`` missing, its old version, moved aside, is moved back (with a warning); with ``target`` the
    replacement lvcd moved in, the old version is deleted. Only a ``.NAME.replaced-XXXXXXXX`` that a record of a dead
    writer names (a live replacement's record is locked) and whose inode it gives is touched. InputError when
    ``target`` was made anew since: which one to keep is the user's call. Lists ``target``'s folder; returns the
    folders moved back. Without locks (Windows) a dead writer cannot be told from a live one: nothing is touched."""
    target = Path(target)
    if not HAS_LOCKS:  # pragma: no cover - Windows
        return []
    pattern = f".{glob.escape(target.name)}.replaced-*{_RECORD}"
    records = [p for p in target.parent.glob(pattern) if _record_target(p.name) == target.name]
    return [target for record in sorted(records) if _finish_replacement(record, target)]


def recover_replaced_in(folder: str | os.PathLike) -> list[Path]:
    """:func:`recover_replaced` for every target in ``folder`` at once (one listing of it); returns the folders moved
    back."""
    folder = Path(folder)
    names = sorted(entry.name for entry in os.scandir(folder)) if folder.is_dir() and HAS_LOCKS else []
    targets = [(folder / name, folder / target) for name in names if (target := _record_target(name))]
    return [target for record, target in targets if _finish_replacement(record, target)]


def _record_target(name: str) -> str | None:
    match = _REPLACEMENT_RECORD.fullmatch(name)
    return match.group("target") if match else None


def _finish_replacement(record: Path, target: Path) -> bool:
    """Finish the replacement ``record`` describes when its writer is dead; True when the old target was moved back."""
    try:
        if not stat.S_ISREG(os.lstat(record).st_mode):
            return False
        fd = lock_path(record, create=False)
    except OSError:  # gone meanwhile: finished by its writer or another clean-up
        return False
    if fd is None:  # a replacement in progress
        return False
    try:
        try:
            if os.fstat(fd).st_ino != os.lstat(record).st_ino:
                return False  # finished meanwhile by another clean-up (that one's record is gone)
            facts = json.loads(os.pread(fd, 1 << 16, 0) or b"null")
        except (OSError, ValueError):
            return False
        backup = record.with_name(record.name[: -len(_RECORD)])
        if not isinstance(facts, dict) or (facts.get("target"), facts.get("backup")) != (target.name, backup.name):
            return False  # not a record lvcd wrote for this target: everything is left alone
        return _settle(facts, backup, target, record)
    finally:
        os.close(fd)


def _settle(facts: dict, backup: Path, target: Path, record: Path) -> bool:
    if not (backup.exists() or backup.is_symlink()):  # killed before moving the target aside, or after deleting it
        record.unlink()
        return False
    here = target.exists() or target.is_symlink()
    if here and _identity(target) == facts.get("new"):  # killed after moving the new one in: the old one is litter
        remove(backup)
        record.unlink()
        return False
    if here or _identity(backup) != facts.get("old"):
        what = f"{target} was made anew since" if here else f"{backup.name} is no longer the folder lvcd moved there"
        raise InputError(
            f"{target}: an interrupted replacement (an --overwrite, a checkpoint saved again) left the previous "
            f"{target.name} at {backup}, and {what}; keep the "
            f"one you want (move {backup.name} to its name, or delete it), then run again."
        )
    os.rename(backup, target)
    record.unlink()
    warnings.warn(
        f"{target}: an earlier replacement of it (an --overwrite, a checkpoint saved again) was interrupted after "
        f"moving it aside; it was moved back from {backup.name}.",
        stacklevel=2,
    )
    return True


class AtomicOutput:
    """A hidden temporary file (or, with ``folder``, an empty folder) beside ``target``, renamed onto it by
    :meth:`commit` or deleted by :meth:`discard`. Its suffix is the target's, so format sniffing by name still works.
    """

    def __init__(
        self,
        target: str | os.PathLike,
        folder: bool = False,
        overwrite: bool = True,
        tag: str = "partial",
        exclusive: bool = False,
        sweep: bool = True,
    ):
        self.target = Path(target)
        self.overwrite = overwrite
        self.target.parent.mkdir(parents=True, exist_ok=True)
        if tag == "partial" and sweep:  # listing the folder: a writer of many files there sweeps it once instead
            recover_replaced(self.target)
            remove_abandoned_temporaries(self.target)
        if exclusive:  # refuse while another process writes the same target (check_no_other_writer)
            check_no_other_writer(self.target)
        self.path = sibling(self.target, tag, "" if folder else self.target.suffix)
        # Made and locked under a name clean-ups leave alone while it is young, then renamed: a temporary is never
        # visible unlocked (a clean-up in another process would take it for a dead writer's and delete it). Without
        # locks (Windows) there is nothing to guard, and an open file could not be renamed there.
        creating = sibling(self.target, CREATING) if HAS_LOCKS else self.path
        if folder:
            creating.mkdir()
            self._lock: int | None = os.open(creating, os.O_RDONLY) if os.name == "posix" else None
        else:  # created here, with the umask's mode; writers reopen and truncate it, keeping its mode and lock
            self._lock = os.open(creating, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        if self._lock is not None:
            lock_waiting(self._lock)  # a clean-up testing the lock holds it only for an instant
        if creating != self.path:
            os.rename(creating, self.path)
        self.state = "open"  # open -> committed | discarded

    def _unlock(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def commit(self) -> Path:
        if self.state != "open":
            raise RuntimeError(f"{self.target}: the output is already {self.state}")
        if self.path.is_file() and not self.path.is_symlink():  # some libraries write 0600 files of their own
            os.chmod(self.path, new_file_mode())
        commit_path(self.path, self.target, self.overwrite)
        self.state = "committed"
        self._unlock()
        return self.target

    def discard(self) -> None:
        if self.state == "open":
            self.state = "discarded"
            try:
                remove(self.path)
            finally:
                self._unlock()


@contextmanager
def atomic_output(
    target: str | os.PathLike,
    folder: bool = False,
    overwrite: bool = True,
    exclusive: bool = False,
    sweep: bool = True,
) -> Iterator[Path]:
    """Yield the temporary path to write; on success it is renamed onto ``target``, on an exception deleted.
    ``exclusive``: refuse while another process is writing ``target`` (:func:`check_no_other_writer`); ``sweep``:
    first delete the temporaries killed writers left of ``target`` (lists its folder)."""
    output = AtomicOutput(target, folder=folder, overwrite=overwrite, exclusive=exclusive, sweep=sweep)
    try:
        yield output.path
    except BaseException:
        output.discard()
        raise
    try:
        output.commit()
    except BaseException:
        output.discard()
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes, sweep: bool = True) -> Path:
    with atomic_output(path, sweep=sweep) as temporary:
        temporary.write_bytes(data)
    return Path(path)


def write_json_atomic(
    path: str | os.PathLike, document: Any, indent: int | None = 2, allow_nan: bool = True, sweep: bool = True
) -> Path:
    """``document`` as JSON (UTF-8, a final newline); ``allow_nan=False`` refuses NaN/inf (not valid JSON)."""
    text = json.dumps(document, indent=indent, allow_nan=allow_nan) + "\n"
    return write_bytes_atomic(path, text.encode("utf-8"), sweep=sweep)
