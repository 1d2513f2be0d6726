"""Score generated clips against their ground truth with the paper's seven metrics, per clip and overall.

- PSNR, SSIM, LPIPS, EDMD: per frame; a clip's value is the mean over its frames, the aggregate the mean over
  all frames of all clips.
- TC: per clip (it is a property of a whole video); the aggregate is the mean over clips.
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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from lvcd.errors import InputError
from lvcd.metrics.clips import DEFAULT_SIZE, ClipFrames, ClipSpec, as_unit_float, load_clip
from lvcd.metrics.edmd import SKETCH_THRESHOLD, edmd_from_sketches, extract_sketches, lineart_to_sketch
from lvcd.metrics.frechet import feature_statistics, frechet_distance
from lvcd.metrics.psnr_ssim import psnr, ssim
from lvcd.metrics.tc import temporal_consistency
from lvcd.metrics.tools import ALL_METRICS, MetricTools

FVD_CLIP_LENGTH = 16
PER_FRAME_METRICS = ("psnr", "ssim", "lpips", "edmd", "edmd_lineart")


@dataclass(frozen=True)
class EvalSettings:
    """How frames are evaluated; the defaults follow the paper (256x256, 16-frame FVD windows)."""

    size: tuple[int, int] = DEFAULT_SIZE
    metrics: tuple[str, ...] = ALL_METRICS
    batch_size: int = 8
    fvd_clip_length: int = FVD_CLIP_LENGTH
    fvd_stride: int | None = None  # None: equal to fvd_clip_length (non-overlapping windows)
    sketch_threshold: float = SKETCH_THRESHOLD


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
        names = [m for m in self.settings.metrics]
        if "edmd" in names and any(c.spec.lineart is not None for c in self.clips):
            names.insert(names.index("edmd") + 1, "edmd_lineart")
        return names


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
    if "edmd" in metrics:
        pred_sketch = extract_sketches(tools.sketch, pred, bs)
        per_frame["edmd"] = edmd_from_sketches(
            pred_sketch, extract_sketches(tools.sketch, gt, bs), settings.sketch_threshold
        )
        if clip.lineart is not None:
            given = torch.cat(_batched(lineart_to_sketch, clip.lineart, batch_size=bs))
            per_frame["edmd_lineart"] = edmd_from_sketches(pred_sketch, given, settings.sketch_threshold)
        step("edmd")
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
    if "tc" in metrics:
        if pred.shape[0] < 2:
            result.metrics["tc"] = None
            result.notes.append("tc: needs at least 2 frames")
        else:
            tc = temporal_consistency(pred, gt, tools.flow)
            result.metrics["tc"] = tc.tc if math.isfinite(tc.tc) else None
            result.details.update(tc_pred_warping_error=tc.pred_error, tc_gt_warping_error=tc.gt_error)
            if not math.isfinite(tc.tc):
                result.notes.append("tc: the ground truth does not change between frames, so the ratio is undefined")
        step("tc")
    for name in ("fid", "fvd"):
        if name in metrics and result.metrics.get(name) is None:
            result.notes.append(f"{name}: per-clip value needs at least 2 samples (see the aggregate)")
    return result


def aggregate(results: Sequence[ClipResult], metrics: Sequence[str]) -> tuple[dict[str, float | None], dict[str, int]]:
    """Pool per-frame metrics over all frames, average TC over clips, pool features for FID/FVD."""
    values: dict[str, float | None] = {}
    samples: dict[str, int] = {}
    for name in PER_FRAME_METRICS:
        frames = [v for r in results for v in r.per_frame.get(name, [])]
        if frames:
            values[name] = float(np.mean(frames))
    if "tc" in metrics:
        values["tc"] = _mean(r.metrics.get("tc") for r in results)
    for name in ("fid", "fvd"):
        if name in metrics and all(name in r.features for r in results):
            pred = np.concatenate([r.features[name][0] for r in results])
            gt = np.concatenate([r.features[name][1] for r in results])
            values[name] = _frechet_or_none(pred, gt)
            samples[name] = pred.shape[0]
    return values, samples


def evaluate_clips(
    specs: Sequence[ClipSpec], tools: MetricTools, settings: EvalSettings = EvalSettings(), progress: bool = True
) -> EvaluationReport:
    """Load and score every clip, then aggregate. Metrics in ``tools.skipped`` are left out (reported)."""
    if not specs:
        raise InputError("nothing to evaluate: give --pred and --gt, or --manifest")
    skipped = dict(tools.skipped)
    needed = {"lpips": tools.lpips, "fid": tools.inception, "fvd": tools.i3d, "edmd": tools.sketch, "tc": tools.flow}
    for name in settings.metrics:
        if name in needed and needed[name] is None and name not in skipped:
            skipped[name] = "no network/extractor was set up for it (see build_tools)"
    metrics = [m for m in settings.metrics if m not in skipped]
    results = []
    with tqdm(total=len(specs) * (len(metrics) + 1), desc="evaluate", unit="step", disable=not progress) as bar:

        def step(name: str) -> None:
            bar.set_postfix_str(name)
            bar.update(1)

        for spec in specs:
            bar.set_postfix_str(f"{spec.name}: loading")
            clip = load_clip(spec, settings.size)
            bar.update(1)
            with torch.inference_mode():
                results.append(evaluate_clip(clip, tools, settings, metrics, step))
    values, samples = aggregate(results, metrics)
    for name in settings.metrics:
        values.setdefault(name, None)
    notes = []
    if "fvd" in samples and samples["fvd"] < 2:
        notes.append("fvd: fewer than 2 windows in all clips, so FVD is undefined; evaluate longer or more clips")
    return EvaluationReport(
        settings=settings,
        clips=results,
        aggregate=values,
        aggregate_samples=samples,
        skipped=skipped,
        info=dict(tools.info),
        notes=notes,
    )
