"""Manifests: the CSV or JSON files that list many jobs (``lvcd batch``'s shots and ground truth, ``lvcd evaluate``'s
clips), all read by these helpers under one set of rules.

- JSON: a list of entries, or an object holding that list under the manifest's key (``{"shots": [...]}``,
  ``{"clips": [...]}``).
- CSV: a header row naming the columns; lines starting with ``#`` are comments; a row with more values than the
  header has columns is refused (an unquoted comma).
- Field names are case-insensitive; a ``comment`` field is allowed everywhere; an unknown field is refused (a
  misspelt ``line_art`` would otherwise drop what it names without a word); empty values count as absent.
- Paths: ``~`` is expanded; relative paths are relative to the manifest's folder.

>>> entry_fields({"Pred": "a/", "gt": "b/", "lineart": ""}, ("pred", "gt", "lineart"), ("pred", "gt"), "entry 0")
{'pred': 'a/', 'gt': 'b/'}
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lvcd.errors import InputError

COMMENT_FIELD = "comment"


def is_csv(path: Path) -> bool:
    return path.suffix.lower() == ".csv"


def read_entries(path: Path, key: str, what: str = "manifest") -> list:
    """The entries of the manifest at ``path`` (not yet checked: see :func:`entry_fields`); ``key`` is the name of
    the list in a JSON object (``"shots"``); ``what`` names the manifest in errors."""
    if not path.is_file():
        raise InputError(f"{what} not found: {path}")
    text = path.read_text(encoding="utf-8-sig")
    if is_csv(path):
        return list(csv.DictReader(line for line in text.splitlines() if not line.lstrip().startswith("#")))
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{what} {path} is not valid JSON ({err}); name CSV manifests *.csv") from None
    entries = data.get(key) if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise InputError(f"{what} {path} must be a list of {key} or an object with a '{key}' list")
    return entries


def entry_location(path: Path, index: int, what: str = "manifest") -> str:
    """How errors name entry ``index`` (from 0): its row in a CSV file (row 1 is the header), else its index."""
    return f"{what} {path.name} row {index + 2}" if is_csv(path) else f"{what} {path.name} entry {index}"


def entry_fields(entry: Any, fields: Sequence[str], required: Sequence[str], where: str) -> dict[str, Any]:
    """An entry's given (non-empty) fields by lower-case name, ``comment`` left out; an entry that is not an object,
    has values past a CSV header's columns, has a field not in ``fields`` or lacks one of ``required`` is refused
    with one line starting with ``where``."""
    if not isinstance(entry, dict):
        raise InputError(f"{where} is not an object with {' and '.join(repr(name) for name in required)}")
    if None in entry:  # csv.DictReader's key for the values past the header's columns
        raise InputError(
            f"{where} has more values than the header has columns ({', '.join(map(repr, entry[None]))}); quote values "
            "that contain a comma, or add the column to the header"
        )
    entry = {str(name).strip().lower(): value for name, value in entry.items()}
    unknown = sorted(name for name in entry if name not in fields and name != COMMENT_FIELD)
    if unknown:
        raise InputError(f"{where} has unknown field(s) {', '.join(unknown)}; the fields are {', '.join(fields)}")
    given = {
        name: value
        for name, value in entry.items()
        if name != COMMENT_FIELD and value is not None and str(value).strip() != ""
    }
    missing = [name for name in required if name not in given]
    if missing:
        raise InputError(f"{where} lacks {' and '.join(missing)}")
    return given


def entry_path(value: Any, base: Path) -> Path:
    """A path as a manifest writes it: ``~`` expanded, relative to ``base`` (the manifest's folder)."""
    path = Path(os.path.expanduser(str(value).strip()))
    return path if path.is_absolute() else base / path
