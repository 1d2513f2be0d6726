"""Score generated clips against their ground truth with the paper's seven metrics (and variants), per clip and overall.

- PSNR, SSIM, LPIPS, EDMD (``edmd``: against the input line art, needs it; ``edmd_gt``: against the ground truth's
  sketch): per frame; a clip's value is the mean over its frames, the aggregate the mean over all frames of all
  clips (that have the input).
- TC (``tc``, the paper's form; ``tc_mse``, the masked variant): per clip (a property of a whole video); the
  aggregate is the mean over clips.
- Region accuracy (``region``, clips with label maps): per clip over all its frames; the aggregate pools the
  regions of all clips (sum of correct areas / sum of areas).
- FID: Fréchet distance of Inception features of all generated vs all ground-truth frames.
- FVD: the same with I3D features of 16-frame windows: non-overlapping windows from the first frame
  (``fvd_stride`` = 16), frames left over at the end are not used; a clip shorter than 16 frames gives one
  window padded by repeating its last frame (noted in the output).
  FID and FVD are dataset-level metrics: the aggregate pools every clip, as the paper's tables do. Per clip they
  are also reported (from that clip's frames/windows alone) when it has at least 2 samples; such small-sample
  values are biased upwards and only comparable at equal sample counts.

    >>> report = evaluate_clips([ClipSpec("shot1", Path("out"), Path("gt"))], build_tools())   # doctest: +SKIP
    >>> print(format_table(report))                                                            # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from lvcd.errors import InputError
from lvcd.metrics.clips import DEFAULT_SIZE, ClipFrames, ClipSpec, as_unit_float, check_clip_inputs, load_clip
from lvcd.metrics.edmd import SKETCH_THRESHOLD, edmd_from_lines, edmd_from_sketches, extract_sketches, line_mask
from lvcd.metrics.frechet import feature_statistics, frechet_distance
from lvcd.metrics.psnr_ssim import psnr, ssim
from lvcd.metrics.raft import padded_side
from lvcd.metrics.region import (
    REGION_THRESHOLD,
    RegionAccuracy,
    label_boundaries,
    pool_region_accuracy,
    region_accuracy,
)
from lvcd.metrics.tc import (
    TemporalConsistency,
    estimate_motion,
    temporal_consistency,
    temporal_consistency_mse,
)
from lvcd.metrics.tools import DEFAULT_METRICS, SKETCH_OPTIONS, MetricTools, sketch_method

FVD_CLIP_LENGTH = 16
PER_FRAME_METRICS = ("psnr", "ssim", "lpips", "edmd", "edmd_gt")
# Metrics that need an input besides the frames, and what to give for it.
NEEDS_INPUT = {
    "edmd": ("lineart", "no input line art: give --lineart (or a manifest 'lineart' column); edmd_gt is the variant"),
    "region": ("labels", "no region label maps: give --labels (or a manifest 'labels' column)"),
}
# What each weights option of `lvcd evaluate` takes: said when the file given is not there.
WEIGHT_FILES_WANTED = {
    "--lpips-weights": "lpips v0.1 alex.pth and torchvision's alexnet-owt-7be5be79.pth (--lpips-weights for each)",
    "--inception-weights": "pt_inception-2015-12-05-6726825d.pth (or inception-2015-12-05.pt with --allow-torchscript)",
    "--i3d-weights": "i3d_pretrained_400.pt (or i3d_torchscript.pt with --allow-torchscript)",
    "--raft-weights": "raft-things.pth (the authors') or torchvision's raft_large_*.pth",
}


@dataclass(frozen=True)
class EvalSettings:
    """How frames are evaluated; the defaults follow the paper (256x256, 16-frame FVD windows)."""

    size: tuple[int, int] = DEFAULT_SIZE
    metrics: tuple[str, ...] = DEFAULT_METRICS
    batch_size: int = 8
    fvd_clip_length: int = FVD_CLIP_LENGTH
    fvd_stride: int | None = None  # None: equal to fvd_clip_length (non-overlapping windows)
    sketch_threshold: float = SKETCH_THRESHOLD
    region_threshold: float = REGION_THRESHOLD
    region_margin: int = 1  # pixels of the label maps' own resolution left out around every line
    # Frames left out at the start of every clip, e.g. 1 for output that begins with the reference frame itself
    # (lvcd's does: the reference decoded back through the VAE, which flatters PSNR, SSIM and LPIPS).
    skip_frames: int = 0


@dataclass
class ClipResult:
    """One clip's scores; ``features`` keeps (pred, gt) FID/FVD features for pooling (not serialised)."""

    spec: ClipSpec
    frames: int
    metrics: dict[str, float | None] = field(default_factory=dict)
    per_frame: dict[str, list[float]] = field(default_factory=dict)
    samples: dict[str, int] = field(default_factory=dict)
    details: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    features: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)


@dataclass
class EvaluationReport:
    """Per-clip results, the aggregate over all clips, skipped metrics with reasons, and the settings used."""

    settings: EvalSettings
    clips: list[ClipResult]
    aggregate: dict[str, float | None]
    aggregate_samples: dict[str, int]
    skipped: dict[str, str]
    info: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    @property
    def metric_names(self) -> list[str]:
        return list(self.settings.metrics)


def fvd_windows(num_frames: int, length: int = FVD_CLIP_LENGTH, stride: int | None = None) -> list[list[int]]:
    """Frame indices of the FVD windows of a clip (see the module docstring for the rules)."""
    stride = stride or length
    if num_frames < length:
        return [list(range(num_frames)) + [num_frames - 1] * (length - num_frames)]
    return [list(range(start, start + length)) for start in range(0, num_frames - length + 1, stride)]


def _batched(fn, *frames: torch.Tensor, batch_size: int) -> list:
    """``fn`` on successive batches of uint8 frames converted to float in [0, 1] (a clip is kept in 8 bits)."""
    return [
        fn(*(as_unit_float(f[i : i + batch_size]) for f in frames)) for i in range(0, frames[0].shape[0], batch_size)
    ]


def _frechet_or_none(pred: np.ndarray, gt: np.ndarray) -> float | None:
    if pred.shape[0] < 2:
        return None
    return frechet_distance(feature_statistics(pred), feature_statistics(gt))


def _mean(values) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def evaluate_clip(
    clip: ClipFrames,
    tools: MetricTools,
    settings: EvalSettings,
    metrics: Sequence[str],
    step: Callable[[str], None] = lambda name: None,
) -> ClipResult:
    """All selected (and not skipped) metrics of one loaded clip; ``step(metric)`` is called after each."""
    pred, gt = clip.pred, clip.gt  # (T, 3, H, W) uint8
    bs = settings.batch_size
    result = ClipResult(spec=clip.spec, frames=pred.shape[0])
    _size_note(result, clip, settings)
    per_frame: dict[str, np.ndarray] = {}
    if "psnr" in metrics:
        per_frame["psnr"] = torch.cat(_batched(psnr, pred, gt, batch_size=bs)).numpy()
        step("psnr")
    if "ssim" in metrics:
        per_frame["ssim"] = torch.cat(_batched(ssim, pred, gt, batch_size=bs)).numpy()
        step("ssim")
    if "lpips" in metrics:
        with torch.no_grad():
            per_frame["lpips"] = torch.cat(_batched(tools.lpips, pred, gt, batch_size=bs)).double().numpy()
        step("lpips")
    if {"edmd", "edmd_gt"} & set(metrics):
        pred_sketch = extract_sketches(tools.sketch, pred, bs)
        if "edmd" in metrics:
            if clip.lineart is not None:
                pred_lines = line_mask(pred_sketch, settings.sketch_threshold)
                per_frame["edmd"] = edmd_from_lines(pred_lines, clip.lineart)
            else:
                result.metrics["edmd"] = None
                result.notes.append("edmd: no input line art for this clip (edmd_gt compares with the ground truth)")
            step("edmd")
        if "edmd_gt" in metrics:
            gt_sketch = extract_sketches(tools.sketch, gt, bs)
            per_frame["edmd_gt"] = edmd_from_sketches(pred_sketch, gt_sketch, settings.sketch_threshold)
            step("edmd_gt")
    for name, values in per_frame.items():
        result.per_frame[name] = [float(v) for v in values]
        result.metrics[name] = float(np.mean(values))
    if "fid" in metrics:
        feats = (
            np.concatenate(_batched(tools.inception, pred, batch_size=bs)),
            np.concatenate(_batched(tools.inception, gt, batch_size=bs)),
        )
        result.features["fid"] = feats
        result.samples["fid"] = feats[0].shape[0]
        result.metrics["fid"] = _frechet_or_none(*feats)
        step("fid")
    if "fvd" in metrics:
        windows = torch.tensor(fvd_windows(pred.shape[0], settings.fvd_clip_length, settings.fvd_stride))
        if pred.shape[0] < settings.fvd_clip_length:
            result.notes.append(
                f"fvd: {pred.shape[0]} frames padded to {settings.fvd_clip_length} by repeating the last"
            )
        feats = (
            np.concatenate([tools.i3d(as_unit_float(pred[w])) for w in windows.split(2)]),
            np.concatenate([tools.i3d(as_unit_float(gt[w])) for w in windows.split(2)]),
        )
        result.features["fvd"] = feats
        result.samples["fvd"] = feats[0].shape[0]
        result.metrics["fvd"] = _frechet_or_none(*feats)
        step("fvd")
    if {"tc", "tc_mse"} & set(metrics):
        _temporal_consistency(result, pred, gt, tools, [m for m in ("tc", "tc_mse") if m in metrics])
        for name in ("tc", "tc_mse"):
            if name in metrics:
                step(name)
    if "region" in metrics:
        if clip.labels is None:
            result.metrics["region"] = None
            result.notes.append("region: no label maps for this clip")
        else:
            _region(result, clip, settings)
        step("region")
    for name in ("fid", "fvd"):
        if name in metrics and result.metrics.get(name) is None:
            result.notes.append(f"{name}: per-clip value needs at least 2 samples (see the aggregate)")
    return result


def _size_note(result: ClipResult, clip: ClipFrames, settings: EvalSettings) -> None:
    """Say when prediction and ground truth came at different sizes (one aspect ratio: others are refused): each is
    resized to the evaluation size from its own, so even identical pictures score below a perfect match."""
    pred_hw, gt_hw = clip.sizes.get("pred"), clip.sizes.get("gt")
    if pred_hw is not None and gt_hw is not None and pred_hw != gt_hw:
        result.notes.append(
            f"the prediction is {pred_hw[1]}x{pred_hw[0]} but the ground truth {gt_hw[1]}x{gt_hw[0]}: each was "
            f"resized to {settings.size[1]}x{settings.size[0]} from its own size, which lowers the scores; resize "
            "one to the other's size for values comparable with clips of one size"
        )


def _temporal_consistency(result: ClipResult, pred, gt, tools: MetricTools, names: Sequence[str]) -> None:
    """``tc`` and/or ``tc_mse`` of one clip, from one estimate of the ground truth's motion."""
    if pred.shape[0] < 2:
        for name in names:
            result.metrics[name] = None
            result.notes.append(f"{name}: needs at least 2 frames")
        return
    motion = estimate_motion(gt, tools.flow, with_forward="tc_mse" in names)
    compute = {"tc": temporal_consistency, "tc_mse": temporal_consistency_mse}
    for name in names:
        value: TemporalConsistency = compute[name](pred, gt, tools.flow, motion=motion)
        result.metrics[name] = value.tc if math.isfinite(value.tc) else None
        result.details.update(
            {f"{name}_pred_warping_error": value.pred_error, f"{name}_gt_warping_error": value.gt_error}
        )
        if not math.isfinite(value.tc):
            result.notes.append(f"{name}: the ground truth does not change between frames, so the ratio is undefined")


def _region_margin(settings: EvalSettings, labels_size: tuple[int, int]) -> int:
    """The margin around lines in evaluation pixels: ``region_margin`` label-map pixels, scaled up with the frames
    (bilinear upscaling blends colours up to one source pixel away from a line)."""
    if settings.region_margin <= 0:
        return 0
    scale = max(settings.size[0] / labels_size[0], settings.size[1] / labels_size[1])
    return max(settings.region_margin, math.ceil(settings.region_margin * scale))


def _region(result: ClipResult, clip: ClipFrames, settings: EvalSettings) -> None:
    """Region accuracy of one clip, frame batch by frame batch, pooled over its frames. Lines: the label
    boundaries, and the input line art's lines when it is given."""
    margin = _region_margin(settings, clip.labels_size or settings.size)
    parts: list[RegionAccuracy] = []
    for start in range(0, clip.pred.shape[0], settings.batch_size):
        window = slice(start, start + settings.batch_size)
        labels = clip.labels[window]
        lines = label_boundaries(labels)
        if clip.lineart is not None:
            lines |= clip.lineart[window]
        parts.append(
            region_accuracy(clip.pred[window], clip.gt[window], labels, lines, settings.region_threshold, margin)
        )
    pooled = pool_region_accuracy(parts)
    result.metrics["region"] = pooled.accuracy if pooled.area else None
    result.samples["region"] = pooled.regions
    result.details.update(
        region_regions=pooled.regions,
        region_correct=pooled.correct,
        region_area=pooled.area,
        region_correct_area=pooled.correct_area,
        region_margin_px=margin,
    )
    if not pooled.area:
        result.notes.append("region: every region lies on or next to the lines, nothing to judge")
    if clip.labels_size is not None and tuple(clip.labels_size) != tuple(settings.size):
        height, width = clip.labels_size
        result.notes.append(
            f"region: label maps resized from {width}x{height} to {settings.size[1]}x{settings.size[0]} (nearest), "
            f"{margin} px left out around the lines"
        )


def aggregate(results: Sequence[ClipResult], metrics: Sequence[str]) -> tuple[dict[str, float | None], dict[str, int]]:
    """Pool per-frame metrics over all frames, average TC over clips, pool features for FID/FVD."""
    values: dict[str, float | None] = {}
    samples: dict[str, int] = {}
    for name in PER_FRAME_METRICS:
        frames = [v for r in results for v in r.per_frame.get(name, [])]
        if frames:
            values[name] = float(np.mean(frames))
    for name in ("tc", "tc_mse"):
        if name in metrics:
            values[name] = _mean(r.metrics.get(name) for r in results)
    if "region" in metrics:
        area = sum(r.details.get("region_area", 0) for r in results)
        if area:
            values["region"] = sum(r.details.get("region_correct_area", 0) for r in results) / area
            samples["region"] = int(sum(r.details.get("region_regions", 0) for r in results))
    for name in ("fid", "fvd"):
        if name in metrics and all(name in r.features for r in results):
            pred = np.concatenate([r.features[name][0] for r in results])
            gt = np.concatenate([r.features[name][1] for r in results])
            values[name] = _frechet_or_none(pred, gt)
            samples[name] = pred.shape[0]
    return values, samples


def check_inputs(specs: Sequence[ClipSpec], settings: EvalSettings, progress: bool = True) -> None:
    """Everything ``evaluate_clips`` refuses about the clips themselves (none given, a negative ``skip_frames``, and
    per clip :func:`check_clip_inputs`: frame counts, aspect ratios, label maps, damaged frames, all without decoding
    pixels): call it before :func:`build_tools` loads any network, then pass ``inputs_checked=True``."""
    if not specs:
        raise InputError("nothing to evaluate: give --pred and --gt, or --manifest")
    if settings.skip_frames < 0:
        raise InputError(f"skip_frames (--skip-frames) is {settings.skip_frames}; give 0 or more frames to leave out")
    for spec in tqdm(specs, desc="check inputs", unit="clip", disable=not progress or len(specs) < 2):
        check_clip_inputs(spec, settings.skip_frames)


def _require_file(option: str, path: str | os.PathLike, what: str) -> None:
    """``path``, given as ``option``, is a file; else one line naming the option and ``what`` to give."""
    path = Path(path).expanduser()
    if not path.is_file():
        state = "is a folder" if path.is_dir() else "is not a regular file" if path.exists() else "does not exist"
        raise InputError(f"{option} {path} {state}: give {what}")


def check_weight_options(
    metrics: Sequence[str],
    *,
    lpips_weights: Sequence[str | os.PathLike] = (),
    inception_weights: str | os.PathLike | None = None,
    i3d_weights: str | os.PathLike | None = None,
    sketch_method: str | None = None,
    sketch_weights: str | os.PathLike | None = None,
    flow: str = "auto",
    raft_weights: str | os.PathLike | None = None,
) -> None:
    """Before :func:`build_tools` loads any network: each weights file given for a selected metric exists, and the
    EDMD sketch method is known and finds its weights; every error names its option (``build_tools`` would find
    each of these only after loading the networks before it)."""
    wanted = set(metrics)
    given = {
        "--lpips-weights": list(lpips_weights) if "lpips" in wanted else [],
        "--inception-weights": [inception_weights] if inception_weights and "fid" in wanted else [],
        "--i3d-weights": [i3d_weights] if i3d_weights and "fvd" in wanted else [],
        "--raft-weights": [raft_weights] if raft_weights and {"tc", "tc_mse"} & wanted and flow != "dis" else [],
    }
    for option, paths in given.items():
        for path in paths:
            _require_file(option, path, WEIGHT_FILES_WANTED[option])
    if {"edmd", "edmd_gt"} & wanted:
        _check_sketch_options(sketch_method, sketch_weights)


def _check_sketch_options(method: str | None, weights: str | os.PathLike | None) -> None:
    """The EDMD sketch extractor ``build_tools`` will make: a known method and, for a network, its weights file
    found (given, in $LVCD_LINEART_WEIGHTS or a cache). Unchecked when EDMD is skipped for a missing dependency."""
    from lvcd.metrics.optional import MissingDependencyError, import_distance_transform

    try:
        import_distance_transform()
        from lvcd.lineart.extractor import check_method
    except (MissingDependencyError, ImportError):
        return  # build_tools skips EDMD, saying why
    check_method(sketch_method(method, weights), weights, SKETCH_OPTIONS)


def evaluate_clips(
    specs: Sequence[ClipSpec],
    tools: MetricTools,
    settings: EvalSettings = EvalSettings(),
    progress: bool = True,
    inputs_checked: bool = False,
) -> EvaluationReport:
    """Load and score every clip, then aggregate. Metrics in ``tools.skipped`` are left out (reported).
    ``inputs_checked``: :func:`check_inputs` already ran on these ``specs`` and ``settings`` (before the tools were
    built), so their frames are not checked again."""
    if not inputs_checked:
        check_inputs(specs, settings, progress)
    skipped = dict(tools.skipped)
    needed = {
        "lpips": tools.lpips,
        "fid": tools.inception,
        "fvd": tools.i3d,
        "edmd": tools.sketch,
        "edmd_gt": tools.sketch,
        "tc": tools.flow,
        "tc_mse": tools.flow,
    }
    for name in settings.metrics:
        if name in needed and needed[name] is None and name not in skipped:
            skipped[name] = "no network/extractor was set up for it (see build_tools)"
    for name, (field_name, reason) in NEEDS_INPUT.items():
        if name in settings.metrics and name not in skipped and all(getattr(s, field_name) is None for s in specs):
            skipped[name] = reason
    metrics = [m for m in settings.metrics if m not in skipped]
    min_side = getattr(tools.flow, "min_side", 0)
    if any(m in ("tc", "tc_mse") for m in metrics) and padded_side(min(settings.size)) < min_side:
        raise InputError(
            f"TC's {tools.flow.name} flow needs frames of at least {min_side}x{min_side}, but the evaluation size is "
            f"{settings.size[0]}x{settings.size[1]}; evaluate at a larger --size (the paper's 256x256 is the default)"
        )
    results = []
    with tqdm(total=len(specs) * (len(metrics) + 1), desc="evaluate", unit="step", disable=not progress) as bar:

        def step(name: str) -> None:
            bar.set_postfix_str(name)
            bar.update(1)

        for spec in specs:
            bar.set_postfix_str(f"{spec.name}: loading")
            clip = load_clip(spec, settings.size, settings.skip_frames, settings.sketch_threshold)
            bar.update(1)
            with torch.inference_mode():
                results.append(evaluate_clip(clip, tools, settings, metrics, step))
    values, samples = aggregate(results, metrics)
    for name in settings.metrics:
        values.setdefault(name, None)
    notes = list(tools.notes)  # what setting the tools up chose in the user's stead (a fallback, a file passed over)
    if "fvd" in samples and samples["fvd"] < 2:
        notes.append("fvd: fewer than 2 windows in all clips, so FVD is undefined; evaluate longer or more clips")
    for name, (field_name, _) in NEEDS_INPUT.items():
        having = sum(getattr(spec, field_name) is not None for spec in specs)
        if name in metrics and having < len(specs):
            notes.append(f"{name}: over the {having} of {len(specs)} clips that have {field_name}")
    return EvaluationReport(
        settings=settings,
        clips=results,
        aggregate=values,
        aggregate_samples=samples,
        skipped=skipped,
        info=dict(tools.info),
        notes=notes,
    )
