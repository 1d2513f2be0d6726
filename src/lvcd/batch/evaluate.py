"""``lvcd batch --evaluate GT_MANIFEST``: score the batch's outputs against ground truth with ``lvcd.metrics``.

The ground-truth manifest (CSV or JSON, read as the shot manifest is: :mod:`lvcd.io.manifests`) has one entry per
shot: ``name`` (a shot of the batch) and ``gt`` (its ground-truth colour frames: folder, video or GIF), optionally
``lineart``, the input line art of EDMD; without it EDMD takes the line art the shot was coloured from (the shot
manifest's ``lineart``, :func:`with_shot_lineart`). Relative paths are relative to that manifest.

Before any shot runs, :func:`check_ground_truth` checks every entry (its files exist and open, and where a count is
cheap to know, folders of images and GIFs, as many frames as the shot's line art): a bad entry stops the command
before hours of colorizing. After the batch, every finished shot with ground truth is scored, each clip read as
``lvcd evaluate`` reads it (checked, then scored); a clip that only then turns out unusable (a video's decoded frame
count, a damaged frame file) is left out with a note and the others are scored. FID and FVD pool the features of all
of them, as the paper's tables do.
"""

from __future__ import annotations

import os
from pathlib import Path

from lvcd.batch.layout import BatchLayout
from lvcd.batch.manifest import ShotSpec
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


def with_shot_lineart(
    truth: dict[str, tuple[Path, Path | None]], shots: list[ShotSpec]
) -> dict[str, tuple[Path, Path | None]]:
    """``truth`` with each entry that names no line art given the shot's own: the line art the shot was coloured
    from, EDMD's input line art (as ``lvcd evaluate`` takes ``draw_<H>/`` of a data root). A ``lineart`` given in the
    ground-truth manifest is kept."""
    lineart_of = {shot.name: shot.lineart for shot in shots}
    return {name: (gt, lineart if lineart is not None else lineart_of[name]) for name, (gt, lineart) in truth.items()}


def _exact_frames(path: Path) -> int | None:
    """The frame count of a folder of images, a GIF or an image (a listing, a header); None for a video, whose exact
    count takes decoding the whole stream (it is checked when the clip is scored). Raises InputError when the path
    does not open as frames (a video's first frame is decoded)."""
    from lvcd.io import VIDEO_SUFFIXES, FrameSource

    source = FrameSource.open(path)
    return None if not path.is_dir() and path.suffix.lower() in VIDEO_SUFFIXES else len(source)


def check_ground_truth(
    truth: dict[str, tuple[Path, Path | None]],
    shots: list[ShotSpec],
    manifest: str | os.PathLike = "ground truth",
    skip_frames: int = 0,
) -> None:
    """Every ground-truth entry usable, before the batch runs: ``gt`` (and ``lineart``) exist and open as frames, with
    as many frames as the shot's line art, and more than ``skip_frames``, where the counts are cheap to know. Raises
    InputError (one line) naming the manifest and the shot. A shot whose own line art is missing or unreadable is
    left to the batch, which reports it as failed."""
    where = Path(manifest).name
    lineart_of = {shot.name: shot.lineart for shot in shots}
    for name, (gt, lineart) in truth.items():
        counts = {}
        for what, path in (("ground truth", gt), ("line art for EDMD", lineart)):
            if path is None:
                continue
            if not path.exists():
                raise InputError(f"{where}, shot {name!r}: the {what} {path} is not there; fix the entry")
            try:
                counts[what] = _exact_frames(path)
            except InputError as err:
                raise InputError(f"{where}, shot {name!r}: the {what} does not open: {err}") from None
        try:
            expected = _exact_frames(lineart_of[name])
        except InputError:
            continue  # the shot itself fails, and is reported so; it will have no output to score
        if expected is not None and expected <= skip_frames:
            raise InputError(
                f"{where}, shot {name!r} has {expected} frames, and skipping the first {skip_frames} (--skip-frames) "
                "leaves none to score; skip fewer frames"
            )
        for what, count in counts.items():
            if expected is not None and count is not None and count != expected:
                raise InputError(
                    f"{where}, shot {name!r}: the {what} has {count} frames but the shot's line art has {expected}; "
                    "metrics compare frame t with frame t, so give frame-aligned sequences of equal length"
                )


def evaluate_batch(report: BatchReport, layout: BatchLayout, truth: dict, tools, settings, progress: bool = True):
    """Score the finished shots that have ground truth; write OUTDIR/evaluation.json; return (report, notes).

    Every clip is read as ``lvcd evaluate`` reads it, once through to check it (all before any is scored), then to
    score it: by :func:`lvcd.metrics.evaluate_clips` alone. Only when that check finds a clip unusable are the clips
    checked one by one, to leave out each such clip with a note and score the others."""
    from lvcd.metrics import ClipSpec, evaluate_clips, report_to_dict, write_json_atomic

    finished = [name for name, entry in report.shots.items() if entry["status"] in ("done", "skipped")]
    notes = [f"not evaluated (no output): {name}" for name in truth if name not in finished]
    specs = [ClipSpec(name, layout.output(name), *truth[name]) for name in finished if name in truth]
    evaluation = None
    if specs:
        try:
            evaluation = evaluate_clips(specs, tools, settings, progress=progress)
        except InputError:
            usable = _usable_clips(specs, notes, settings.skip_frames)
            if len(usable) == len(specs):
                raise  # no clip's fault: as without the batch
            specs = usable
            evaluation = evaluate_clips(specs, tools, settings, progress=progress) if specs else None
    if evaluation is None:
        return None, notes + ["nothing to evaluate: no shot with ground truth finished"]
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


def _usable_clips(specs: list, notes: list[str], skip_frames: int = 0) -> list:
    """The clips that pass lvcd evaluate's check of a clip; each other one is noted. What only scoring finds (a
    video's decoded count, a damaged frame) leaves that clip out, not all."""
    from lvcd.metrics.clips import check_clip_inputs

    usable = []
    for spec in specs:
        try:
            check_clip_inputs(spec, skip_frames)
        except InputError as err:
            notes.append(f"not evaluated: {err}")
            continue
        usable.append(spec)
    return usable
