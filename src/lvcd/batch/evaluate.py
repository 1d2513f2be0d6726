"""``lvcd batch --evaluate GT_MANIFEST``: score the batch's outputs against ground truth with ``lvcd.metrics``.

The ground-truth manifest (CSV or JSON, read as the shot manifest is: :mod:`lvcd.io.manifests`) has one entry per
shot: ``name`` (a shot of the batch) and ``gt`` (its ground-truth colour frames: folder, video or GIF), optionally
``lineart`` (adds EDMD against the line art). Relative paths are relative to that manifest. Every finished shot with ground truth is
scored; FID and FVD pool the features of all of them, as the paper's tables do.
"""

from __future__ import annotations

import os
from pathlib import Path

from lvcd.batch.layout import BatchLayout
from lvcd.batch.report import BatchReport
from lvcd.errors import InputError
from lvcd.io.manifests import entry_fields, entry_location, entry_path, read_entries

GROUND_TRUTH_FIELDS = ("name", "gt", "lineart")


def read_ground_truth(path: str | os.PathLike, shot_names: list[str]) -> dict[str, tuple[Path, Path | None]]:
    """name -> (ground-truth frames, line art or None); every name must be a shot of the batch, named once."""
    path = Path(path)
    what = "ground-truth manifest"
    entries = read_entries(path, "shots", what)
    base = path.resolve().parent
    truth = {}
    for index, entry in enumerate(entries):
        where = entry_location(path, index, what)
        given = entry_fields(entry, GROUND_TRUTH_FIELDS, ("name", "gt"), where)
        name = str(given["name"]).strip()
        if name not in shot_names:
            raise InputError(f"{where} names {name!r}, which is not a shot of the batch")
        if name in truth:
            raise InputError(f"{where} names {name!r} again; give each shot's ground truth once")
        lineart = entry_path(given["lineart"], base) if "lineart" in given else None
        truth[name] = (entry_path(given["gt"], base), lineart)
    if not truth:
        raise InputError(f"{what} {path} lists no shots")
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
