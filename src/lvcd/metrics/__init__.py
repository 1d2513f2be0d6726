"""Evaluation as in the LVCD paper: PSNR, SSIM, LPIPS, FID, FVD, EDMD and TC, plus region accuracy for data with
label maps and the variants edmd_gt and tc_mse (see docs/metrics.md).

    >>> from lvcd.metrics import ClipSpec, EvalSettings, build_tools, evaluate_clips, format_table
    >>> tools = build_tools(lpips_weights=["alex.pth", "alexnet-owt-7be5be79.pth"])      # doctest: +SKIP
    >>> report = evaluate_clips([ClipSpec("shot", Path("out"), Path("gt"))], tools)        # doctest: +SKIP
    >>> print(format_table(report))                                                        # doctest: +SKIP

Single metrics work on (N, 3, H, W) float tensors in [0, 1]: :func:`psnr`, :func:`ssim`, :class:`lvcd.metrics.lpips.LPIPS`,
:func:`edmd_per_frame` (against the input line art) and :func:`edmd_gt_per_frame`, :func:`temporal_consistency`
and :func:`temporal_consistency_mse`, :func:`region_accuracy`, :func:`frechet_distance` on :func:`feature_statistics`.
"""

from __future__ import annotations

from lvcd.metrics.clips import ClipSpec, load_clip, load_frames, parse_size, read_manifest, with_root_inputs
from lvcd.metrics.edmd import distance_map, edmd_gt_per_frame, edmd_per_frame
from lvcd.metrics.evaluate import EvalSettings, EvaluationReport, evaluate_clips, fvd_windows
from lvcd.metrics.frechet import FeatureStatistics, feature_statistics, frechet_distance
from lvcd.metrics.labels import load_label_maps
from lvcd.metrics.psnr_ssim import psnr, ssim
from lvcd.metrics.region import RegionAccuracy, pool_region_accuracy, region_accuracy
from lvcd.metrics.report import format_table, report_to_dict, write_json_atomic
from lvcd.metrics.tc import temporal_consistency, temporal_consistency_mse
from lvcd.metrics.tools import ALL_METRICS, DEFAULT_METRICS, PAPER_METRICS, MetricTools, build_tools, parse_metrics

__all__ = [
    "ALL_METRICS",
    "DEFAULT_METRICS",
    "PAPER_METRICS",
    "ClipSpec",
    "EvalSettings",
    "EvaluationReport",
    "FeatureStatistics",
    "MetricTools",
    "RegionAccuracy",
    "build_tools",
    "distance_map",
    "edmd_gt_per_frame",
    "edmd_per_frame",
    "evaluate_clips",
    "feature_statistics",
    "format_table",
    "frechet_distance",
    "fvd_windows",
    "load_clip",
    "load_frames",
    "load_label_maps",
    "parse_metrics",
    "parse_size",
    "pool_region_accuracy",
    "psnr",
    "read_manifest",
    "region_accuracy",
    "report_to_dict",
    "ssim",
    "temporal_consistency",
    "temporal_consistency_mse",
    "with_root_inputs",
    "write_json_atomic",
]
