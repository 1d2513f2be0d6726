"""Mask-free Reference Attention: the per-block log-sum-exp merge equals the masked form, keeps the log-weight in
float32, and no attention call of the denoiser takes a mask (so each can use a fused flash kernel)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lvcd.models.attention import Attention, ReferenceAttentionPlan
from lvcd.models.attention_kernels import (
    attention_with_lse,
    block_weight_of_second,
    merge_attention_blocks,
    record_attention_backends,
    sdpa_backend,
)


def _masked_form(q, k0, k1, v0, v1, log_weight):
    """The previous implementation: both blocks concatenated, the log-weight as an additive (B, 1, 1, 2N) mask."""
    tokens = k0.shape[2]
    mask = torch.cat([torch.zeros(q.shape[0], tokens, dtype=q.dtype), log_weight[:, None].expand(-1, tokens)], dim=1)
    return F.scaled_dot_product_attention(
        q, torch.cat([k0, k1], dim=2), torch.cat([v0, v1], dim=2), attn_mask=mask[:, None, None].to(q.dtype)
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_sum_exp_merge_equals_the_masked_attention(dtype):
    generator = torch.Generator().manual_seed(0)
    q, k0, k1, v0, v1 = (torch.randn(6, 2, 24, 16, generator=generator, dtype=dtype) for _ in range(5))
    log_weight = torch.tensor([0.0, math.log(10), 0.0, math.log(10), -1.5, 3.0], dtype=dtype)
    out0, lse0 = attention_with_lse(q, k0, v0)
    out1, lse1 = attention_with_lse(q, k1, v1)
    merged = merge_attention_blocks(out0, lse0, out1, lse1, log_weight)
    expected = _masked_form(q, k0, k1, v0, v1, log_weight)
    assert merged.dtype == dtype
    assert (merged - expected).abs().max() < 1e-6
    # the log-sum-exp is the real one
    exact = torch.logsumexp((q.double() @ k0.double().transpose(-1, -2)) / 4, dim=-1)
    assert lse0.dtype == torch.promote_types(dtype, torch.float32) and (lse0.double() - exact).abs().max() < 1e-5


def test_the_merge_differentiates_like_the_masked_attention():
    """The fused kernels return a log-sum-exp without a gradient; with a gradient being recorded the merge must still
    give the masked form's gradients (else fine-tuning through a prev-reference window would be silently wrong)."""
    generator = torch.Generator().manual_seed(1)
    inputs = [torch.randn(4, 2, 10, 8, generator=generator, requires_grad=True) for _ in range(5)]
    q, k0, k1, v0, v1 = inputs
    log_weight = torch.tensor([math.log(10), 0.0, -1.0, 2.5])
    merged = merge_attention_blocks(*attention_with_lse(q, k0, v0), *attention_with_lse(q, k1, v1), log_weight)
    expected = _masked_form(q, k0, k1, v0, v1, log_weight)
    upstream = torch.randn(merged.shape, generator=generator)
    ours = torch.autograd.grad((merged * upstream).sum(), inputs)
    theirs = torch.autograd.grad((expected * upstream).sum(), inputs)
    for name, a, b in zip(("q", "k0", "k1", "v0", "v1"), ours, theirs, strict=True):
        assert (a - b).abs().max() < 1e-5, name
    with torch.no_grad(), record_attention_backends() as kernels:  # without a gradient: the fused kernel
        attention_with_lse(q, k0, v0)
    assert kernels == ["flash_attention"]


def test_reference_attention_layer_equals_the_masked_form_on_every_plan():
    """The whole layer (projections, gathering the key frames, merge) against the masked computation."""
    from lvcd.longvideo import official_normal_plan, official_prevref_plan

    torch.manual_seed(0)
    attention = Attention(32, heads=2, dim_head=16).double()
    frames, tokens = 19, 12
    x = torch.randn(2 * frames, tokens, 32, dtype=torch.float64)
    for plan in (official_prevref_plan(19, 4), official_normal_plan(19, 4), ReferenceAttentionPlan.training(19)):
        ours = attention.reference_self_attention(x, frames, plan, layer_index=0)
        q, k, v = (attention.split_heads(p(x)) for p in (attention.to_q, attention.to_k, attention.to_v))

        def block(t, which, plan=plan):
            t = t.reshape(2, frames, *t.shape[1:])[:, plan.key_frames[:, which]]
            return t.reshape(-1, *t.shape[2:])

        relative = torch.zeros(frames) if plan.log_weights is None else plan.log_weights[:, 1] - plan.log_weights[:, 0]
        masked = _masked_form(q, block(k, 0), block(k, 1), block(v, 0), block(v, 1), relative.double().repeat(2))
        assert (ours - attention.to_out(attention.merge_heads(masked))).abs().max() < 1e-10


def test_the_prev_reference_weight_is_exactly_ten_in_low_precision():
    """ln(10) rounded to bf16 is 2.297 (a weight of 9.94); the merge applies it in float32. Equal logits in both
    blocks (q = 0) give block 1 a share of exactly 10/11."""
    q = torch.zeros(1, 1, 8, 16, dtype=torch.bfloat16)
    k = torch.randn(1, 1, 8, 16).bfloat16()
    _, lse0 = attention_with_lse(q, k, k)
    _, lse1 = attention_with_lse(q, k, k)
    plan_weight = torch.tensor([math.log(10)])  # what official_prevref_plan holds (float32)
    share = block_weight_of_second(lse0, lse1, plan_weight)
    assert share.dtype == torch.float32
    assert torch.allclose(share, torch.full_like(share, 10 / 11), rtol=0, atol=1e-7)
    rounded = block_weight_of_second(lse0, lse1, plan_weight.bfloat16())
    assert (rounded - 10 / 11).abs().max() > 4e-4  # the bf16-rounded weight would be visibly off


@torch.no_grad()
def test_no_attention_call_of_the_denoiser_takes_a_mask(tiny_model, components):
    """Every attention call of a prev-reference denoiser call is unmasked: on CPU each takes the flash kernel."""
    from lvcd.longvideo import official_prevref_plan
    from lvcd.model import Conditioning
    from lvcd.models.transformer import ClipLayout

    cond = Conditioning(
        components["hook.concat"],
        components["hook.crossattn"],
        components["hook.vector"],
        components["hook.control_hint_1ch"],
    )
    layout = ClipLayout(19, 5, official_prevref_plan(19, overlap=4))
    with record_attention_backends() as kernels:
        tiny_model.denoise(components["hook.x"], components["hook.sigma"], cond, layout)
    attention_layers = tiny_model.unet.num_attention_layers + tiny_model.controlnet.num_attention_layers
    assert len(kernels) >= 2 * attention_layers  # spatial (one or two calls) and temporal per layer
    assert set(kernels) == {"flash_attention"}


def test_sdpa_backend_reports_the_kernel_pytorch_takes():
    q = torch.randn(1, 2, 8, 16)
    assert sdpa_backend(q, q, q) == "flash_attention"  # CPU: the flash kernel serves fp32 too
    if torch.cuda.is_available():  # pragma: no cover - the GPU suite checks this on a GPU
        qc = q.cuda()
        assert sdpa_backend(qc, qc, qc, attn_mask=torch.zeros(1, 1, 8, 8, device="cuda")) != "flash_attention"


def test_a_bf16_layer_hands_the_merge_the_float32_log_weight(monkeypatch):
    import lvcd.models.attention as attention_module
    from lvcd.longvideo import official_prevref_plan

    seen = []

    def recording_merge(out0, lse0, out1, lse1, log_weight):
        seen.append(log_weight)
        return merge_attention_blocks(out0, lse0, out1, lse1, log_weight)

    monkeypatch.setattr(attention_module, "merge_attention_blocks", recording_merge)
    layer = Attention(32, heads=2, dim_head=16).bfloat16()
    out = layer.reference_self_attention(torch.randn(19, 8, 32).bfloat16(), 19, official_prevref_plan(19, 4), 0)
    assert out.dtype == torch.bfloat16 and len(seen) == 1
    assert seen[0].dtype == torch.float32
    assert torch.equal(seen[0][5:9], torch.full((4,), math.log(10), dtype=torch.float32))
    assert (seen[0][:5] == 0).all() and (seen[0][9:] == 0).all()


def test_the_cuda_kernel_choice_follows_the_gpu_and_the_enabled_backends():
    """Flash only where it exists (sm80+, fp16/bf16, heads up to 256 wide) and is enabled; else memory-efficient (which
    has bf16 on sm80+ only); else math."""
    from types import SimpleNamespace

    from lvcd.models.attention_kernels import cuda_lse_kernel

    both = SimpleNamespace(flash_sdp_enabled=lambda: True, mem_efficient_sdp_enabled=lambda: True)
    no_flash = SimpleNamespace(flash_sdp_enabled=lambda: False, mem_efficient_sdp_enabled=lambda: True)
    neither = SimpleNamespace(flash_sdp_enabled=lambda: False, mem_efficient_sdp_enabled=lambda: False)
    assert cuda_lse_kernel(torch.bfloat16, 64, (9, 0), both) == "flash_attention"  # H100/H200
    assert cuda_lse_kernel(torch.float16, 64, (8, 6), both) == "flash_attention"  # consumer Ampere
    assert cuda_lse_kernel(torch.float16, 64, (7, 5), both) == "efficient_attention"  # T4: no flash kernel
    assert cuda_lse_kernel(torch.float16, 64, (7, 0), both) == "efficient_attention"  # V100
    assert cuda_lse_kernel(torch.float32, 64, (9, 0), both) == "efficient_attention"  # flash is half-only
    assert cuda_lse_kernel(torch.bfloat16, 512, (9, 0), both) == "efficient_attention"  # too wide for flash
    assert cuda_lse_kernel(torch.bfloat16, 64, (9, 0), no_flash) == "efficient_attention"
    assert cuda_lse_kernel(torch.bfloat16, 64, (9, 0), neither) == "math"
    # bf16 forced on a T4 / V100 (--dtype bf16): the memory-efficient kernel has no bf16 form before sm80
    assert cuda_lse_kernel(torch.bfloat16, 64, (7, 5), both) == "math"
    assert cuda_lse_kernel(torch.bfloat16, 64, (7, 0), both) == "math"
    assert cuda_lse_kernel(torch.float32, 64, (7, 5), both) == "efficient_attention"


def test_the_cuda_kernel_choice_compiles_without_a_graph_break():
    """Under --compile the choice runs inside the traced graph of every weighted layer: it must trace (reading the
    backend flags through torch.backends.cuda.*_enabled() broke the graph there)."""
    from lvcd.models.attention_kernels import SDP_FLAGS, cuda_lse_kernel

    def choose(x):
        kernel = cuda_lse_kernel(torch.bfloat16, 64, (9, 0), SDP_FLAGS)
        return x + (1 if kernel == "flash_attention" else 2)

    torch._dynamo.reset()
    # fullgraph: any graph break is an error (with torch.backends.cuda as the flags this raises "Unsupported")
    assert torch.compile(choose, fullgraph=True, backend="eager")(torch.zeros(1)).item() == 1
    torch._dynamo.reset()


def test_batches_beyond_the_cuda_grid_limit_are_attended_in_pieces(monkeypatch):
    """The fused CUDA kernels cannot launch more than 65,535 batch rows (temporal attention at 2048x2048 has 65,536):
    such calls are split along the batch, exactly. Here the limit is lowered to 3 on the CPU."""
    from lvcd.models import attention_kernels
    from lvcd.models.attention_kernels import attention_with_lse, record_attention_backends, sdpa

    assert attention_kernels._batch_limit(torch.zeros(1, device="meta")) is None  # CPU / meta: one launch
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(8, 2, 5, 16, generator=generator) for _ in range(3))
    whole, (whole_out, whole_lse) = sdpa(q, k, v), attention_with_lse(q, k, v)
    monkeypatch.setattr(attention_kernels, "_batch_limit", lambda q: 3)
    with record_attention_backends() as kernels:
        split = sdpa(q, k, v)
        split_out, split_lse = attention_with_lse(q, k, v)
    assert len(kernels) == 6  # 3 pieces (3 + 3 + 2 rows) each
    assert split.shape == whole.shape and torch.equal(split, whole)
    assert torch.equal(split_out, whole_out) and torch.equal(split_lse, whole_lse)
