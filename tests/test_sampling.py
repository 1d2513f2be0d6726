"""The sampler/denoiser contract: k-diffusion's D(x, sigma); LVCD's per-step logic counted inside WindowDenoiser."""

from __future__ import annotations

import torch

from lvcd.diffusion import edm_sigmas, sample_euler
from lvcd.longvideo import plan_windows
from lvcd.sampling import WindowDenoiser, window_layouts


def test_euler_runs_any_plain_denoiser_and_reports_each_step():
    """For D(x, sigma) = c the probability-flow ODE is linear in sigma and Euler solves it exactly: x(0) = c."""
    sigmas = edm_sigmas(6)
    target = torch.full((3, 4, 2, 2), 0.3)
    seen = []
    x = sample_euler(
        lambda x, sigma: target.expand_as(x),
        torch.randn(3, 4, 2, 2) * sigmas[0],
        sigmas,
        callback=lambda info: seen.append((info["i"], float(info["sigma"]), info["denoised"].shape)),
    )
    assert torch.allclose(x, target, atol=1e-5)
    assert [i for i, _, _ in seen] == list(range(6)) and [s for _, s, _ in seen] == sigmas[:-1].tolist()


class _RecordingModel:
    """Stands in for LVCDModel.denoise: returns the call's layout kind and sigma in every position."""

    def __init__(self):
        self.layouts = []

    def denoise(self, x, sigma, cond, layout):
        self.layouts.append(layout)
        return sigma[:, None, None, None].expand_as(x).clone()


def test_window_denoiser_counts_calls_for_prev_reference_attention_and_blending():
    plan = plan_windows(40)
    normal, prevref = window_layouts(plan)
    model = _RecordingModel()
    previous = torch.arange(5.0)[:, None, None, None, None].expand(5, 4, 1, 2, 2)  # (calls, overlap, 4, h, w)
    denoiser = WindowDenoiser(model, plan, None, normal, prevref, prev_attn_steps=2, blend_history=previous)
    x = torch.zeros(plan.window_size, 1, 2, 2)
    outputs = [denoiser(x, torch.full((plan.window_size,), 10.0 + call)) for call in range(5)]
    assert denoiser.calls == 5
    assert model.layouts == [prevref, prevref, normal, normal, normal]
    for call, out in enumerate(outputs):
        assert torch.equal(out[5:9], previous[call])  # overlap positions blended with call `call` of the previous
        assert (out[9:] == 10.0 + call).all() and (out[:5] == 10.0 + call).all()
        assert (denoiser.history[call] == 10.0 + call).all()  # recorded before blending, last `overlap` positions
    first_window = WindowDenoiser(model, plan, None, normal, None, prev_attn_steps=25)
    first_window(x, torch.ones(plan.window_size))
    assert model.layouts[-1] is normal and len(first_window.history) == 1


@torch.no_grad()
def test_window_constants_are_computed_once_per_window_not_per_step(tiny_model):
    """Hint features once per window; frame-position embeddings once per layout of the shot (2 layouts)."""
    from lvcd.models.transformer import SpatialVideoTransformer
    from lvcd.pipeline import LVCDPipeline

    counts = {"hint": 0, "positions": 0}

    def count(key):
        def hook(module, args, output):
            counts[key] += 1

        return hook

    svts = [m for m in tiny_model.modules() if isinstance(m, SpatialVideoTransformer)]
    handles = [tiny_model.controlnet.input_hint_block.register_forward_hook(count("hint"))]
    handles += [svt.time_pos_embed.register_forward_hook(count("positions")) for svt in svts]
    try:
        generator = torch.Generator().manual_seed(0)
        lineart = (torch.rand(16, 1, 64, 64, generator=generator) > 0.9).float()
        reference = torch.rand(3, 64, 64, generator=generator)
        LVCDPipeline(tiny_model)(reference, lineart, num_steps=3, seed=1, polarity="bright-lines", progress=False)
    finally:
        for handle in handles:
            handle.remove()
    assert len(plan_windows(16).windows) == 2
    assert counts["hint"] == 2  # one per window (3 steps each)
    assert counts["positions"] == 2 * len(svts)  # the normal and the prev-reference layout, once each
