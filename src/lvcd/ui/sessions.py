"""Per browser session (a page): the cancel flag of its running job, the folder of its last result, and the line-art
files its field holds (so that choosing line art again replaces the files chosen before)."""

from __future__ import annotations

import shutil
import threading
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
    """Per page: the cancel flag of its running job, the folder of its last result, its line-art field."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, threading.Event] = {}
        self._results: dict[str, Path] = {}
        self._closed: set[str] = set()  # pages gone while their job ran: a late result is deleted at once
        self._lineart: dict[str, LineartField] = {}

    def begin(self, session: str) -> threading.Event:
        with self._lock:
            flag = self._running[session] = threading.Event()
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
                previous = folder
            else:
                previous, self._results[session] = self._results.get(session), folder
        if previous is not None:
            shutil.rmtree(previous, ignore_errors=True)

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
            folder = self._results.pop(session, None)
            if session in self._running:
                self._closed.add(session)
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)

    def close_all(self) -> None:
        with self._lock:
            sessions = set(self._running) | set(self._results)
        for session in sessions:
            self.close(session)
