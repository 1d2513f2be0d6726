"""TC as the paper defines it (relative L2 warping errors, ratio of the per-video means) and the tc_mse variant."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lvcd.errors import InputError, WeightsError
from lvcd.metrics.flow import DISFlow, backward_warp, occlusion_mask
from lvcd.metrics.tc import (
    estimate_motion,
    masked_mse_warping_error,
    relative_warping_errors,
    temporal_consistency,
    temporal_consistency_mse,
)

from .synthetic import moving_texture, to_float


def _still(values: list[float], height: int = 2, width: int = 2) -> torch.Tensor:
    """(T, 3, H, W): frame t filled with values[t]."""
    return torch.tensor(values, dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 3, height, width).clone()


def _zero_flow(frames_a: torch.Tensor, frames_b: torch.Tensor) -> torch.Tensor:
    return torch.zeros(frames_a.shape[0], 2, *frames_a.shape[-2:])


class IntegerShiftFlow:
    """A flow estimator for translations: per pair the integer shift d in [-3, 3]^2 with frames_a(p) ~ frames_b(p + d)
    (the estimator convention), as a constant flow field; records the order of its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __call__(self, frames_a: torch.Tensor, frames_b: torch.Tensor) -> torch.Tensor:
        self.calls.append((frames_a, frames_b))
        flows = []
        for a, b in zip(frames_a, frames_b, strict=True):
            best = min(
                ((dx, dy) for dx in range(-3, 4) for dy in range(-3, 4)),
                key=lambda d: float((backward_warp(b[None], self._constant(d, a.shape[-2:]))[0] - a).abs().mean()),
            )
            flows.append(self._constant(best, a.shape[-2:]))
        return torch.cat(flows)

    @staticmethod
    def _constant(shift: tuple[int, int], size) -> torch.Tensor:
        return torch.tensor(shift, dtype=torch.float32).view(1, 2, 1, 1).expand(1, 2, *size).clone()


def _bar_moving_right(frames: int = 4, step: int = 2, height: int = 10, width: int = 24) -> torch.Tensor:
    """(T, 3, H, W): a coloured bar on a uniform background, ``step`` px further right in each frame."""
    video = torch.full((frames, 3, height, width), 0.5)
    for t in range(frames):
        video[t, :, 2:8, 4 + step * t : 8 + step * t] = torch.tensor([0.9, 0.2, 0.1]).view(3, 1, 1)
    return video


# --- the paper's form ----------------------------------------------------------------------------------------------


def test_tc_hand_computed_on_still_frames():
    """Zero flow, so W(V_t) = V_t and r_t = |v_{t+1} - v_t| / |v_{t+1}| for constant frames v_t:
    original 0.4, 0.5, 0.5 -> r = 0.2, 0 -> E = 0.1; generated 0.4, 0.6, 0.3 -> r = 1/3, 1 -> E = 2/3; TC = 20/3.
    (A ratio per pair would divide by the original's r = 0 of the held frame.)"""
    gt, pred = _still([0.4, 0.5, 0.5]), _still([0.4, 0.6, 0.3])
    motion = estimate_motion(gt, _zero_flow)
    assert relative_warping_errors(gt, motion).tolist() == pytest.approx([0.2, 0.0])
    assert relative_warping_errors(pred, motion).tolist() == pytest.approx([1 / 3, 1.0])
    result = temporal_consistency(pred, gt, _zero_flow)
    assert result.gt_error == pytest.approx(0.1) and result.pred_error == pytest.approx(2 / 3)
    assert result.tc == pytest.approx(20 / 3)


def test_tc_warps_frame_t_onto_t_plus_1_with_the_originals_backward_flow():
    gt = _bar_moving_right()
    flow = IntegerShiftFlow()
    motion = estimate_motion(gt, flow)
    later, earlier = flow.calls[0]
    assert torch.equal(later, gt[1:]) and torch.equal(earlier, gt[:-1])  # flow from frame t+1 back to frame t
    assert motion.backward[:, 0].eq(-2).all() and motion.backward[:, 1].eq(0).all()
    assert relative_warping_errors(gt, motion).abs().max() < 1e-6  # W(I_t) is I_{t+1} (up to float rounding)
    reversed_motion = type(motion)(backward=-motion.backward)  # the other direction does not align the frames
    assert relative_warping_errors(gt, reversed_motion).min() > 0.05


def test_tc_uses_the_originals_flow_for_the_generated_video():
    gt = _bar_moving_right()
    frozen = gt[:1].expand_as(gt).clone()  # a still image where the original moves
    motion = estimate_motion(gt, IntegerShiftFlow())
    assert relative_warping_errors(frozen, motion).min() > 0.05  # judged along the original's motion, not its own


def test_tc_of_identical_videos_is_one():
    gt = to_float(moving_texture(frames=6))
    result = temporal_consistency(gt.clone(), gt, DISFlow())
    assert result.tc == 1.0 and result.pred_error == result.gt_error > 0


def test_tc_rises_with_flicker():
    gt = to_float(moving_texture(frames=8))
    flow = DISFlow()
    motion = estimate_motion(gt, flow)
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(gt.shape[0], 3, 1, 1, generator=generator)
    values = [temporal_consistency((gt + s * noise).clamp(0, 1), gt, flow, motion=motion).tc for s in (0.02, 0.08)]
    assert 1.0 < values[0] < values[1]


def test_tc_penalises_output_that_ignores_the_motion():
    gt = to_float(moving_texture(frames=6))
    frozen = gt[:1].expand_as(gt).clone()
    assert temporal_consistency(frozen, gt, DISFlow()).tc > 3.0


def test_tc_below_one_when_steadier_than_the_ground_truth():
    clean = to_float(moving_texture(frames=8))
    offsets = 0.03 * torch.randn(clean.shape[0], 3, 1, 1, generator=torch.Generator().manual_seed(1))
    flickering_gt = (clean + offsets).clamp(0, 1)
    assert temporal_consistency(clean, flickering_gt, DISFlow()).tc < 1.0


def test_tc_of_a_static_original_is_undefined_unless_identical():
    still = _still([0.5, 0.5, 0.5])
    assert temporal_consistency(still.clone(), still, _zero_flow).tc == 1.0
    assert math.isnan(temporal_consistency(_still([0.5, 0.6, 0.5]), still, _zero_flow).tc)


def test_tc_of_a_still_textured_original_is_undefined_not_the_warps_rounding():
    """A held drawing with detail: the bilinear warp of zero flow rounds in float32 (about 1e-7 of relative error),
    which made TC about 10^6 instead of undefined."""
    frame = torch.rand(1, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    still = frame.expand(5, -1, -1, -1).clone()
    assert float(relative_warping_errors(still, estimate_motion(still, _zero_flow)).max()) > 0  # the rounding
    for measure in (temporal_consistency, temporal_consistency_mse):
        assert measure(still.clone(), still, _zero_flow).tc == 1.0
        moving = still.clone()
        moving[3] = frame[0].flip(-1)
        result = measure(moving, still, _zero_flow)
        assert math.isnan(result.tc) and result.gt_error == 0.0 and result.pred_error > 0


def test_tc_input_errors():
    with pytest.raises(InputError, match="at least 2 frames"):
        temporal_consistency(_still([0.5]), _still([0.5]), _zero_flow)
    with pytest.raises(InputError, match="one shape"):
        temporal_consistency(_still([0.5, 0.5]), _still([0.5, 0.5, 0.5]), _zero_flow)


# --- the tc_mse variant and the flow helpers -------------------------------------------------------------------------


def test_tc_mse_hand_computed_and_not_the_paper_value():
    """Masked mean squared RGB distance of V_t and V_{t+1} (zero flow: nothing masked): original 3 * 0.1^2, 0 ->
    0.015; generated 3 * 0.2^2, 3 * 0.3^2 -> 0.195; tc_mse = 13, where the paper's TC of these videos is 20/3."""
    gt, pred = _still([0.4, 0.5, 0.5]), _still([0.4, 0.6, 0.3])
    motion = estimate_motion(gt, _zero_flow, with_forward=True)
    assert masked_mse_warping_error(gt, motion) == pytest.approx(3 * 0.01 / 2)  # squared RGB distance: 3 channels
    assert temporal_consistency_mse(pred, gt, _zero_flow, motion=motion).tc == pytest.approx(13.0)
    with pytest.raises(InputError, match="forward flow"):
        masked_mse_warping_error(gt, estimate_motion(gt, _zero_flow))


def test_tc_mse_identity_and_flicker():
    gt = to_float(moving_texture(frames=8))
    flow = DISFlow()
    motion = estimate_motion(gt, flow, with_forward=True)
    assert temporal_consistency_mse(gt.clone(), gt, flow, motion=motion).tc == 1.0
    noise = 0.05 * torch.randn(gt.shape[0], 3, 1, 1, generator=torch.Generator().manual_seed(2))
    assert temporal_consistency_mse((gt + noise).clamp(0, 1), gt, flow, motion=motion).tc > 1.0


def test_masked_error_of_static_video_is_zero():
    still = to_float(np.repeat(moving_texture(frames=1), 4, axis=0))
    motion = estimate_motion(still, DISFlow(), with_forward=True)
    assert masked_mse_warping_error(still, motion) == pytest.approx(0.0, abs=1e-10)
    assert relative_warping_errors(still, motion).abs().max() < 1e-6


def test_backward_warp_integer_shift():
    image = torch.arange(2 * 6 * 8, dtype=torch.float32).view(1, 2, 6, 8)
    flow = torch.zeros(1, 2, 6, 8)
    flow[:, 0] = 2.0  # every pixel looks 2 to the right
    warped, inside = backward_warp(image, flow)
    assert torch.equal(warped[..., :6], image[..., 2:])
    assert inside[..., :6].all() and not inside[..., 6:].any()


def test_dis_flow_finds_a_translation_and_masks_are_consistent():
    frames = to_float(moving_texture(frames=2, step=2))
    flow = DISFlow()
    forward, backward = flow(frames[:1], frames[1:]), flow(frames[1:], frames[:1])
    centre = forward[0, :, 12:-12, 12:-12]
    assert centre[0].median().item() == pytest.approx(-2.0, abs=0.25)  # content moves left by 2 pixels
    assert centre[1].abs().median().item() < 0.25
    assert occlusion_mask(forward, backward)[0, 0, 12:-12, 12:-12].float().mean() > 0.9


class _ConstantFlow(torch.nn.Module):
    """Stands in for a TorchScript RAFT: per-iteration predictions, the last one (1.5, -0.5) everywhere."""

    def forward(self, image1: torch.Tensor, image2: torch.Tensor) -> list[torch.Tensor]:
        first = torch.zeros(image1.shape[0], 2, image1.shape[2], image1.shape[3])
        last = torch.cat([torch.full_like(first[:, :1], 1.5), torch.full_like(first[:, :1], -0.5)], dim=1)
        return [first, last]


def test_raft_is_pluggable_as_torchscript(tmp_path):
    import warnings

    from lvcd.metrics.flow import TorchScriptFlow, load_flow

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(_ConstantFlow()), str(tmp_path / "raft.pt"))
    with pytest.raises(InputError, match="TorchScript archive .*--allow-torchscript.*raft-things.pth"):
        load_flow("raft", tmp_path / "raft.pt")
    flow = load_flow("raft", tmp_path / "raft.pt", allow_torchscript=True)
    assert isinstance(flow, TorchScriptFlow)
    out = flow(torch.rand(3, 3, 30, 20), torch.rand(3, 3, 30, 20))  # padded to 32x24 inside, cropped back
    assert out.shape == (3, 2, 30, 20) and out[:, 0].eq(1.5).all() and out[:, 1].eq(-0.5).all()
    with pytest.raises(InputError, match="raft-weights"):
        load_flow("raft")
    with pytest.raises(InputError, match="TorchScript export: it runs its own iterations"):
        load_flow("raft", tmp_path / "raft.pt", raft_iters=5, allow_torchscript=True)
    torch.save({"w": torch.zeros(1)}, tmp_path / "raft_state.pth")  # a state dict: loaded into our RAFT, strictly
    with pytest.raises(WeightsError, match="RAFT-large: .*raft_state.pth does not match"):
        load_flow("raft", tmp_path / "raft_state.pth")
    assert isinstance(load_flow("auto"), DISFlow) and isinstance(
        load_flow("auto", tmp_path / "raft.pt", allow_torchscript=True), TorchScriptFlow
    )
    with pytest.raises(InputError, match="unknown flow method"):
        load_flow("farneback")
    with pytest.raises(InputError, match="takes no --raft-weights"):
        load_flow("dis", tmp_path / "raft.pt")
