"""TC, temporal consistency (LVCD paper eq. 9): flow-warped error of the generated video over the ground truth's.

Warping error of a video V with frames V_1..V_T (Lai et al. 2018), with flow F_t from frame t to t+1 and mask
M_t of pixels visible in both (forward-backward consistency):

    E(V) = 1/(T-1) * sum_t  sum_p M_t(p) ||V_t(p) - V_{t+1}(p + F_t(p))||^2 / sum_p M_t(p)

(squared RGB distance in [0, 1] units). Then ``TC = E(generated) / E(ground truth)``. The flows and masks are
estimated once, on the **ground truth**, and used for both videos: the generated video is drawn on the same
line art, so the ground truth's motion is the motion it should have; this also makes TC exactly 1 for a
perfect result. TC > 1 means less consistent than the ground truth along its motion (flicker, colours that
jump, or content that does not follow the motion at all); TC < 1 means steadier than the ground truth itself
(e.g. its own lighting changes not reproduced). The official code was never released (luckyhzt/LVCD issue #8).

    >>> temporal_consistency(pred, gt, DISFlow()).tc   # (T, 3, H, W) in [0, 1]     # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lvcd.errors import InputError
from lvcd.metrics.clips import as_unit_float
from lvcd.metrics.flow import FlowEstimator, backward_warp, occlusion_mask


@dataclass(frozen=True)
class GroundTruthMotion:
    """Flows (T-1, 2, H, W) from each ground-truth frame to the next, and their visibility masks (T-1, 1, H, W)."""

    flows: torch.Tensor
    masks: torch.Tensor


@dataclass(frozen=True)
class TemporalConsistency:
    """``tc = pred_error / gt_error`` (nan when the ground truth has no measurable change)."""

    tc: float
    pred_error: float
    gt_error: float


def estimate_motion(gt: torch.Tensor, flow: FlowEstimator, batch_size: int = 16) -> GroundTruthMotion:
    """Forward and backward flow between consecutive ground-truth frames, and the visibility masks."""
    if gt.shape[0] < 2:
        raise InputError("temporal consistency needs at least 2 frames")
    flows, masks = [], []
    for start in range(0, gt.shape[0] - 1, batch_size):
        current = as_unit_float(gt[start : start + batch_size + 1])
        forward = flow(current[:-1], current[1:]).float()
        backward = flow(current[1:], current[:-1]).float()
        flows.append(forward)
        masks.append(occlusion_mask(forward, backward))
    return GroundTruthMotion(flows=torch.cat(flows), masks=torch.cat(masks))


def warping_error(frames: torch.Tensor, motion: GroundTruthMotion, batch_size: int = 16) -> float:
    """Mean over consecutive pairs of the masked mean squared RGB error between V_t and warped V_{t+1}."""
    if frames.shape[0] != motion.flows.shape[0] + 1:
        raise InputError(f"{frames.shape[0]} frames but {motion.flows.shape[0]} flows")
    per_pair = []
    for start in range(0, frames.shape[0] - 1, batch_size):
        current = as_unit_float(frames[start : start + batch_size + 1])
        flows, masks = motion.flows[start : start + batch_size], motion.masks[start : start + batch_size]
        warped, _ = backward_warp(current[1:], flows)
        squared = (current[:-1] - warped).pow(2).sum(dim=1, keepdim=True)  # (pairs, 1, H, W)
        per_pair.append((squared * masks).sum(dim=(1, 2, 3)) / masks.sum(dim=(1, 2, 3)))  # nan if all masked
    errors = torch.cat(per_pair)
    usable = torch.isfinite(errors)
    return float(errors[usable].double().mean()) if usable.any() else float("nan")


def temporal_consistency(
    pred: torch.Tensor, gt: torch.Tensor, flow: FlowEstimator, motion: GroundTruthMotion | None = None
) -> TemporalConsistency:
    """TC of a generated clip against its ground truth, (T, 3, H, W) each (uint8, or float in [0, 1])."""
    if pred.shape != gt.shape:
        raise InputError(f"TC needs videos of one shape, got {tuple(pred.shape)} and {tuple(gt.shape)}")
    motion = motion if motion is not None else estimate_motion(gt, flow)
    pred_error, gt_error = warping_error(pred, motion), warping_error(gt, motion)
    tc = pred_error / gt_error if gt_error > 1e-12 else float("nan")
    if pred_error == gt_error:  # identical videos, including static ones
        tc = 1.0
    return TemporalConsistency(tc=tc, pred_error=pred_error, gt_error=gt_error)
