"""Parity of the loaded tiny model with the official code's component outputs (fp32, CPU).

Tolerance: max|ours - official| <= 1e-4 * max|official| per tensor (the fixture README's rule; the official code's
own run-to-run noise is ~5e-6 of that scale)."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import assert_close_rel
from lvcd.diffusion import edm_sigmas
from lvcd.longvideo import official_normal_plan, official_prevref_plan
from lvcd.model import Conditioning
from lvcd.models.embeddings import micro_conditioning
from lvcd.models.transformer import ClipLayout


def test_conditioner_vector_and_concat(tiny_model, components):
    vector = micro_conditioning(6, 160, 0.0, num_frames=1)
    assert_close_rel(vector, components["cond.vector"], name="cond.vector")
    crossattn, concat = tiny_model.embed_reference(components["clip.image"])
    assert_close_rel(concat, components["cond.concat"], name="cond.concat")
    assert_close_rel(crossattn, components["clip.crossattn"], name="clip.crossattn")


def _conditioning(components, prefix: str) -> Conditioning:
    return Conditioning(
        concat=components[f"{prefix}.concat"],
        crossattn=components[f"{prefix}.crossattn"],
        vector=components[f"{prefix}.vector"],
        hint=components[f"{prefix}.control_hint_1ch"],
    )


@torch.no_grad()
def test_controlnet_outputs_and_denoiser_in_training_semantics(tiny_model, components):
    from lvcd.diffusion import vscaling

    x, sigma = components["train.x"], components["train.sigma"]
    cond = _conditioning(components, "train")
    layout = ClipLayout.training(num_frames=15, num_reference=1)
    _, _, c_in, c_noise = vscaling(sigma)
    x_in = torch.cat([x * c_in[:, None, None, None], cond.concat], dim=1)
    controls = tiny_model.control_model(
        x_in, cond.hint.expand(-1, 3, -1, -1), c_noise, cond.crossattn, cond.vector, layout
    )
    assert len(controls) == 13
    for index, control in enumerate(controls):
        assert_close_rel(control, components[f"train.controls.{index:02d}"], name=f"train.controls.{index:02d}")
    denoised = tiny_model.denoise(x, sigma, cond, layout)
    assert_close_rel(denoised, components["train.denoised"], name="train.denoised")


@pytest.mark.parametrize("mode", ["normal", "prevref"])
@torch.no_grad()
def test_hooked_inference_calls(tiny_model, components, mode):
    plan = official_normal_plan(19, overlap=4) if mode == "normal" else official_prevref_plan(19, overlap=4)
    layout = ClipLayout(num_frames=19, num_reference=5, reference_attention=plan)
    denoised = tiny_model.denoise(
        components["hook.x"], components["hook.sigma"], _conditioning(components, "hook"), layout
    )
    assert_close_rel(denoised, components[f"hook.denoised_{mode}"], name=f"hook.denoised_{mode}")


@torch.no_grad()
def test_prevref_log_weight_matters_only_on_overlap_frames(tiny_model, components):
    """Without the ln(10) weight the overlap frames move by ~8% (fixture notes), so the test can see it."""
    plan = official_prevref_plan(19, overlap=4)
    unweighted = type(plan)(plan.key_frames, None, None)
    cond = _conditioning(components, "hook")
    outputs = [
        tiny_model.denoise(components["hook.x"], components["hook.sigma"], cond, ClipLayout(19, 5, p))
        for p in (plan, unweighted)
    ]
    change = (outputs[0] - outputs[1]).abs().amax(dim=(1, 2, 3)) / outputs[0].abs().max()
    assert change[5:9].min() > 1e-2
    assert plan.log_weights[5:9, 1].tolist() == pytest.approx([math.log(10)] * 4)


def test_sigma_schedule_is_bitwise_official(sample_n35):
    assert torch.equal(edm_sigmas(25), sample_n35["sigmas"])
