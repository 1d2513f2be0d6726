"""Attention kernels: one entry point for plain attention (``sdpa``), one for attention that also returns the
log-sum-exp of its logits (``attention_with_lse``), the log-sum-exp merge of two key blocks, and a report of which
fused kernel a call takes (``sdpa_backend``, ``record_attention_backends``).

``attention_with_lse`` uses PyTorch's fused kernels directly (they return the log-sum-exp, which the public
``scaled_dot_product_attention`` drops): the flash kernel on CPU and, for fp16/bf16, on CUDA; the memory-efficient
kernel for fp32 on CUDA; plain math elsewhere. The log-sum-exp is float32 in every case. The fused kernels give
no gradient for their log-sum-exp output (PyTorch marks it non-differentiable), so when a gradient is being recorded
(``torch.is_grad_enabled()`` and an input that requires grad) the math form is used: the merge then differentiates
exactly, as the masked form does.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend

_recorded: list[str] | None = None  # set by record_attention_backends


def sdpa_backend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, attn_mask: torch.Tensor | None = None) -> str:
    """The kernel ``F.scaled_dot_product_attention(q, k, v, attn_mask)`` would take here: "flash_attention",
    "efficient_attention", "cudnn_attention", "math", ... (PyTorch's own choice, ``torch._fused_sdp_choice``)."""
    return SDPBackend(torch._fused_sdp_choice(q, k, v, attn_mask, 0.0, False)).name.lower()


@contextmanager
def record_attention_backends() -> Iterator[list[str]]:
    """Collect the kernel of every attention call made inside the block (eager mode), e.g. to check on a GPU that
    every call of a denoiser takes the flash kernel:

    >>> with record_attention_backends() as kernels:   # doctest: +SKIP
    ...     model.denoise(x, sigma, cond, layout)
    >>> set(kernels)                                   # doctest: +SKIP
    {'flash_attention'}
    """
    global _recorded
    previous, _recorded = _recorded, []
    try:
        yield _recorded
    finally:
        _recorded = previous


# Largest head width of the fused flash kernel on CUDA (wider heads, e.g. the VAE's 512, take another kernel).
FLASH_MAX_HEAD_DIM = 256


def _fused_on_meta(q: torch.Tensor) -> bool:
    """On the meta device (shapes only: ``lvcd.memory_estimate``) attention allocates what a GPU's fused kernels do
    (output and log-sum-exp), not the math form's (B, H, N, M) logits: flash up to 256-wide heads, the
    memory-efficient kernel (no width limit, same outputs) for wider ones such as the VAE's 512."""
    return q.device.type == "meta"


# The fused CUDA kernels launch a grid with the batch on an axis of at most 65,535 blocks ("invalid configuration
# argument" beyond, pytorch/pytorch#146704). Temporal attention's batch is the latent's pixels (x frames' batch):
# 65,536 at 2048x2048. Larger batches are attended in pieces (exact: each batch row is independent).
CUDA_MAX_BATCH = 65_535


def _batch_limit(q: torch.Tensor) -> int | None:
    return CUDA_MAX_BATCH if q.device.type == "cuda" else None


def _pieces(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> list[tuple[torch.Tensor, ...]] | None:
    """(q, k, v) split along the batch into pieces the kernels can launch, or None when one launch does."""
    limit = _batch_limit(q)
    if limit is None or q.shape[0] <= limit:
        return None
    return list(zip(*(t.split(limit) for t in (q, k, v)), strict=True))


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Unmasked scaled dot-product attention; (B, H, N, D) x (B, H, M, D) -> (B, H, N, D)."""
    pieces = _pieces(q, k, v)
    if pieces is not None:
        return torch.cat([sdpa(*piece) for piece in pieces])
    if _recorded is not None:
        _recorded.append(sdpa_backend(q, k, v))
    if _fused_on_meta(q):
        return torch.ops.aten._scaled_dot_product_flash_attention(q, k, v)[0]
    return F.scaled_dot_product_attention(q, k, v)


def _lse_kernel(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> str:
    if torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or v.requires_grad):
        return "math"  # the fused kernels' log-sum-exp carries no gradient
    if q.device.type == "cpu" or _fused_on_meta(q):
        return "flash_attention"
    if q.device.type == "cuda":
        return cuda_lse_kernel(q.dtype, q.shape[-1], torch.cuda.get_device_capability(q.device), SDP_FLAGS)
    return "math"


# Whether the flash / memory-efficient kernels are enabled (``torch.backends.cuda.enable_flash_sdp`` ...), read in a
# form torch.compile traces: ``torch.backends.cuda.flash_sdp_enabled()`` breaks the graph at every weighted layer.
SDP_FLAGS = types.SimpleNamespace(
    flash_sdp_enabled=torch._C._get_flash_sdp_enabled, mem_efficient_sdp_enabled=torch._C._get_mem_efficient_sdp_enabled
)


def cuda_lse_kernel(dtype: torch.dtype, head_dim: int, capability: tuple[int, int], backends) -> str:
    """The fused kernel for ``attention_with_lse`` on a CUDA GPU of compute ``capability``: flash for fp16/bf16
    heads up to 256 wide on Ampere or newer (sm80+: older GPUs have no flash kernel), the memory-efficient kernel
    otherwise; math when the caller disabled both (``torch.backends.cuda.enable_flash_sdp(False)`` ...) and for bf16
    before Ampere (the memory-efficient kernel has no bf16 form there: "cutlassF: no kernel found to launch")."""
    flash = dtype in (torch.float16, torch.bfloat16) and head_dim % 8 == 0 and head_dim <= FLASH_MAX_HEAD_DIM
    if flash and capability >= (8, 0) and backends.flash_sdp_enabled():
        return "flash_attention"
    if backends.mem_efficient_sdp_enabled() and (dtype != torch.bfloat16 or capability >= (8, 0)):
        return "efficient_attention"
    return "math"


def attention_with_lse(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unmasked attention and the float32 log-sum-exp of each query's scaled logits.

    (B, H, N, D) x (B, H, M, D) -> (out (B, H, N, D) in q's dtype, lse (B, H, N) float32).
    """
    pieces = _pieces(q, k, v)
    if pieces is not None:
        outs, lses = zip(*(attention_with_lse(*piece) for piece in pieces), strict=True)
        return torch.cat(outs), torch.cat(lses)
    kernel = _lse_kernel(q, k, v)
    if _recorded is not None:
        _recorded.append(kernel)
    if kernel == "flash_attention" and q.device.type == "cpu":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v)[:2]
    elif kernel == "flash_attention":
        out, lse = torch.ops.aten._scaled_dot_product_flash_attention(q, k, v)[:2]
    elif kernel == "efficient_attention":
        out, lse = torch.ops.aten._scaled_dot_product_efficient_attention(q, k, v, None, True)[:2]
        lse = lse[..., : q.shape[2]]  # some versions pad the query length to a multiple of 32
    else:
        dtype = _at_least_fp32(q.dtype)
        logits = (q.to(dtype) @ k.to(dtype).transpose(-1, -2)) * q.shape[-1] ** -0.5
        lse = logits.logsumexp(dim=-1)
        out = ((logits - lse[..., None]).exp() @ v.to(logits.dtype)).to(q.dtype)
    return out, lse.to(_at_least_fp32(lse.dtype))


def _at_least_fp32(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


def block_weight_of_second(lse0: torch.Tensor, lse1: torch.Tensor, log_weight: torch.Tensor) -> torch.Tensor:
    """Share of key block 1 in attention over both blocks when its logits get ``+log_weight``:
    ``w e^lse1 / (e^lse0 + w e^lse1)`` with ``w = e^log_weight``, in float32 (or float64 for float64 inputs).
    lse: (B, H, N); log_weight: (B,)."""
    dtype = _at_least_fp32(torch.promote_types(lse0.dtype, log_weight.dtype))
    return torch.sigmoid(lse1.to(dtype) + log_weight.to(dtype)[:, None, None] - lse0.to(dtype))


def merge_attention_blocks(
    out0: torch.Tensor, lse0: torch.Tensor, out1: torch.Tensor, lse1: torch.Tensor, log_weight: torch.Tensor
) -> torch.Tensor:
    """Attention over two key blocks from the attention over each (exact): the results mixed by their softmax mass,
    block 1's mass multiplied by ``exp(log_weight)``; computed in float32 at least, returned in ``out0``'s dtype.

    out: (B, H, N, D); lse: (B, H, N) float32; log_weight: (B,) float32.
    """
    share = block_weight_of_second(lse0, lse1, log_weight)[..., None]
    return torch.lerp(out0.to(share.dtype), out1.to(share.dtype), share).to(out0.dtype)
