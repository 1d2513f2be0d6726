"""Evaluation as in the LVCD paper: PSNR, SSIM, LPIPS, FID, FVD, EDMD and TC (see docs/metrics.md).

    >>> from lvcd.metrics import ClipSpec, EvalSettings, build_tools, evaluate_clips, format_table
    >>> tools = build_tools(lpips_weights=["alex.pth", "alexnet-owt-7be5be79.pth"])      # doctest: +SKIP
    >>> report = evaluate_clips([ClipSpec("shot", Path("out"), Path("gt"))], tools)        # doctest: +SKIP
    >>> print(format_table(report))                                                        # doctest: +SKIP

Single metrics work on (N, 3, H, W) float tensors in [0, 1]: :func:`psnr`, :func:`ssim`, :class:`lvcd.metrics.lpips.LPIPS`,
:func:`edmd_per_frame`, :func:`temporal_consistency`, :func:`frechet_distance` on :func:`feature_statistics`.
"""

from __future__ import annotations

from lvcd.metrics.clips import ClipSpec, load_clip, load_frames, parse_size, read_manifest
from lvcd.metrics.edmd import distance_map, edmd_per_frame
from lvcd.metrics.evaluate import EvalSettings, EvaluationReport, evaluate_clips, fvd_windows
from lvcd.metrics.frechet import FeatureStatistics, feature_statistics, frechet_distance
from lvcd.metrics.psnr_ssim import psnr, ssim
from lvcd.metrics.report import format_table, report_to_dict, write_json_atomic
from lvcd.metrics.tc import temporal_consistency
from lvcd.metrics.tools import ALL_METRICS, MetricTools, build_tools, parse_metrics

__all__ = [
    "ALL_METRICS",
    "ClipSpec",
    "EvalSettings",
    "EvaluationReport",
    "FeatureStatistics",
    "MetricTools",
    "build_tools",
    "distance_map",
    "edmd_per_frame",
    "evaluate_clips",
    "feature_statistics",
    "format_table",
    "frechet_distance",
    "fvd_windows",
    "load_clip",
    "load_frames",
    "parse_metrics",
    "parse_size",
    "psnr",
    "read_manifest",
    "report_to_dict",
    "ssim",
    "temporal_consistency",
    "write_json_atomic",
]
