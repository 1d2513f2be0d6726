"""The shot list of a batch: a CSV or JSON manifest, one entry per shot (schema in docs/batch.md).

Each entry names a shot's inputs and, optionally, its own settings; an absent or empty setting takes the default
given on the command line. Relative paths are relative to the manifest's folder.

=========  ========================================================================================
name       output name: ``OUTDIR/<name>.mp4`` (default: the line art's folder name, or its file name without the
           extension: ``sh.010/`` -> ``sh.010``, ``sh.010.mp4`` -> ``sh.010``)
reference  the coloured frame 0 of the shot (required)
lineart    line art of every frame: a folder of images, a video or a GIF (required)
keyframes  further coloured frames, ``INDEX=IMAGE``: ``"40=k40.png;80=k80.png"`` in CSV, ``{"40": "k40.png"}``
           (or a list of ``"40=k40.png"``) in JSON
steps, seed, size (``HxW``), overlap, polarity (auto / dark-lines / bright-lines), fps, reference_frame (the frame
           the reference colours, 0 by default): per-shot settings
=========  ========================================================================================

JSON: a list of entries, or ``{"shots": [...]}``. CSV: a header row naming the columns, ``#`` lines are comments
(the rules of every manifest: :mod:`lvcd.io.manifests`).

    >>> shots = read_shots("film.csv", ShotSettings(steps=25, seed=0))   # doctest: +SKIP
    >>> shots[0].name, shots[0].settings.steps                          # doctest: +SKIP
    ('sc001', 25)
"""

from __future__ import annotations

import math
import os
import re
import unicodedata
from dataclasses import dataclass, field, replace
from pathlib import Path

from lvcd.errors import InputError
from lvcd.io.lineart_input import POLARITIES
from lvcd.io.manifests import entry_fields, entry_location, entry_path, read_entries
from lvcd.io.paper import LEVELS
from lvcd.io.sizing import parse_size
from lvcd.io.writers import frame_rate_problem
from lvcd.seeds import MAX_SEED

SETTING_FIELDS = ("steps", "seed", "size", "overlap", "polarity", "lineart_levels", "fps", "reference_frame")
FIELDS = ("name", "reference", "lineart", "keyframes", *SETTING_FIELDS)
MAX_OVERLAP = 13  # windows of 14 new-or-shared frames (the official model's): at least one new frame per window
_WHOLE_NUMBER = re.compile(r"-?[0-9]+")  # ASCII digits only: str.isdigit() also takes '²', which int() refuses


@dataclass(frozen=True)
class ShotSettings:
    """How one shot is colorized; the manifest overrides the command line's defaults field by field."""

    steps: int = 25
    seed: int = 0
    size: tuple[int, int] | None = None  # (H, W) processing size; None: near the trained area, aspect kept
    overlap: int = 4
    polarity: str = "auto"
    lineart_levels: str = "auto"  # scanned paper to white (lvcd.io.paper): auto, on or off
    fps: float | None = None  # None: the line-art video's rate, else 20
    reference_frame: int = 0  # the frame the reference colours (0: the official single pass)


@dataclass(frozen=True)
class ShotSpec:
    """One shot of the batch, its paths resolved."""

    name: str
    reference: Path
    lineart: Path
    keyframes: tuple[tuple[int, Path], ...] = ()
    settings: ShotSettings = field(default_factory=ShotSettings)

    @property
    def inputs(self) -> list[Path]:
        return [self.reference, self.lineart, *(path for _, path in self.keyframes)]


def _integer(value, what: str, minimum: int, maximum: int | None = None) -> int:
    given = value
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    if isinstance(value, bool) or not _WHOLE_NUMBER.fullmatch(text) or int(text) < minimum:
        raise InputError(f"{what} {given!r} is not a whole number >= {minimum}")
    if maximum is not None and int(text) > maximum:
        raise InputError(f"{what} {given!r} is over the largest allowed, {maximum}")
    return int(text)


def _setting(name: str, value, what: str):
    if name == "steps":
        return _integer(value, what, 1)
    if name == "seed":
        return _integer(value, what, 0, MAX_SEED)
    if name == "overlap":
        return _integer(value, what, 0, MAX_OVERLAP)
    if name == "reference_frame":
        return _integer(value, what, 0)
    if name == "size":
        return parse_size(value, what)
    if name in ("polarity", "lineart_levels"):
        choice, choices = str(value).strip().lower(), POLARITIES if name == "polarity" else LEVELS
        if choice not in choices:
            raise InputError(f"{what} {value!r} is not one of {', '.join(choices)}")
        return choice
    try:
        fps = float(value)
    except (TypeError, ValueError):
        fps = math.nan
    problem = frame_rate_problem(fps)
    if problem is not None:
        raise InputError(f"{what} {value!r}: {problem}")
    return fps


def _keyframes(value, resolve, what: str) -> tuple[tuple[int, Path], ...]:
    if isinstance(value, dict):
        items = [(str(index), path) for index, path in value.items()]
    else:
        pieces = value if isinstance(value, list) else str(value).replace(",", ";").split(";")
        items = [str(piece).partition("=")[::2] for piece in pieces if str(piece).strip()]
    keyframes = {}
    for index, path in items:
        if not _WHOLE_NUMBER.fullmatch(index.strip()) or int(index) < 0 or not str(path).strip():
            raise InputError(f"{what} {value!r} is not INDEX=IMAGE pairs, e.g. 40=key40.png;80=key80.png")
        if int(index) in keyframes:
            raise InputError(f"{what}: frame {int(index)} is given twice; give one image per frame")
        keyframes[int(index)] = resolve(path)
    return tuple(sorted(keyframes.items()))


REPORT_NAME = "batch_report.json"  # the batch's own files in OUTDIR (lvcd.batch.layout): no shot may take their names
EVALUATION_NAME = "evaluation.json"


def check_name(name: str, what: str) -> str:
    """A shot name becomes a file name in OUTDIR: no folders, no hidden names, no control characters, not the name of
    the batch's own report files."""
    if name.casefold() in (REPORT_NAME, EVALUATION_NAME):
        raise InputError(f"{what}: {name!r} is the name of the batch's own {name.lower()}; rename the shot")
    if (
        not name
        or name in (".", "..")
        or name.startswith(".")
        or any(c in name for c in "/\\")
        or any(ord(c) < 32 for c in name)
    ):
        raise InputError(f"{what}: {name!r} is not usable as a file name (no '/', no leading '.'); rename the shot")
    return name


def default_name(lineart: Path) -> str:
    """A shot's name when its entry gives none: the line art's folder name whole (``sh.010/`` -> ``sh.010``: its
    dots are no extension), a file's name without its extension (``sh.010.mp4`` -> ``sh.010``). A path not there
    (yet) is taken for a file only when its extension is one of a video, an animation or an image."""
    from lvcd.io import IMAGE_SUFFIXES, VIDEO_SUFFIXES

    if lineart.is_dir():
        return lineart.name
    known = lineart.suffix.lower() in (*VIDEO_SUFFIXES, *IMAGE_SUFFIXES, ".gif")
    return lineart.stem if known else lineart.name


def _entry_to_shot(entry, base: Path, defaults: ShotSettings, where: str) -> ShotSpec:
    given = entry_fields(entry, FIELDS, ("reference", "lineart"), where)

    def resolve(value) -> Path:
        return entry_path(value, base)

    lineart = resolve(given["lineart"])
    name = check_name(str(given.get("name", default_name(lineart))).strip(), f"{where}, name")
    where = f"{where} (shot {name!r})"
    settings = {key: _setting(key, given[key], f"{where}: {key}") for key in SETTING_FIELDS if key in given}
    keyframes = _keyframes(given["keyframes"], resolve, f"{where}: keyframes") if "keyframes" in given else ()
    return ShotSpec(name, resolve(given["reference"]), lineart, keyframes, replace(defaults, **settings))


def check_shot_sizes(shots: list[ShotSpec], multiple: int, video_frames: int) -> None:
    """Each shot's size and overlap fit the model (sizes multiples of ``multiple``, overlap under ``video_frames``):
    checked for the whole manifest before the batch starts."""
    from lvcd.io.sizing import plan_size

    for shot in shots:
        settings = shot.settings
        if settings.size is not None:
            try:
                plan_size(settings.size, multiple=multiple, forced_hw=settings.size)
            except InputError as err:
                raise InputError(f"shot {shot.name!r}: {err}") from None
        if settings.overlap >= video_frames:
            raise InputError(
                f"shot {shot.name!r}: overlap {settings.overlap} leaves no new frame in windows of {video_frames}; "
                f"give 0..{video_frames - 1}"
            )


def shot_rate_problem(shot: ShotSpec, output_format: str, lineart_fps: float | None = None) -> str | None:
    """Why the shot's output (of ``output_format``) cannot have the frame rate it gets, or None when it can: the
    entry's fps, else (where given) the line art's own rate, as the worker's writer would refuse it."""
    fps, own = (shot.settings.fps, False) if shot.settings.fps is not None else (lineart_fps, True)
    problem = None if fps is None else frame_rate_problem(fps, output_format)
    if problem is None:
        return None
    if own:
        return f"the line art's own frame rate, {fps:.4g} fps: {problem}; give the shot an fps (or another --format)"
    return f"fps {fps:g}: {problem}; give the shot another fps or --format"


def check_shot_rates(shots: list[ShotSpec], output_format: str) -> None:
    """Each shot's frame rate fits the output format (a GIF's frames last at most 655.35 s): checked for the whole
    manifest before the batch starts, as the rates themselves are when it is read. (The batch's planning checks it
    again for every caller, with the line art's own rate where the entry gives none: :mod:`lvcd.batch.run`.)"""
    for shot in shots:
        problem = shot_rate_problem(shot, output_format)
        if problem is not None:
            raise InputError(f"shot {shot.name!r}: {problem}")


def read_shots(path: str | os.PathLike, defaults: ShotSettings = ShotSettings()) -> list[ShotSpec]:
    """The shots of a CSV or JSON manifest; names must be unique (also ignoring case and Unicode form: OUTDIR may not
    tell)."""
    path = Path(path)
    base = path.resolve().parent
    shots = [
        _entry_to_shot(entry, base, defaults, entry_location(path, index))
        for index, entry in enumerate(read_entries(path, "shots"))
    ]
    if not shots:
        raise InputError(f"manifest {path} lists no shots")
    seen: dict[str, str] = {}
    for shot in shots:  # one file on macOS/Windows (case) or macOS (Unicode forms: é composed or e + accent)
        key = unicodedata.normalize("NFC", shot.name).casefold()
        if key in seen:
            raise InputError(
                f"manifest {path} has two shots named {seen[key]!r} and {shot.name!r}; give each a unique 'name'"
            )
        seen[key] = shot.name
    return shots
