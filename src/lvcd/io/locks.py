"""Advisory locks (``flock``) that the kernel drops when their process dies, so a killed job never leaves one held.

Two uses: a job's work directory is locked while the job runs (a second job on it is refused), and every hidden
temporary of an atomic output is locked while it is written (a temporary whose lock is free belongs to a writer that
died, so a later run may delete it). Where ``fcntl`` is missing (Windows) locks always succeed: nothing is guarded,
nothing breaks.

    >>> fd = lock_path("work/.lvcd-work.lock")   # doctest: +SKIP
    >>> fd is None                                # another process holds it   # doctest: +SKIP
"""

from __future__ import annotations

import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None


HAS_LOCKS = fcntl is not None


def lock_waiting(fd: int) -> None:
    """Take an exclusive lock on an open descriptor, waiting while another process holds it."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX)


def try_lock(fd: int) -> bool:
    """Take an exclusive lock on an open descriptor without waiting; False when another process holds it."""
    if fcntl is None:  # pragma: no cover
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def lock_path(path: str | os.PathLike, create: bool = True) -> int | None:
    """An open descriptor of ``path`` (a file, created if missing and ``create``, or a folder) holding an exclusive
    lock, or None when another process holds it. Close the descriptor to release the lock."""
    path = Path(path)
    if path.is_dir():
        fd = os.open(path, os.O_RDONLY)
    else:
        fd = os.open(path, os.O_RDWR | (os.O_CREAT if create else 0), 0o666)
    if try_lock(fd):
        return fd
    os.close(fd)
    return None


def is_abandoned(path: str | os.PathLike) -> bool:
    """True when no live process holds a lock on ``path`` (its writer is gone). False also when it vanished."""
    try:
        fd = lock_path(path, create=False)
    except OSError:
        return False
    if fd is None:
        return False
    os.close(fd)
    return True
