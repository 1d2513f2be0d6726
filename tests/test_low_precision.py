"""Inference in bf16 (and fp16 where the CPU has fast fp16 kernels) on the tiny model, against the fp32 golden outputs
of the official code.

Tolerances are loose and stated: max|ours - official| <= tol * max|official|, about 2-3x the error measured on
x86-64 (AVX-512) CPUs, so rounding noise passes and a wrong cast, a dtype mix-up or a dropped fp32 statistic
(errors of order 1) fails. Measured: bf16 denoiser 0.022, bf16 VAE decode 0.055, a bf16 shot's frames against the
fp32 run 0.094 (its latents 0.023); fp16 denoiser 0.0026, fp16 decode 0.0077 (bf16 keeps 8 mantissa bits, fp16 11).
"""

from __future__ import annotations

import pytest
import torch

from conftest import TINY_CONFIG, assert_close_rel
from lvcd.longvideo import official_normal_plan, official_prevref_plan
from lvcd.model import Conditioning
from lvcd.models.transformer import ClipLayout
from lvcd.weights import load_model

TOLERANCE = {
    torch.bfloat16: {"denoiser": 0.05, "decode": 0.12, "shot": 0.25},
    torch.float16: {"denoiser": 0.01, "decode": 0.02, "shot": 0.05},
}


def _fast_fp16_on_cpu() -> bool:
    """oneDNN has fp16 kernels only on CPUs with AVX512-FP16 / AMX-FP16; elsewhere fp16 convolutions take the slow
    reference path (the tiny VAE decode alone takes about a minute)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())
    except (AttributeError, RuntimeError):
        return False


SLOW_FP16 = (
    "this CPU has no fast fp16 kernels (oneDNN): fp16 convolutions take the reference path (measured here: the tiny "
    "VAE decode 160 s, a denoiser call 17 s), so only the prev-reference denoiser call is checked in fp16"
)


def _skip_slow_fp16(dtype: torch.dtype) -> None:
    if dtype == torch.float16 and not _fast_fp16_on_cpu():
        pytest.skip(SLOW_FP16)


@pytest.fixture(
    scope="module", params=[torch.bfloat16, torch.float16], ids=lambda dtype: str(dtype).removeprefix("torch.")
)
def low_precision_model(request, tiny_weights):
    model, report = load_model(
        tiny_weights["svd"], tiny_weights["lvcd"], config=TINY_CONFIG, dtype=request.param, vae_dtype=request.param
    )
    assert report.ok
    return model, request.param


@pytest.mark.parametrize("mode", ["normal", "prevref"])
@torch.no_grad()
def test_denoiser_in_low_precision_is_close_to_the_official_fp32(low_precision_model, components, mode):
    model, dtype = low_precision_model
    if mode == "normal":
        _skip_slow_fp16(dtype)
    assert next(model.unet.parameters()).dtype == dtype and next(model.controlnet.parameters()).dtype == dtype
    plan = official_normal_plan(19, overlap=4) if mode == "normal" else official_prevref_plan(19, overlap=4)
    cond = Conditioning(
        components["hook.concat"],
        components["hook.crossattn"],
        components["hook.vector"],
        components["hook.control_hint_1ch"],
    )
    denoised = model.denoise(components["hook.x"], components["hook.sigma"], cond, ClipLayout(19, 5, plan))
    assert denoised.dtype == torch.float32  # the sampler's state stays fp32
    assert_close_rel(
        denoised, components[f"hook.denoised_{mode}"], rel=TOLERANCE[dtype]["denoiser"], name=f"{dtype} {mode}"
    )


@torch.no_grad()
def test_vae_decode_in_low_precision_is_close_to_the_official_fp32(low_precision_model, components):
    """The VAE's temporal GroupNorm once mixed an fp32 input with bf16 weights here ("mixed dtype (CPU)")."""
    model, dtype = low_precision_model
    _skip_slow_fp16(dtype)
    assert next(model.vae.parameters()).dtype == dtype
    pixels = model.vae.decode(components["vae.dec.z"].to(dtype), num_frames=7)
    assert pixels.dtype == dtype
    assert_close_rel(
        pixels.float().clamp(-1, 1), components["vae.dec.pixels"], rel=TOLERANCE[dtype]["decode"], name=f"{dtype}"
    )


@torch.no_grad()
def test_a_whole_shot_runs_in_low_precision_close_to_fp32(low_precision_model, tiny_model):
    """Two windows (prev-reference attention, overlap blending) and the chunked decode, all in the low dtype."""
    from lvcd.pipeline import LVCDPipeline

    model, dtype = low_precision_model
    _skip_slow_fp16(dtype)
    generator = torch.Generator().manual_seed(0)
    lineart = (torch.rand(16, 1, 64, 128, generator=generator) > 0.9).float()
    reference = torch.rand(3, 64, 128, generator=generator)
    runs = [
        LVCDPipeline(m)(reference, lineart, num_steps=1, seed=4, polarity="bright-lines", progress=False)
        for m in (model, tiny_model)
    ]
    assert runs[0].frames.shape == (16, 3, 64, 128) and torch.isfinite(runs[0].frames).all()
    assert_close_rel(runs[0].latents, runs[1].latents, rel=TOLERANCE[dtype]["denoiser"], name=f"{dtype} latents")
    assert_close_rel(runs[0].frames, runs[1].frames, rel=TOLERANCE[dtype]["shot"], name=f"{dtype} frames")


def test_vae_dtype_reaches_the_model_from_the_cli_options(tiny_weights):
    """`lvcd colorize --vae-dtype bf16` (and `from_single_file(vae_dtype=...)`): the VAE and the conditioner's VAE
    encoder in bf16, the diffusion networks in their own dtype; without it the VAE stays fp32, as officially."""
    from lvcd.cli.options import load_pipeline

    def dtypes(pipe):
        model = pipe.model
        return [next(part.parameters()).dtype for part in (model.unet, model.first_stage_model, model.cond_encoder)]

    lean = load_pipeline(str(tiny_weights["svd"]), str(tiny_weights["lvcd"]), str(TINY_CONFIG), "cpu", "fp32",
                         vae_dtype="bf16")  # fmt: skip
    assert dtypes(lean) == [torch.float32, torch.bfloat16, torch.bfloat16]
    plain = load_pipeline(str(tiny_weights["svd"]), str(tiny_weights["lvcd"]), str(TINY_CONFIG), "cpu", "bf16")
    assert dtypes(plain) == [torch.bfloat16, torch.float32, torch.float32]


@torch.no_grad()
def test_the_reference_reaches_a_low_precision_clip_unrounded(low_precision_model):
    """CLIP resizes and normalises the reference in fp32 and casts at its first layer, as the official code does under
    autocast; the reference used to be rounded to bf16/fp16 before that preprocessing."""
    model, dtype = low_precision_model
    _skip_slow_fp16(dtype)
    reference = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(3)) * 2 - 1
    crossattn, _ = model.embed_reference(reference)
    assert torch.equal(crossattn, model.clip(reference).float())
    assert not torch.equal(crossattn, model.clip(reference.to(dtype).float()).float())  # rounding first differs
