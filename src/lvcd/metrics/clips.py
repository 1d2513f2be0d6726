"""What gets evaluated: clip specs (one pair or a manifest of many), frame loading and resizing.

Frames are read with :class:`lvcd.io.frames.FrameSource` (folders of images, videos, GIFs) and resized to the
evaluation size (256x256 by default, as in the paper, whatever the aspect ratio) with antialiased bilinear
filtering, then rounded to 8 bits, as if the frames had been saved at that size. Input line art is binarised at its
own size and then reduced so that no line is lost (:mod:`lvcd.metrics.linemask`). Prediction and ground truth must
have one aspect ratio (a clip of two is refused); of one aspect but different sizes, the clip carries a note.
``skip_frames`` leaves out the first frames of every sequence of a clip (e.g. a reference frame the output repeats).

A manifest lists many clips, as JSON (a list, or ``{"clips": [...]}``) or CSV with a header row (the rules of every
manifest: :mod:`lvcd.io.manifests`); each entry has
``pred`` and ``gt`` and optionally ``name``, ``lineart`` (the input line art, for EDMD) and ``labels`` (a folder
of region label maps, for the region metric). Relative paths are relative to the manifest. For a ``gt`` folder
inside an lvcd data root (``ROOT/img_<H>/<clip>``), :func:`with_root_inputs` adds the line art and label maps the
root keeps beside it.

    >>> specs = read_manifest("clips.json")                    # doctest: +SKIP
    >>> frames = load_frames(specs[0].pred, size=(256, 256))   # (T, 3, 256, 256) uint8   # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lvcd.errors import InputError
from lvcd.io.manifests import entry_fields, entry_location, entry_path, read_entries
from lvcd.io.sizing import parse_size  # noqa: F401 - lvcd.metrics exports the one size parser
from lvcd.metrics.labels import label_files, label_map_size, load_label_maps, root_inputs
from lvcd.metrics.linemask import SKETCH_THRESHOLD, line_pixels, resize_lines

DEFAULT_SIZE = (256, 256)
_RESIZE_CHUNK = 32


@dataclass(frozen=True)
class ClipSpec:
    """One generated clip, its ground truth and, optionally, the line art it was drawn from and region label maps."""

    name: str
    pred: Path
    gt: Path
    lineart: Path | None = None
    labels: Path | None = None


@dataclass(frozen=True)
class ClipFrames:
    """A clip's frames at the evaluation size, (T, 3, H, W) uint8 each; the input line art's line pixels (T, H, W)
    bool; label maps (T, H, W) int64."""

    spec: ClipSpec
    pred: torch.Tensor
    gt: torch.Tensor
    lineart: torch.Tensor | None = None
    labels: torch.Tensor | None = None
    labels_size: tuple[int, int] | None = None  # the label maps' own (height, width), before resizing
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # own (height, width) of "pred", "gt", "lineart"


def as_unit_float(frames: torch.Tensor) -> torch.Tensor:
    """uint8 frames -> float32 in [0, 1]; float frames are returned as float32 unchanged."""
    return frames.float() / 255.0 if frames.dtype == torch.uint8 else frames.float()


def resize_frames(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(T, 3, h, w) uint8 -> (T, 3, H, W) uint8: antialiased bilinear, rounded (no-op at the target size)."""
    if tuple(frames.shape[-2:]) == tuple(size):
        return frames
    resized = F.interpolate(frames.float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    return resized.round().clamp(0, 255).to(torch.uint8)


def _open_source(path: Path):
    try:
        from lvcd.io.frames import FrameSource
    except ImportError as err:
        raise InputError("reading frames needs lvcd.io.frames, which this installation lacks") from err
    return FrameSource.open(path)


def _read_converted(
    path: str | os.PathLike, convert: Callable[[torch.Tensor], torch.Tensor], skip: int = 0
) -> tuple[torch.Tensor, tuple[int, int]]:
    """``convert`` applied to chunks of (n, 3, h, w) uint8 frames, all frames but the first ``skip``; also the
    frames' own (height, width)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file or folder: {path}")
    chunks, pending = [], []
    size_hw = None

    def flush() -> None:
        if pending:
            batch = torch.from_numpy(np.stack(pending)).permute(0, 3, 1, 2)
            chunks.append(convert(batch))
            pending.clear()

    for index, frame in enumerate(_open_source(path)):
        array = np.asarray(frame)
        size_hw = size_hw or (int(array.shape[0]), int(array.shape[1]))
        if index < skip:
            continue
        if pending and array.shape != pending[0].shape:
            flush()
        pending.append(array)
        if len(pending) == _RESIZE_CHUNK:
            flush()
    flush()
    if not chunks:
        if skip and size_hw:
            raise InputError(f"{path} holds no frames after the first {skip} (--skip-frames); skip fewer frames")
        raise InputError(f"{path} holds no frames")
    return torch.cat(chunks), size_hw


def _resized(size: tuple[int, int]) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda batch: resize_frames(batch, size)


def _lines(size: tuple[int, int], threshold: float) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda batch: resize_lines(line_pixels(batch, threshold), size)


def load_frames(path: str | os.PathLike, size: tuple[int, int] = DEFAULT_SIZE, skip: int = 0) -> torch.Tensor:
    """All frames of a folder/video/GIF (but the first ``skip``) at the evaluation size: (T, 3, H, W) uint8."""
    return _read_converted(path, _resized(size), skip)[0]


def load_lineart(
    path: str | os.PathLike, size: tuple[int, int] = DEFAULT_SIZE, skip: int = 0, threshold: float = SKETCH_THRESHOLD
) -> torch.Tensor:
    """Line pixels of input line art (either polarity) at the evaluation size: (T, H, W) bool, binarised at the line
    art's own size and reduced without dropping thin lines (:mod:`lvcd.metrics.linemask`)."""
    return _read_converted(path, _lines(size, threshold), skip)[0]


def check_clip_inputs(spec: ClipSpec, skip_frames: int = 0) -> None:
    """Frame counts of prediction, ground truth, line art and label maps (more than ``skip_frames``), the aspect
    ratios of the frames, the label maps' size and kind, and the frame files' integrity, checked without decoding
    pixels (videos are demuxed), so a bad clip is reported before any clip is scored. Errors name the clip."""
    try:
        _check_clip_inputs(spec, skip_frames)
    except InputError as err:
        message = str(err)
        raise InputError(message if message.startswith("clip ") else f"clip {spec.name!r}: {message}") from None


def _intact_source(path: Path):
    source = _open_source(path)
    source.check_intact()
    return source


def same_aspect(first_hw: tuple[int, int], second_hw: tuple[int, int]) -> bool:
    """Whether two frame sizes have one aspect ratio, up to rounding: the larger frame scaled to the smaller's
    width (or height) is within one pixel of the smaller's height (or width)."""
    (small_h, small_w), (large_h, large_w) = sorted([first_hw, second_hw], key=lambda hw: hw[0] * hw[1])
    return abs(large_h * small_w / large_w - small_h) <= 1 or abs(large_w * small_h / large_h - small_w) <= 1


def check_aspect(name: str, sizes: dict[str, tuple[int, int]]) -> None:
    """Refuse (InputError) ground truth or line art of another aspect ratio than the prediction: stretched to the
    evaluation size, their pixels would no longer lie over each other."""
    pred_h, pred_w = sizes["pred"]
    for role, what in (("gt", "ground truth"), ("lineart", "line art")):
        if role in sizes and not same_aspect(sizes["pred"], sizes[role]):
            height, width = sizes[role]
            raise InputError(
                f"clip {name!r}: the prediction is {pred_w}x{pred_h} but the {what} is {width}x{height} (width x "
                f"height), another aspect ratio, so their pixels do not match; resize one to the other's size"
            )


def _check_clip_inputs(spec: ClipSpec, skip_frames: int = 0) -> None:
    pred_source, gt_source = _intact_source(spec.pred), _intact_source(spec.gt)
    expected = len(pred_source)
    counts = {"the ground truth has {} frames": len(gt_source)}
    sizes = {"pred": pred_source.size_hw, "gt": gt_source.size_hw}
    if spec.lineart is not None:
        lineart_source = _intact_source(spec.lineart)
        counts["the line art has {} frames"] = len(lineart_source)
        sizes["lineart"] = lineart_source.size_hw
    if spec.labels is not None:
        files = label_files(spec.labels)
        counts["there are {} label maps"] = len(files)
        height, width = label_map_size(files[0])
        gt_height, gt_width = _open_source(spec.gt).size_hw
        if (height, width) != (gt_height, gt_width):
            raise InputError(
                f"clip {spec.name!r}: the label maps are {width}x{height} but the ground-truth frames are "
                f"{gt_width}x{gt_height} (width x height); give label maps of the ground-truth frames themselves"
            )
    for phrase, count in counts.items():
        if count != expected:
            raise InputError(
                f"clip {spec.name!r}: the prediction has {expected} frames but {phrase.format(count)}; "
                "metrics compare frame t with frame t, so give frame-aligned sequences of equal length"
            )
    check_aspect(spec.name, sizes)
    if expected <= skip_frames:
        raise InputError(
            f"clip {spec.name!r} has {expected} frames, and skipping the first {skip_frames} (--skip-frames) leaves "
            "none to score; skip fewer frames"
        )


def with_root_inputs(spec: ClipSpec) -> ClipSpec:
    """``spec`` with its missing line art and label maps taken from the data root its ``gt`` lies in, if any
    (see :func:`lvcd.metrics.labels.root_inputs`); paths already given are kept."""
    found = root_inputs(spec.gt)
    return replace(
        spec,
        lineart=spec.lineart if spec.lineart is not None else found.get("lineart"),
        labels=spec.labels if spec.labels is not None else found.get("labels"),
    )


def load_clip(
    spec: ClipSpec,
    size: tuple[int, int] = DEFAULT_SIZE,
    skip_frames: int = 0,
    sketch_threshold: float = SKETCH_THRESHOLD,
) -> ClipFrames:
    """Load a clip's prediction, ground truth, line art (as line pixels, binarised at ``sketch_threshold``) and
    label maps, all but their first ``skip_frames`` frames; frame counts must agree, aspect ratios too."""
    pred, pred_hw = _read_converted(spec.pred, _resized(size), skip_frames)
    gt, gt_hw = _read_converted(spec.gt, _resized(size), skip_frames)
    sizes = {"pred": pred_hw, "gt": gt_hw}
    if pred.shape[0] != gt.shape[0]:
        raise InputError(
            f"clip {spec.name!r}: the prediction has {pred.shape[0]} frames but the ground truth has {gt.shape[0]}; "
            "metrics compare frame t with frame t, so give frame-aligned sequences of equal length"
        )
    lineart = None
    if spec.lineart is not None:
        lineart, sizes["lineart"] = _read_converted(spec.lineart, _lines(size, sketch_threshold), skip_frames)
        if lineart.shape[0] != pred.shape[0]:
            raise InputError(
                f"clip {spec.name!r}: the line art has {lineart.shape[0]} frames but the prediction has {pred.shape[0]}"
            )
    labels = labels_size = None
    if spec.labels is not None:
        labels_size = label_map_size(label_files(spec.labels)[0])
        labels = load_label_maps(spec.labels, size)[skip_frames:]
        if labels.shape[0] != pred.shape[0]:
            raise InputError(
                f"clip {spec.name!r}: there are {labels.shape[0]} label maps but the prediction has {pred.shape[0]} "
                "frames; give one label map per frame"
            )
    check_aspect(spec.name, sizes)
    return ClipFrames(spec=spec, pred=pred, gt=gt, lineart=lineart, labels=labels, labels_size=labels_size, sizes=sizes)


MANIFEST_FIELDS = ("name", "pred", "gt", "lineart", "labels")


def _entry_to_spec(entry: dict, base: Path, where: str) -> ClipSpec:
    given = entry_fields(entry, MANIFEST_FIELDS, ("pred", "gt"), where)
    name = str(given.get("name", given["pred"])).strip()
    lineart = entry_path(given["lineart"], base) if "lineart" in given else None
    labels = entry_path(given["labels"], base) if "labels" in given else None
    return ClipSpec(name, entry_path(given["pred"], base), entry_path(given["gt"], base), lineart, labels)


def read_manifest(path: str | os.PathLike) -> list[ClipSpec]:
    """Clip specs from a JSON or CSV manifest (see the module docstring); names must be unique."""
    path = Path(path)
    entries = read_entries(path, "clips")
    base = path.resolve().parent
    specs = [_entry_to_spec(entry, base, entry_location(path, index)) for index, entry in enumerate(entries)]
    if not specs:
        raise InputError(f"manifest {path} lists no clips")
    names = [spec.name for spec in specs]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise InputError(f"manifest {path} repeats clip names: {', '.join(duplicates)}; give each a unique 'name'")
    return specs
