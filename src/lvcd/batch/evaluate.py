"""``lvcd batch --evaluate GT_MANIFEST``: score the batch's outputs against ground truth with ``lvcd.metrics``.

The ground-truth manifest (CSV or JSON, like the shot manifest) has one entry per shot: ``name`` (a shot of the
batch) and ``gt`` (its ground-truth colour frames: folder, video or GIF), optionally ``lineart`` (adds EDMD
against the line art). Relative paths are relative to that manifest. Every finished shot with ground truth is
scored; FID and FVD pool the features of all of them, as the paper's tables do.
"""

from __future__ import annotations

import os
from pathlib import Path

from lvcd.batch.layout import BatchLayout
from lvcd.batch.manifest import read_entries
from lvcd.batch.report import BatchReport
from lvcd.errors import InputError


def read_ground_truth(path: str | os.PathLike, shot_names: list[str]) -> dict[str, tuple[Path, Path | None]]:
    """name -> (ground-truth frames, line art or None); every name must be a shot of the batch."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"ground-truth manifest not found: {path}")
    base = path.resolve().parent
    truth = {}
    for index, entry in enumerate(read_entries(path)):
        entry = {str(k).strip().lower(): str(v).strip() for k, v in (entry or {}).items() if k and v not in (None, "")}
        if not entry.get("name") or not entry.get("gt"):
            raise InputError(f"ground-truth manifest {path.name} entry {index + 1} needs 'name' and 'gt'")
        if entry["name"] not in shot_names:
            raise InputError(
                f"ground-truth manifest {path.name} names {entry['name']!r}, which is not a shot of the batch"
            )
        resolve = lambda value: Path(value) if Path(value).is_absolute() else base / value  # noqa: E731
        truth[entry["name"]] = (resolve(entry["gt"]), resolve(entry["lineart"]) if entry.get("lineart") else None)
    if not truth:
        raise InputError(f"ground-truth manifest {path} lists no shots")
    return truth


def evaluate_batch(report: BatchReport, layout: BatchLayout, truth: dict, tools, settings, progress: bool = True):
    """Score the finished shots that have ground truth; write OUTDIR/evaluation.json; return (report, notes)."""
    from lvcd.metrics import ClipSpec, evaluate_clips, report_to_dict, write_json_atomic

    finished = [name for name, entry in report.shots.items() if entry["status"] in ("done", "skipped")]
    specs = [ClipSpec(name, layout.output(name), *truth[name]) for name in finished if name in truth]
    notes = [f"not evaluated (no output): {name}" for name in truth if name not in finished]
    if not specs:
        return None, notes + ["nothing to evaluate: no shot with ground truth finished"]
    evaluation = evaluate_clips(specs, tools, settings, progress=progress)
    data = report_to_dict(evaluation)
    write_json_atomic(layout.evaluation_path, data)
    report.evaluation = {
        "file": layout.evaluation_path.name,
        "clips": len(specs),
        "metrics": data["aggregate"]["metrics"],
        "samples": data["aggregate"]["samples"],
        "notes": notes,
    }
    report.write(layout.report_path)
    return evaluation, notes
