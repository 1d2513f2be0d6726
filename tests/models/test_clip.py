"""CLIP image tower and preprocessing: parity with the official embedder 0 on the tiny golden fixtures (the upscaled
reference's embedding is checked through the loaded model in test_parity_components, the full-size key layout in
test_architecture)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_CONFIG, assert_close_rel
from lvcd.config import CLIPConfig, config_from_sgm_json
from lvcd.models.clip import (
    CLIP_MEAN,
    CLIP_STD,
    CLIPImageEmbedder,
    antialias_blur_params,
    clip_preprocess,
    gaussian_kernel1d,
    resize_antialias_kornia069,
)

OFFICIAL_PREFIX = "conditioner.embedders.0."
VISUAL_PREFIX = OFFICIAL_PREFIX + "open_clip.model.visual."
GENERATION_NOTES = Path(TINY_CONFIG).parent / "generation_notes.json"


@pytest.fixture(scope="module")
def tiny_clip_cfg() -> CLIPConfig:
    return config_from_sgm_json(TINY_CONFIG).clip


@pytest.fixture(scope="module")
def tiny_embedder(tiny_weights, tiny_clip_cfg) -> CLIPImageEmbedder:
    from safetensors.torch import load_file

    state = load_file(str(tiny_weights["svd"]))
    visual = {key[len(VISUAL_PREFIX) :]: value for key, value in state.items() if key.startswith(VISUAL_PREFIX)}
    embedder = CLIPImageEmbedder(tiny_clip_cfg).eval()
    embedder.visual.load_state_dict(visual, strict=True)
    return embedder


def _denormalise(pixels: torch.Tensor) -> torch.Tensor:
    """CLIP-normalised pixels back to [-1, 1]."""
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (pixels * std + mean) * 2.0 - 1.0


# ---- parity with the official embedder ------------------------------------------------------------


@torch.no_grad()
def test_preprocess_matches_official_downscaled_input(components):
    pixels = clip_preprocess(components["clip_aa.image"], 224)
    assert_close_rel(pixels, components["clip_aa.preprocessed"], name="clip_aa.preprocessed")


@torch.no_grad()
def test_crossattn_matches_official_downscaled_input(tiny_embedder, components):
    out = tiny_embedder(components["clip_aa.image"])
    assert_close_rel(out, components["clip_aa.crossattn"], name="clip_aa.crossattn")


@torch.no_grad()
def test_tower_alone_matches_official_on_preprocessed_pixels(tiny_embedder, components):
    out = tiny_embedder.visual(components["clip_aa.preprocessed"])
    assert_close_rel(out[:, None], components["clip_aa.crossattn"], name="tower(clip_aa.preprocessed)")


# ---- the antialias matters ------------------------------------------------------------------------


def test_blur_parameters_follow_kornia_069_rule():
    notes = json.loads(GENERATION_NOTES.read_text())["clip_aa_blur"]
    sigmas, kernels = antialias_blur_params((160, 520), (224, 224))
    assert list(kernels) == notes["kernel_sizes"]
    assert sigmas == pytest.approx(notes["sigmas"], rel=1e-12)
    # Spec §2.7: the trained 320x576 frame.
    sigmas, kernels = antialias_blur_params((320, 576), (224, 224))
    assert kernels == (3, 3) and sigmas == pytest.approx((0.2142857, 0.7857143), rel=1e-6)
    # Kernels grow with the factor and stay odd: 1120 -> 224 is sigma 2, int(8) -> 9.
    assert antialias_blur_params((1120, 224), (224, 224))[1] == (9, 3)


def test_gaussian_taps_are_normalised_and_symmetric():
    taps = gaussian_kernel1d(5, 0.9)
    assert taps.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.equal(taps, taps.flip(0)) and taps.argmax().item() == 2


@torch.no_grad()
def test_plain_bicubic_resize_does_not_match_fixture(components):
    """Without the kornia-0.6.9 blur the downscaled input would differ visibly (the fixture notes: 0.169)."""
    image = components["clip_aa.image"]
    reference = _denormalise(components["clip_aa.preprocessed"])
    ours = resize_antialias_kornia069(image, (224, 224))
    plain = F.interpolate(image, size=(224, 224), mode="bicubic", align_corners=True)
    torch_aa = F.interpolate(image, size=(224, 224), mode="bicubic", align_corners=False, antialias=True)
    assert_close_rel(ours, reference, rel=1e-5, name="kornia-0.6.9 resize")
    scale = reference.abs().max()
    assert (plain - reference).abs().max() > 0.05 * scale
    assert (torch_aa - reference).abs().max() > 0.05 * scale


@torch.no_grad()
def test_upscaling_is_a_plain_bicubic_interpolate():
    image = torch.rand(2, 3, 64, 128, generator=torch.Generator().manual_seed(0)) * 2 - 1
    plain = F.interpolate(image, size=(224, 224), mode="bicubic", align_corners=True)
    assert torch.equal(resize_antialias_kornia069(image, (224, 224)), plain)
    assert resize_antialias_kornia069(image, (64, 128)) is image


# ---- structure ------------------------------------------------------------------------------------


def test_embedder_keys_carry_official_suffix(tiny_clip_cfg):
    keys = set(CLIPImageEmbedder(tiny_clip_cfg).state_dict())
    assert keys and all(key.startswith("open_clip.model.visual.") for key in keys)
    assert "open_clip.model.visual.transformer.resblocks.1.attn.in_proj_weight" in keys


@torch.no_grad()
def test_low_precision_module_and_inputs(tiny_embedder, components, tiny_clip_cfg):
    embedder = CLIPImageEmbedder(tiny_clip_cfg).eval()
    embedder.load_state_dict(tiny_embedder.state_dict())
    embedder.to(torch.bfloat16)
    out = embedder(components["clip.image"].to(torch.bfloat16))
    assert out.dtype == torch.bfloat16 and out.shape == (1, 1, 64)
    assert_close_rel(out.float(), components["clip.crossattn"], rel=0.1, name="bf16 crossattn")
    # fp32 module, half input: computed in fp32, returned as the input dtype.
    out_half = tiny_embedder(components["clip.image"].half())
    assert out_half.dtype == torch.float16
    assert_close_rel(out_half.float(), components["clip.crossattn"], rel=1e-2, name="fp16-in crossattn")
