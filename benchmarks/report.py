"""How every benchmark script reports: the JSON on stdout, the markdown table on stderr, both optionally written
to files (atomically, through lvcd's one atomic writer)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from lvcd.io.atomic import write_bytes_atomic


def report_result(result: dict, table: str, output: Path | None = None, markdown: Path | None = None) -> None:
    text = json.dumps(result, indent=1)
    print(text)
    print(table, file=sys.stderr)
    for path, content in ((output, text + "\n"), (markdown, table)):
        if path:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(path, content.encode())
