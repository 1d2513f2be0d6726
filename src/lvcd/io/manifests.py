"""Manifests: the CSV or JSON files that list many jobs (``lvcd batch``'s shots and ground truth, ``lvcd evaluate``'s
clips), all read by these helpers under one set of rules.

- JSON: a list of entries, or an object holding that list under the manifest's key (``{"shots": [...]}``,
  ``{"clips": [...]}``).
- UTF-8 text (a byte-order mark is allowed); another encoding (an Excel "CSV" in cp1252) is refused with the
  offset of the first byte that is not UTF-8.
- CSV: a header row naming the columns; lines starting with ``#`` are comments; a row with more values than the
  header has columns is refused (an unquoted comma).
- Field names are case-insensitive; a ``comment`` field is allowed everywhere; an unknown field is refused (a
  misspelt ``line_art`` would otherwise drop what it names without a word), and so is a field given twice (a CSV
  column ``seed,seed`` or ``Name,name``, a JSON key twice in one object): one of the values would be dropped
  silently; empty values count as absent.
- Paths: ``~`` is expanded; relative paths are relative to the manifest's folder.

>>> entry_fields({"Pred": "a/", "gt": "b/", "lineart": ""}, ("pred", "gt", "lineart"), ("pred", "gt"), "entry 0")
{'pred': 'a/', 'gt': 'b/'}
"""

from __future__ import annotations

import codecs
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
    text = _utf8_text(path, what)
    if is_csv(path):
        reader = csv.DictReader(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        _check_unique_names(reader.fieldnames or [], f"{what} {path.name}: the header")
        return list(reader)
    try:
        data = json.loads(text, object_pairs_hook=lambda pairs: _unique_keys(pairs, f"{what} {path.name}"))
    except json.JSONDecodeError as err:
        raise InputError(f"{what} {path} is not valid JSON ({err}); name CSV manifests *.csv") from None
    entries = data.get(key) if isinstance(data, dict) else data
    if not isinstance(entries, list):
        raise InputError(f"{what} {path} must be a list of {key} or an object with a '{key}' list")
    return entries


def _utf8_text(path: Path, what: str) -> str:
    """The file's text, read as UTF-8 (a leading byte-order mark dropped); anything else is one line naming the first
    byte that is not UTF-8 (a CSV saved by Excel as cp1252 / "Windows (ANSI)", a Latin-1 file)."""
    data = path.read_bytes()
    start = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    try:
        return data[start:].decode("utf-8")
    except UnicodeDecodeError as err:
        offset = start + err.start
        line = data[:offset].count(b"\n") + 1
        raise InputError(
            f"{what} {path} is not UTF-8 text: byte 0x{data[offset]:02x} at offset {offset} (line {line}) is not "
            "UTF-8; save the file as UTF-8 (e.g. Excel: 'CSV UTF-8'; iconv -f cp1252 -t utf-8) and run again"
        ) from None


def _check_unique_names(names: Sequence[Any], where: str) -> None:
    """Field names are compared as entries read them (stripped, case ignored): two that match would leave one value
    silently dropped."""
    seen: dict[str, Any] = {}
    for name in names:
        key = str(name).strip().lower()
        if key in seen:
            same = "twice" if str(seen[key]).strip() == str(name).strip() else f"twice ({seen[key]!r} and {name!r})"
            raise InputError(f"{where} names the field {key!r} {same}; field names ignore case, so keep one of them")
        seen[key] = name


def _unique_keys(pairs: list[tuple[str, Any]], where: str) -> dict[str, Any]:
    """json's object hook: a key given twice in one object (JSON keeps the last without a word) is refused."""
    keys = [key for key, _ in pairs]
    duplicated = sorted({key for key in keys if keys.count(key) > 1})
    if duplicated:
        raise InputError(f"{where} gives the key {duplicated[0]!r} twice in one object; keep one of them")
    return dict(pairs)


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
    _check_unique_names(list(entry), where)
    entry = {str(name).strip().lower(): value for name, value in entry.items()}
    unknown = sorted(name for name in entry if name not in fields and name != COMMENT_FIELD)
    if unknown:
        raise InputError(
            f"{where} has unknown field(s) {', '.join(unknown)}; the fields are {', '.join(fields)} (and {COMMENT_FIELD})"
        )
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
