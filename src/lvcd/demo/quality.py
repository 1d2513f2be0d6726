"""Colorize synthetic shots and score them against their exact ground truth and two baselines.

Baselines (what a model must beat to show that it colorizes at all):

- ``copy_reference``: the reference frame (frame 0) repeated for every frame;
- ``mean_colour``: every region filled with the reference's mean colour, the line art drawn over it in ink.

Scores leave out frame 0 (it is the given reference, not a prediction): PSNR and SSIM over the frames, and region
accuracy (``lvcd.metrics.region``). EDMD and TC need their tools (``lvcd.metrics.build_tools``) and are added when
given.

    >>> shot = synth_shot(split_seed("heldout", 0), 45, (64, 64))                       # doctest: +SKIP
    >>> scores = score_frames(colorize_synthetic(pipe, shot, num_steps=25, seed=0), shot)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

from lvcd.data.synthetic import LINE_RGB, SyntheticShot
from lvcd.metrics.psnr_ssim import psnr, ssim
from lvcd.metrics.region import region_accuracy

BASELINES = ("copy_reference", "mean_colour")


def to_unit(frames: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0


def lineart_tensor(shot: SyntheticShot) -> torch.Tensor:
    """The shot's line art as the pipeline takes it: (N, 1, H, W) in [0, 1], dark lines on white."""
    return torch.from_numpy(shot.lineart).float()[:, None] / 255.0


def baseline_frames(shot: SyntheticShot, name: str) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] of a baseline (see the module docstring)."""
    reference = shot.frames[0]
    if name == "copy_reference":
        frames = np.broadcast_to(reference, shot.frames.shape)
    elif name == "mean_colour":
        mean = np.round(reference.reshape(-1, 3).mean(axis=0)).astype(np.uint8)
        frames = np.broadcast_to(mean, shot.frames.shape).copy()
        frames[shot.line_mask] = LINE_RGB
    else:
        raise ValueError(f"Unknown baseline {name!r}; choose from {BASELINES}.")
    return to_unit(frames)


@torch.no_grad()
def colorize_synthetic(pipe, shot: SyntheticShot, num_steps: int = 25, seed: int = 0, **options) -> torch.Tensor:
    """Colorize a synthetic shot from its frame 0 and its line art; (N, 3, H, W) in [0, 1]."""
    result = pipe(
        to_unit(shot.frames[:1])[0],
        lineart_tensor(shot),
        num_steps=num_steps,
        seed=seed,
        polarity="dark-lines",
        **{"progress": False, **options},
    )
    return result.frames


def score_frames(pred: torch.Tensor, shot: SyntheticShot, tools=None) -> dict[str, float]:
    """PSNR, SSIM and region accuracy of frames 1.. of ``pred`` (N, 3, H, W) in [0, 1]; with ``tools``
    (``MetricTools``) also EDMD (against the input line art) and TC."""
    truth = to_unit(shot.frames)
    if pred.shape != truth.shape:
        raise ValueError(f"Prediction {tuple(pred.shape)} does not match the shot {tuple(truth.shape)}.")
    pred = pred.float().clamp(0, 1)
    later = slice(1, None)
    labels = torch.from_numpy(shot.labels.astype(np.int64))
    lines = torch.from_numpy(shot.line_mask)
    scores = {
        "psnr": float(psnr(pred[later], truth[later]).mean()),
        "ssim": float(ssim(pred[later], truth[later]).mean()),
        "region": region_accuracy(pred[later], truth[later], labels[later], lines[later]).accuracy,
    }
    if tools is not None:
        scores.update(_tool_scores(pred, truth, shot, tools))
    return scores


def _tool_scores(pred: torch.Tensor, truth: torch.Tensor, shot: SyntheticShot, tools) -> dict[str, float]:
    from lvcd.metrics.edmd import edmd_per_frame
    from lvcd.metrics.tc import temporal_consistency

    scores = {}
    if getattr(tools, "sketch", None) is not None:
        scores["edmd"] = float(np.mean(edmd_per_frame(pred[1:], truth[1:], tools.sketch)))
    if getattr(tools, "flow", None) is not None:
        scores["tc"] = float(temporal_consistency(pred, truth, tools.flow).tc)
    return scores


def mean_scores(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Mean of each score over shots (NaNs left out)."""
    keys = rows[0].keys() if rows else ()
    means = {}
    for key in keys:
        values = np.array([row[key] for row in rows], dtype=np.float64)
        values = values[np.isfinite(values)]
        means[key] = float(values.mean()) if values.size else float("nan")
    return means
