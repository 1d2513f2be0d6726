"""TC, temporal consistency (LVCD paper eq. 9), and a masked mean-squared variant ``tc_mse``.

**tc** (the paper's form, the default everywhere). With I the original (ground-truth) video, I_g the generated
one and W(.) the warp of frame t onto frame t+1 along the **original's** optical flow (the same flow for both):

    r_t(V) = ||W(V_t) - V_{t+1}||_2 / ||V_{t+1}||_2        relative warping error of pair (t, t+1), V in {I_g, I}
    E(V)   = 1/(T-1) * sum_{t=1}^{T-1} r_t(V)             a video's relative warping error
    TC     = E(I_g) / E(I)

The norms run over all pixels and the three RGB channels (values in [0, 1]); no pixel is masked (the paper's
formula has no mask): pixels the flow brings in from outside the frame (sampled at the nearest border pixel) or
that are disoccluded count in both videos alike. W(V_t)(p) = V_t(p + B_t(p)), bilinear, with B_t the flow from
original frame t+1 back to frame t.

*How pairs are aggregated.* Eq. 9 is written for one frame pair; per video, each side is averaged over the pairs
first (a video's warping error is the mean over its frames, as in Lai et al. 2018, whose warping error this
normalises) and the ratio is taken once. The alternative, a ratio per pair averaged afterwards, is undefined or
explodes whenever the original barely changes between two frames (held drawings: animation on twos and threes
repeats frames, so r_t(I) = 0 for many pairs), which cannot give the paper's values of 1.07-1.46. Perfect output
gives exactly 1; TC > 1: less steady than the original along its motion (flicker, colours that jump, content that
does not follow the motion); TC < 1: steadier than the original itself. Over many clips, report the mean of the
per-clip values (``lvcd evaluate`` does).

**tc_mse** (variant, kept from earlier versions of lvcd): the ratio of masked mean squared warping errors,
comparing frame t with frame t+1 warped back along the forward flow F_t, only where forward and backward flow
agree (mask M_t, occlusions left out):

    E_mse(V) = 1/(T-1) * sum_t  sum_p M_t(p) ||V_t(p) - V_{t+1}(p + F_t(p))||^2 / sum_p M_t(p);   E_mse(I_g) / E_mse(I)

A ratio of squared errors over the reliably tracked pixels only, it spreads much further from 1 than ``tc`` (near
its square where nothing is occluded, far more where the original's error lies mostly in occluded or border
pixels) and is not comparable with the paper's tables; it is useful to see whether a TC above 1 comes from
surfaces the flow tracks (flicker) or from disocclusions (objects entering, camera pans). The official code was never released
(luckyhzt/LVCD issue #8).

    >>> temporal_consistency(pred, gt, DISFlow()).tc   # (T, 3, H, W) in [0, 1]     # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lvcd.errors import InputError
from lvcd.metrics.clips import as_unit_float
from lvcd.metrics.flow import FlowEstimator, backward_warp, occlusion_mask

_NORM_FLOOR = 1e-8  # ||V_{t+1}|| of an all-black frame: keeps r_t finite


@dataclass(frozen=True)
class GroundTruthMotion:
    """Optical flow of the ground truth between consecutive frames, each (T-1, 2, H, W).

    ``backward[t]`` maps frame t+1 to frame t (what ``tc`` warps with); ``forward[t]`` maps frame t to t+1 and
    ``masks[t]`` (T-1, 1, H, W) marks where forward and backward flow agree (only ``tc_mse`` uses those two).
    """

    backward: torch.Tensor
    forward: torch.Tensor | None = None
    masks: torch.Tensor | None = None

    @property
    def pairs(self) -> int:
        return self.backward.shape[0]


@dataclass(frozen=True)
class TemporalConsistency:
    """``tc = pred_error / gt_error`` (nan when the ground truth has no measurable change)."""

    tc: float
    pred_error: float
    gt_error: float


def estimate_motion(
    gt: torch.Tensor, flow: FlowEstimator, with_forward: bool = False, batch_size: int = 16
) -> GroundTruthMotion:
    """Backward flow between consecutive ground-truth frames (T, 3, H, W); ``with_forward`` adds the forward flow
    and the forward-backward consistency masks that ``tc_mse`` needs."""
    if gt.shape[0] < 2:
        raise InputError("temporal consistency needs at least 2 frames")
    backward, forward, masks = [], [], []
    for start in range(0, gt.shape[0] - 1, batch_size):
        current = as_unit_float(gt[start : start + batch_size + 1])
        backward.append(flow(current[1:], current[:-1]).float())
        if with_forward:
            forward.append(flow(current[:-1], current[1:]).float())
            masks.append(occlusion_mask(forward[-1], backward[-1]))
    if not with_forward:
        return GroundTruthMotion(backward=torch.cat(backward))
    return GroundTruthMotion(backward=torch.cat(backward), forward=torch.cat(forward), masks=torch.cat(masks))


def _check_frames(frames: torch.Tensor, motion: GroundTruthMotion) -> None:
    if frames.shape[0] != motion.pairs + 1:
        raise InputError(f"{frames.shape[0]} frames but {motion.pairs} flows")


def relative_warping_errors(frames: torch.Tensor, motion: GroundTruthMotion, batch_size: int = 16) -> torch.Tensor:
    """(T-1,) float64: r_t = ||W(V_t) - V_{t+1}||_2 / ||V_{t+1}||_2 for each consecutive pair (see the module doc)."""
    _check_frames(frames, motion)
    errors = []
    for start in range(0, frames.shape[0] - 1, batch_size):
        current = as_unit_float(frames[start : start + batch_size + 1])
        warped, _ = backward_warp(current[:-1], motion.backward[start : start + batch_size])  # W(V_t)
        residual = (warped - current[1:]).double().flatten(1).norm(dim=1)
        errors.append(residual / current[1:].double().flatten(1).norm(dim=1).clamp_min(_NORM_FLOOR))
    return torch.cat(errors)


def masked_mse_warping_error(frames: torch.Tensor, motion: GroundTruthMotion, batch_size: int = 16) -> float:
    """E_mse: mean over pairs of the masked mean squared RGB error between V_t and V_{t+1} warped back (tc_mse)."""
    _check_frames(frames, motion)
    if motion.forward is None or motion.masks is None:
        raise InputError("tc_mse needs the forward flow: estimate_motion(gt, flow, with_forward=True)")
    per_pair = []
    for start in range(0, frames.shape[0] - 1, batch_size):
        current = as_unit_float(frames[start : start + batch_size + 1])
        flows, masks = motion.forward[start : start + batch_size], motion.masks[start : start + batch_size]
        warped, _ = backward_warp(current[1:], flows)
        squared = (current[:-1] - warped).pow(2).sum(dim=1, keepdim=True)  # (pairs, 1, H, W)
        per_pair.append((squared * masks).sum(dim=(1, 2, 3)) / masks.sum(dim=(1, 2, 3)))  # nan if all masked
    errors = torch.cat(per_pair)
    usable = torch.isfinite(errors)
    return float(errors[usable].double().mean()) if usable.any() else float("nan")


def _holds_one_image(frames: torch.Tensor) -> bool:
    """Whether no frame differs from the one before it (a held drawing, a still)."""
    return bool((frames[1:] == frames[:-1]).all())


def _ratio(pred_error: float, gt_error: float, gt_still: bool) -> TemporalConsistency:
    identical = pred_error == gt_error  # identical videos, including still ones
    if gt_still:  # its warping error is 0 by definition; the bilinear warp's float rounding leaves ~1e-7
        gt_error = 0.0
    tc = pred_error / gt_error if gt_error > 1e-12 else float("nan")
    if identical:
        tc = 1.0
    return TemporalConsistency(tc=tc, pred_error=pred_error, gt_error=gt_error)


def _check_pair(pred: torch.Tensor, gt: torch.Tensor) -> None:
    if pred.shape != gt.shape:
        raise InputError(f"TC needs videos of one shape, got {tuple(pred.shape)} and {tuple(gt.shape)}")


def temporal_consistency(
    pred: torch.Tensor, gt: torch.Tensor, flow: FlowEstimator, motion: GroundTruthMotion | None = None
) -> TemporalConsistency:
    """The paper's TC of a generated clip against its ground truth, (T, 3, H, W) each (uint8, or float in [0, 1]):
    mean relative warping error of ``pred`` over that of ``gt``, both along the ground truth's flow."""
    _check_pair(pred, gt)
    motion = motion if motion is not None else estimate_motion(gt, flow)
    pred_error = float(relative_warping_errors(pred, motion).mean())
    gt_error = float(relative_warping_errors(gt, motion).mean())
    return _ratio(pred_error, gt_error, _holds_one_image(gt))


def temporal_consistency_mse(
    pred: torch.Tensor, gt: torch.Tensor, flow: FlowEstimator, motion: GroundTruthMotion | None = None
) -> TemporalConsistency:
    """The ``tc_mse`` variant: masked mean squared warping error of ``pred`` over that of ``gt``."""
    _check_pair(pred, gt)
    if motion is None or motion.forward is None:
        motion = estimate_motion(gt, flow, with_forward=True)
    return _ratio(masked_mse_warping_error(pred, motion), masked_mse_warping_error(gt, motion), _holds_one_image(gt))
