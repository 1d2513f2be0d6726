"""How every benchmark script reports: the JSON on stdout, the markdown table on stderr, both optionally written
to files (atomically, through lvcd's one atomic writer)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lvcd.io.atomic import write_bytes_atomic


def report_result(result: dict, table: str, output: Path | None = None, markdown: Path | None = None) -> None:
    print(json.dumps(result, indent=1))
    print(table, file=sys.stderr)
    write_result(result, table, output, markdown)


def write_result(result: dict, table: str, output: Path | None = None, markdown: Path | None = None) -> None:
    """Only the files (a long benchmark rewrites them as it goes, so a killed run keeps what it measured)."""
    for path, content in ((output, json.dumps(result, indent=1) + "\n"), (markdown, table)):
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(path, content.encode())
