"""Per browser session (a page): the cancel flag of its running job, the folder of its last result, and the line-art
files its field holds (so that choosing line art again replaces the files chosen before).

Kept results are bounded: a session's result folder goes when the session keeps a new one or closes, when it is older
than ``max_age_s``, or when more than ``max_kept`` are kept (the oldest first). A job run through the page's API
(``/call/run``) is a session of its own that never closes: the age and count bounds are what delete its result.
Only folders handed to :meth:`Sessions.keep_result` (and, with ``root``, inside it) are ever deleted.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class LineartField:
    """What a page's line-art field holds (server paths), as its events told it."""

    files: list[str] = field(default_factory=list)
    before: list[str] = field(default_factory=list)  # what it held before a choice replaced it
    shown: bool = False  # the page shows these files' thumbnails and note

    def grown(self, files: list[str]) -> bool:
        """``files`` are the files held with a new choice added after them."""
        return bool(self.files) and len(files) > len(self.files) and files[: len(self.files)] == self.files


class Sessions:
    """Per page: the cancel flag of its running job, the folder of its last result, its line-art field.

    ``max_kept``: the most result folders kept of sessions that are no open page (API calls: each is a session that
    never closes), oldest first; an open page keeps its one latest result until it closes or it ages out, whatever
    the API calls do; ``max_age_s``: seconds a result is kept at most (checked whenever a job starts or a result is
    kept); ``root``: the folder results are made in (a folder outside it is never deleted); ``clock``: seconds, for
    tests.
    """

    def __init__(
        self,
        max_kept: int = 32,
        max_age_s: float = 3600.0,
        root: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, threading.Event] = {}
        self._results: OrderedDict[str, tuple[Path, float]] = OrderedDict()  # oldest first: (folder, kept at)
        self.max_kept, self.max_age_s, self.root, self._clock = max(1, max_kept), max_age_s, root, clock
        self._closed: set[str] = set()  # pages gone while their job ran: a late result is deleted at once
        self._pages: set[str] = set()  # sessions of open browser pages (told by the page's load event)
        self._lineart: dict[str, LineartField] = {}

    def opened(self, session: str) -> None:
        """A browser page opened (its load event): its result is bounded by its life and by age, not by the count."""
        with self._lock:
            self._pages.add(session)

    def begin(self, session: str) -> threading.Event:
        with self._lock:
            flag = self._running[session] = threading.Event()
            stale = self._expired()
        self._delete(stale)
        return flag

    def end(self, session: str, flag: threading.Event) -> None:
        with self._lock:
            if self._running.get(session) is flag:
                del self._running[session]

    def cancel(self, session: str) -> bool:
        with self._lock:
            flag = self._running.get(session)
        if flag is not None:
            flag.set()
        return flag is not None

    def keep_result(self, session: str, folder: Path) -> None:
        with self._lock:
            if session in self._closed:
                self._closed.discard(session)
                stale = [folder]
            else:
                previous = self._results.pop(session, None)
                self._results[session] = (folder, self._clock())  # the newest: last
                stale = ([previous[0]] if previous is not None else []) + self._expired()
        self._delete(stale)

    def kept(self) -> list[Path]:
        """The result folders kept, oldest first."""
        with self._lock:
            return [folder for folder, _ in self._results.values()]

    def _expired(self) -> list[Path]:
        """Drop (under the lock) the results past the age bound, and the oldest of those of no open page beyond the
        count bound; returns their folders, to delete."""
        now = self._clock()
        aged = [s for s, (_, kept_at) in self._results.items() if now - kept_at > self.max_age_s]
        unopened = [s for s in self._results if s not in self._pages and s not in aged]
        gone = aged + unopened[: max(0, len(unopened) - self.max_kept)]
        return [self._results.pop(session)[0] for session in gone]

    def _delete(self, folders: list[Path]) -> None:
        for folder in folders:
            if self.root is None or Path(self.root) in Path(folder).parents:
                shutil.rmtree(folder, ignore_errors=True)

    def lineart_chosen(self, session: str, files: list[str]) -> list[str]:
        """The user chose line art (the field's ``upload`` event): the files the field is to hold. gradio's
        multi-file field adds a new choice after the files it holds; the user means to replace them, so a field that
        grew from what it held keeps only the files added."""
        with self._lock:
            field = self._lineart.setdefault(session, LineartField())
            if field.grown(files):
                field.files, field.before, field.shown = files[len(field.files) :], field.files, False
            elif files != field.files:
                field.files, field.before, field.shown = files, [], False
            return field.files

    def lineart_to_show(self, session: str, files: list[str]) -> bool:
        """The field changed (a choice, the replacement, a file removed, an example): whether to show ``files``, or
        to wait for the replacement that ``lineart_chosen`` makes (and not show what it will be rid of)."""
        with self._lock:
            field = self._lineart.setdefault(session, LineartField())
            if field.grown(files) or (field.before and files == field.before + field.files):
                return False  # a choice added after the files held: they go (before or after this call)
            if files == field.files and field.shown:
                return False  # shown already
            field.files, field.before, field.shown = files, [], True
            return True

    def close(self, session: str) -> None:
        """The page went away: stop its job, delete its result."""
        self.cancel(session)
        with self._lock:
            self._lineart.pop(session, None)
            self._pages.discard(session)
            kept = self._results.pop(session, None)
            if session in self._running:
                self._closed.add(session)
        self._delete([kept[0]] if kept is not None else [])

    def close_all(self) -> None:
        with self._lock:
            sessions = set(self._running) | set(self._results)
        for session in sessions:
            self.close(session)
