"""VAE parity with the official sgm first stage (tiny fixtures) and its clip semantics. (The full-size key layout is
checked in test_architecture, embedder 3's concat latent in test_parity_components.)"""

from __future__ import annotations

import copy

import pytest
import torch
from safetensors.torch import load_file

from conftest import TINY_CONFIG, assert_close_rel
from lvcd.config import config_from_sgm_json
from lvcd.models.vae import AutoencoderKL, TemporalResBlock, VideoResBlock

FIRST_STAGE = "first_stage_model."


def _strip(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


@pytest.fixture(scope="module")
def svd_state(tiny_weights) -> dict[str, torch.Tensor]:
    return load_file(str(tiny_weights["svd"]))


@pytest.fixture(scope="module")
def vae(svd_state) -> AutoencoderKL:
    model = AutoencoderKL(config_from_sgm_json(TINY_CONFIG).vae).eval().requires_grad_(False)
    model.load_state_dict(_strip(svd_state, FIRST_STAGE), strict=True)
    return model


@torch.no_grad()
def test_encoder_moments_and_scaled_sample_match_official(vae, components):
    frames = components["vae.enc.input"]  # (3, 3, H, W); the official encodes one frame at a time, we batch
    mean, logvar = vae.encode_moments(frames)
    assert_close_rel(mean, components["vae.enc.mean"], name="vae.enc.mean")
    assert_close_rel(logvar, components["vae.enc.logvar"], name="vae.enc.logvar")
    sample = vae.encode(frames, noise=components["vae.enc.eps"])
    assert_close_rel(sample, components["vae.enc.sample_scaled"], name="vae.enc.sample_scaled")
    chunked = vae.encode(frames, noise=components["vae.enc.eps"], batch_size=1)
    assert_close_rel(chunked, components["vae.enc.sample_scaled"], name="vae.enc.sample_scaled (batch 1)")


@torch.no_grad()
def test_decoder_matches_official_as_one_clip(vae, components):
    pixels = vae.decode(components["vae.dec.z"], num_frames=7).clamp(-1, 1)
    assert_close_rel(pixels, components["vae.dec.pixels"], name="vae.dec.pixels")
    assert torch.equal(vae.decode(components["vae.dec.z"]).clamp(-1, 1), pixels)  # None = one clip of all frames


@torch.no_grad()
def test_encode_draws_eps_per_frame_on_the_cpu_like_the_official(vae, components):
    frames = components["vae.enc.input"]
    torch.manual_seed(1234)
    sample = vae.encode(frames)
    torch.manual_seed(1234)
    eps = torch.cat([torch.randn(1, 4, 8, 16) for _ in range(frames.shape[0])])  # encode_first_stage's draws
    assert torch.equal(sample, vae.encode(frames, noise=eps))
    seeded = [vae.encode(frames, generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(*seeded)


@torch.no_grad()
def test_temporal_group_norm_couples_the_frames_of_a_clip(vae, components):
    z = components["vae.dec.z"]
    # Keep only the centre tap of every temporal conv: frames can then interact only through the
    # time_stack GroupNorm statistics over (C/32, T, H, W).
    no_temporal_conv = copy.deepcopy(vae)
    for module in no_temporal_conv.modules():
        if isinstance(module, torch.nn.Conv3d):
            centre = module.weight[:, :, 1].clone()
            module.weight.zero_()[:, :, 1] = centre
    changed = z.clone()
    changed[6] += 1.0
    for model in (vae, no_temporal_conv):
        before, after = model.decode(z, num_frames=7), model.decode(changed, num_frames=7)
        change_of_other_frames = (after[:6] - before[:6]).abs().amax(dim=(1, 2, 3))
        assert (change_of_other_frames > 1e-3).all(), change_of_other_frames


@torch.no_grad()
def test_clips_decode_independently(vae, components):
    z = components["vae.dec.z"][:6]
    together = vae.decode(z, num_frames=3)
    apart = torch.cat([vae.decode(z[:3], num_frames=3), vae.decode(z[3:], num_frames=3)])
    assert_close_rel(together, apart, rel=1e-5, name="two clips")
    with pytest.raises(ValueError, match="num_frames=4"):
        vae.decode(z, num_frames=4)


def test_video_res_block_merge_weights_the_temporal_branch_by_alpha():
    torch.manual_seed(0)
    block = VideoResBlock(32, 32, (3, 1, 1)).eval()
    x = torch.randn(4, 32, 4, 4)
    with torch.no_grad():
        block.mix_factor.fill_(30.0)  # alpha ~ 1: output = temporal branch only
        spatial = super(VideoResBlock, block).forward(x)
        temporal = (
            block.time_stack(spatial.reshape(2, 2, 32, 4, 4).transpose(1, 2)).transpose(1, 2).reshape(4, 32, 4, 4)
        )
        assert torch.allclose(block(x, num_frames=2), temporal, atol=1e-5)
        block.mix_factor.fill_(-30.0)  # alpha ~ 0: spatial only
        assert torch.allclose(block(x, num_frames=2), spatial, atol=1e-5)
    assert isinstance(block.time_stack, TemporalResBlock)
    assert block.time_stack.in_layers[0].eps == 1e-5  # openaimodel GroupNorm32 default, unlike the 2-D blocks' 1e-6
    assert block.norm1.eps == 1e-6


def _svd_shaped_vae(dtype=torch.float32) -> AutoencoderKL:
    """SVD's decoder structure (4 levels, 2 res blocks, temporal (3,1,1) convs, mid attention), narrower, random."""
    import dataclasses

    from lvcd.config import get_config

    generator = torch.Generator().manual_seed(0)
    model = AutoencoderKL(dataclasses.replace(get_config("svd-lvcd").vae, ch=32)).eval().requires_grad_(False)
    with torch.no_grad():
        for name, param in model.named_parameters():
            fan_in = param[0].numel() if param.ndim > 1 else 1
            param.copy_(torch.randn(param.shape, generator=generator) * (fan_in**-0.5 if param.ndim > 1 else 0.1))
            if name.endswith("mix_factor"):
                param.fill_(0.3)
    return model.to(dtype)


@pytest.fixture(scope="module")
def graph_decodes() -> dict[torch.dtype, torch.Tensor]:
    """The one-graph decodes (fp32, bf16) of ``_svd_shaped_vae`` for the latents below: they do not depend on the
    lean decoder's piece size, so both parametrizations compare with the same ones, computed once."""
    vae = _svd_shaped_vae()
    z = torch.randn(10, 4, 12, 20, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        graph = vae.decoder.forward_graph(z, 5)
        graph_bf16 = vae.to(torch.bfloat16).decoder.forward_graph(z.bfloat16(), 5).float()
    return {torch.float32: graph, torch.bfloat16: graph_bf16}


@pytest.mark.parametrize("piece_bytes", [None, 4096], ids=["pieces-as-configured", "one-frame-and-few-rows"])
def test_lean_decoding_equals_the_graph(piece_bytes, monkeypatch, graph_decodes):
    """Inference decodes frame by frame and in bands of rows (a third of the peak memory at 320x576): the same
    operations as the one-graph decoder, whose time_stack GroupNorm statistics it sums in another order. Two clips
    of 5 frames, 96 rows, fp32 within 4e-6 of the output's scale (float32 rounding of a 30-level decoder in another
    summation order: 1.1e-6 measured on one CPU, whose kernels sum differently; a real fault would be ~1e-2); in bf16 no further from the fp32 result than the
    graph's bf16 decode is. Small pieces (4 KB) cut every level into single frames and bands of a few rows."""
    import lvcd.models.vae as vae_module

    if piece_bytes is not None:
        monkeypatch.setattr(vae_module, "_PIECE_BYTES", piece_bytes)
    vae = _svd_shaped_vae()
    z = torch.randn(10, 4, 12, 20, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        graph, lean = graph_decodes[torch.float32], vae.decoder(z, 5)
    assert lean.shape == graph.shape == (10, 3, 96, 160)
    assert (lean - graph).abs().max() <= 4e-6 * graph.abs().max()
    reference = graph
    vae = vae.to(torch.bfloat16)
    with torch.no_grad():
        graph, lean = graph_decodes[torch.bfloat16], vae.decoder(z.bfloat16(), 5).float()
    graph_error, lean_error = ((out - reference).abs().mean() for out in (graph, lean))
    print(f"bf16 mean error against fp32: graph {graph_error:.2e}, lean {lean_error:.2e}")
    assert lean_error <= 1.25 * graph_error


def test_decoding_with_a_gradient_takes_the_graph(monkeypatch):
    """Training (train-vae) needs the graph: the lean order writes into preallocated tensors in place."""
    import lvcd.models.vae as vae_module

    vae = _svd_shaped_vae().requires_grad_(True)
    z = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    taken = []
    real = vae_module._decode_lean
    monkeypatch.setattr(vae_module, "_decode_lean", lambda *args: taken.append("lean") or real(*args))
    vae.decoder(z, 4).square().mean().backward()
    assert taken == [] and vae.decoder.conv_in.weight.grad is not None
    with torch.no_grad():
        vae.decoder(z, 4)
    assert taken == ["lean"]


def test_vae_attention_takes_a_fused_kernel(vae, components):
    """The VAE's single-head attention over H*W positions feeds the kernels unit-stride rows: a strided layout made
    every call (encoder and decoder) fall back to the math form, which holds the (HW, HW) logits in fp32."""
    from lvcd.models.attention_kernels import record_attention_backends

    with torch.no_grad(), record_attention_backends() as kernels:
        vae.encode(components["vae.enc.input"], noise=components["vae.enc.eps"])
        vae.decode(components["vae.dec.z"], num_frames=7)
    assert len(kernels) >= 2 and "math" not in kernels, kernels
