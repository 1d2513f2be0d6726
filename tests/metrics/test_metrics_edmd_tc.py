"""EDMD and TC: zero / one for identical videos, and the expected direction for perturbed ones."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lvcd.metrics.edmd import distance_map, edmd_per_frame, lineart_to_sketch
from lvcd.metrics.flow import DISFlow, backward_warp, occlusion_mask
from lvcd.metrics.tc import estimate_motion, temporal_consistency, warping_error

from .synthetic import dark_line_sketch, line_drawing, moving_texture, to_float

# --- EDMD -------------------------------------------------------------------------------------------------------------


def test_distance_map_of_a_single_point():
    lines = np.zeros((5, 7), bool)
    lines[2, 3] = True
    distances = distance_map(lines)
    assert distances[2, 3] == 0.0
    assert distances[0, 0] == pytest.approx(math.hypot(2, 3))
    assert distance_map(np.zeros((3, 4), bool)).min() == pytest.approx(5.0)  # no lines: the diagonal everywhere


def test_edmd_identical_frames_is_zero():
    frames = to_float(np.stack([line_drawing(offset=k) for k in range(3)]))
    assert edmd_per_frame(frames, frames, dark_line_sketch).tolist() == [0.0, 0.0, 0.0]


def test_edmd_grows_with_misplaced_lines():
    gt = to_float(line_drawing()[None])
    values = [edmd_per_frame(to_float(line_drawing(offset=k)[None]), gt, dark_line_sketch)[0] for k in (1, 3, 6)]
    assert 0 < values[0] < values[1] < values[2]
    blank = torch.ones_like(gt)  # all lines missing
    assert edmd_per_frame(blank, gt, dark_line_sketch)[0] > values[2]


def test_edmd_accepts_an_extractor_with_batch_method():
    class Extractor:
        def batch(self, frames):
            return dark_line_sketch(frames)

    gt = to_float(line_drawing()[None])
    pred = to_float(line_drawing(offset=2)[None])
    assert edmd_per_frame(pred, gt, Extractor())[0] == edmd_per_frame(pred, gt, dark_line_sketch)[0]


def test_lineart_polarity_is_normalised():
    dark_on_white = to_float(line_drawing()[None])
    assert torch.equal(lineart_to_sketch(dark_on_white), lineart_to_sketch(1.0 - dark_on_white))


# --- flow and warping ------------------------------------------------------------------------------------------------


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


# --- TC ---------------------------------------------------------------------------------------------------------------


def test_tc_of_identical_videos_is_one():
    gt = to_float(moving_texture(frames=6))
    result = temporal_consistency(gt.clone(), gt, DISFlow())
    assert result.tc == 1.0 and result.pred_error == result.gt_error


def test_tc_rises_with_flicker():
    gt = to_float(moving_texture(frames=8))
    generator = torch.Generator().manual_seed(0)
    flow = DISFlow()
    motion = estimate_motion(gt, flow)
    values = []
    for strength in (0.02, 0.08):
        offsets = strength * torch.randn(gt.shape[0], 3, 1, 1, generator=generator)
        values.append(temporal_consistency((gt + offsets).clamp(0, 1), gt, flow, motion=motion).tc)
    assert 1.0 < values[0] < values[1]


def test_tc_penalises_output_that_ignores_the_motion():
    gt = to_float(moving_texture(frames=6))
    frozen = gt[:1].expand_as(gt).clone()  # a still image where the ground truth moves
    assert temporal_consistency(frozen, gt, DISFlow()).tc > 10.0


def test_tc_below_one_when_steadier_than_the_ground_truth():
    clean = to_float(moving_texture(frames=8))
    offsets = 0.03 * torch.randn(clean.shape[0], 3, 1, 1, generator=torch.Generator().manual_seed(1))
    flickering_gt = (clean + offsets).clamp(0, 1)
    assert temporal_consistency(clean, flickering_gt, DISFlow()).tc < 1.0


def test_warping_error_of_static_video_is_zero():
    still = to_float(np.repeat(moving_texture(frames=1), 4, axis=0))
    motion = estimate_motion(still, DISFlow())
    assert warping_error(still, motion) == pytest.approx(0.0, abs=1e-10)


class _ConstantFlow(torch.nn.Module):
    """Stands in for a TorchScript RAFT: per-iteration predictions, the last one (1.5, -0.5) everywhere."""

    def forward(self, image1: torch.Tensor, image2: torch.Tensor) -> list[torch.Tensor]:
        first = torch.zeros(image1.shape[0], 2, image1.shape[2], image1.shape[3])
        last = torch.cat([torch.full_like(first[:, :1], 1.5), torch.full_like(first[:, :1], -0.5)], dim=1)
        return [first, last]


def test_raft_is_pluggable_as_torchscript(tmp_path):
    import warnings

    from lvcd.errors import InputError
    from lvcd.metrics.flow import TorchScriptFlow, load_flow

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(_ConstantFlow()), str(tmp_path / "raft.pt"))
    flow = load_flow("raft", tmp_path / "raft.pt")
    assert isinstance(flow, TorchScriptFlow)
    out = flow(torch.rand(3, 3, 30, 20), torch.rand(3, 3, 30, 20))  # padded to 32x24 inside, cropped back
    assert out.shape == (3, 2, 30, 20) and out[:, 0].eq(1.5).all() and out[:, 1].eq(-0.5).all()
    with pytest.raises(InputError, match="raft-weights"):
        load_flow("raft")
    torch.save({"w": torch.zeros(1)}, tmp_path / "raft_state.pth")
    with pytest.raises(InputError, match="not a TorchScript"):
        load_flow("raft", tmp_path / "raft_state.pth")
