"""The evaluation report as a readable table and as JSON (schema ``lvcd.evaluate/2``, written atomically).

JSON layout (metric keys: the selected ones of psnr, ssim, lpips, fid, fvd, edmd, edmd_gt, tc, tc_mse, region;
a value is null when the metric was skipped or undefined). Schema 2 (lvcd 0.1 after issue #13): ``tc`` is the
paper's relative-L2 form (schema 1's ``tc`` is now ``tc_mse``), ``edmd`` compares with the input line art (schema
1's ``edmd`` is now ``edmd_gt``, its ``edmd_lineart`` is now ``edmd``), and ``region`` and ``labels`` are new::

    {"schema": "lvcd.evaluate/2", "lvcd_version": "0.1.0",
     "settings": {"size": [256, 256], "metrics": [...], "skip_frames": 0, "fvd_clip_length": 16, ...},
     "skipped": {"fvd": "no I3D weights: ..."},
     "clips": [{"name": ..., "pred": ..., "gt": ..., "lineart": null, "labels": null, "frames": 75,
                "metrics": {"psnr": 24.1, ...}, "samples": {"fid": 75, "fvd": 4},
                "per_frame": {"psnr": [...], ...}, "details": {...}, "notes": [...]}],
     "aggregate": {"clips": 1, "frames": 75, "metrics": {...}, "samples": {...}, "notes": [...]}}

``frames`` counts the frames scored: a clip's own count less ``skip_frames``.
"""

from __future__ import annotations

import math
from typing import Any

from lvcd.io.atomic import write_json_atomic  # noqa: F401 - lvcd.metrics exports the one atomic JSON writer
from lvcd.metrics.evaluate import ClipResult, EvaluationReport

SCHEMA = "lvcd.evaluate/2"
PAPER_SKETCH_METHOD = "informative"  # the informative-drawings network with sk_model.pth, as the paper's line art
# Which way is better, shown in the table header. TC: 1 = as steady as the ground truth, above = more flicker.
DIRECTION = {
    "psnr": "↑",
    "ssim": "↑",
    "lpips": "↓",
    "fid": "↓",
    "fvd": "↓",
    "edmd": "↓",
    "edmd_gt": "↓",
    "tc": "→1",
    "tc_mse": "→1",
    "region": "↑",
}
DIGITS = {"psnr": 2, "ssim": 4, "lpips": 4, "fid": 2, "fvd": 2, "edmd": 3, "edmd_gt": 3, "tc": 3, "tc_mse": 3}


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _clip_dict(result: ClipResult, names: list[str]) -> dict[str, Any]:
    spec = result.spec
    return {
        "name": spec.name,
        "pred": str(spec.pred),
        "gt": str(spec.gt),
        "lineart": str(spec.lineart) if spec.lineart is not None else None,
        "labels": str(spec.labels) if spec.labels is not None else None,
        "frames": result.frames,
        "metrics": {name: _finite(result.metrics.get(name)) for name in names},
        "samples": dict(result.samples),
        "per_frame": {name: [_finite(v) for v in values] for name, values in result.per_frame.items()},
        "details": {key: _finite(value) for key, value in result.details.items()},
        "notes": list(result.notes),
    }


def report_to_dict(report: EvaluationReport) -> dict[str, Any]:
    """The JSON-ready form of a report (see the module docstring)."""
    from lvcd import __version__

    names = report.metric_names
    settings = report.settings
    return {
        "schema": SCHEMA,
        "lvcd_version": __version__,
        "settings": {
            "size": list(settings.size),
            "metrics": list(settings.metrics),
            "resize": "bilinear with antialiasing, rounded to 8 bits",
            "lineart_resize": "binarised at its own size, then reduced keeping every line pixel",
            "skip_frames": settings.skip_frames,
            "batch_size": settings.batch_size,
            "fvd_clip_length": settings.fvd_clip_length,
            "fvd_stride": settings.fvd_stride or settings.fvd_clip_length,
            "sketch_threshold": settings.sketch_threshold,
            "region_threshold": settings.region_threshold,
            "region_margin": settings.region_margin,
            **report.info,
        },
        "skipped": dict(report.skipped),
        "clips": [_clip_dict(result, names) for result in report.clips],
        "aggregate": {
            "clips": len(report.clips),
            "frames": sum(result.frames for result in report.clips),
            "metrics": {name: _finite(report.aggregate.get(name)) for name in names},
            "samples": dict(report.aggregate_samples),
            "notes": list(report.notes),
        },
    }


def _cell(name: str, value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{DIGITS.get(name, 4)}f}"


def format_table(report: EvaluationReport) -> str:
    """A plain-text table: one row per clip, then the aggregate; skipped metrics and notes below it."""
    names = report.metric_names
    header = ["clip", "frames"] + [f"{name} {DIRECTION.get(name, '')}".strip() for name in names]
    rows = [[r.spec.name, str(r.frames)] + [_cell(n, r.metrics.get(n)) for n in names] for r in report.clips]
    if len(report.clips) > 1 or any(n in report.aggregate_samples for n in names):
        total = sum(r.frames for r in report.clips)
        rows.append(["ALL", str(total)] + [_cell(n, report.aggregate.get(n)) for n in names])
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in [header, *rows]
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if report.aggregate_samples:
        counts = ", ".join(
            f"{name} over {count} {'regions' if name == 'region' else 'samples'}"
            for name, count in report.aggregate_samples.items()
        )
        lines.append(
            f"ALL: per-frame metrics averaged over all frames, tc over clips, region pooled over regions; {counts}"
        )
    lines += [f"skipped {name}: {reason}" for name, reason in report.skipped.items()]
    lines += [f"note ({r.spec.name}): {note}" for r in report.clips for note in r.notes]
    lines += [f"note: {note}" for note in report.notes]
    lines += _method_lines(report)
    return "\n".join(lines)


def _scored(report: EvaluationReport, *names: str) -> bool:
    return any(name in report.settings.metrics and name not in report.skipped for name in names)


def _method_lines(report: EvaluationReport) -> list[str]:
    """Frames left out, and the flow and sketch extractor used, said below the table where they are not the paper's:
    those values cannot be set beside its tables, and the JSON, which records them, is not what a reader sees."""
    lines = []
    if report.settings.skip_frames:
        lines.append(f"frames: the first {report.settings.skip_frames} of every clip left out (--skip-frames)")
    flow = report.info.get("flow")
    if flow is not None and _scored(report, "tc", "tc_mse"):
        why = "" if flow == "raft" else " (the paper uses RAFT; values not comparable with its tables)"
        lines.append(f"tc flow: {flow}{why}")
    sketch = report.info.get("sketch_method")
    if sketch is not None and _scored(report, "edmd", "edmd_gt"):
        why = "" if sketch == PAPER_SKETCH_METHOD else " (the paper: informative-drawings; not comparable)"
        lines.append(f"edmd sketches: {sketch}{why}")
    return lines
