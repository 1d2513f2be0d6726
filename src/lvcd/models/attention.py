"""Attention layers of the spatio-temporal transformer, with LVCD's Reference Attention as an explicit plan.

Reference Attention (spec §2.5, §3.6): the spatial self-attention of frame t attends to the tokens of two frames of
its clip, ``key_frames[t, 0]`` and ``key_frames[t, 1]`` (2N keys for N queries), optionally adding a log-weight to the
logits of each block, which multiplies that block's unnormalised attention weights. No hooks: the plan is an argument.

No attention call takes a mask, so every one can run on a fused (flash) kernel: without log-weights the two key blocks
are concatenated; with them each block is attended to on its own and the two results are merged with their
log-sum-exp plus the block's log-weight, in float32 (the official ln(10) stays ln(10), i.e. a weight of exactly 10,
whatever the compute dtype). :mod:`lvcd.models.attention_kernels` holds the kernel dispatch.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from lvcd.models.attention_kernels import attention_with_lse, merge_attention_blocks, sdpa


@dataclass(frozen=True)
class ReferenceAttentionPlan:
    """Which frames supply the two key/value blocks of each frame's spatial self-attention.

    key_frames: (T, 2) long, frame indices within the clip.
    log_weights: optional (T, 2) float, added to the logits of key block 0 / 1 of each frame.
    weighted_layers: spatial-attention layer indices (per network, in module order) where ``log_weights`` apply;
        None means every layer. The official prev-reference sampling weights layers 0-12 of each network.

    >>> plan = ReferenceAttentionPlan.training(15)   # every frame attends to [itself ; frame 0]
    """

    key_frames: torch.Tensor
    log_weights: torch.Tensor | None = None
    weighted_layers: frozenset[int] | None = None

    @classmethod
    def training(cls, num_frames: int, device=None) -> ReferenceAttentionPlan:
        """The un-hooked official ``ReferenceAttention``: keys [K_t ; K_0] for every frame t. Build it on the
        activations' device: every layer indexes with it, and a CPU plan would cost a host-to-GPU copy per layer."""
        frames = torch.arange(num_frames, device=device)
        return cls(torch.stack([frames, torch.zeros_like(frames)], dim=1))

    def to(self, device) -> ReferenceAttentionPlan:
        """The plan with its tensors on ``device`` (do this once per window, not per layer)."""
        log_weights = self.log_weights.to(device) if self.log_weights is not None else None
        return ReferenceAttentionPlan(self.key_frames.to(device), log_weights, self.weighted_layers)

    def applies_log_weights(self, layer_index: int) -> bool:
        return self.log_weights is not None and (self.weighted_layers is None or layer_index in self.weighted_layers)


class Attention(nn.Module):
    """Multi-head attention with sgm's parameter names (``to_q``, ``to_k``, ``to_v``, ``to_out.0``)."""

    def __init__(self, query_dim: int, heads: int, dim_head: int, context_dim: int | None = None):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim or query_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(0.0))

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(x, "b n (h d) -> b h n d", h=self.heads)

    def merge_heads(self, x: torch.Tensor) -> torch.Tensor:
        return rearrange(x, "b h n d -> b n (h d)")

    def single_token_cross_attention(self, context: torch.Tensor) -> torch.Tensor:
        """Cross-attention to ONE context token: softmax over a single key is exactly 1, so the result is
        ``to_out(to_v(context))`` for every query (spec §2.4 note). (B, 1, Dctx) -> (B, 1, C), broadcast over queries."""
        assert context.shape[1] == 1, "single_token_cross_attention needs exactly one context token"
        return self.to_out(self.to_v(context))

    def reference_self_attention(
        self, x: torch.Tensor, num_frames: int, plan: ReferenceAttentionPlan, layer_index: int
    ) -> torch.Tensor:
        """Spatial self-attention where frame t's keys/values are the tokens of frames ``plan.key_frames[t]``.

        x: ((B T), N, C) -> ((B T), N, C)
        """
        q, k, v = (self.split_heads(proj(x)) for proj in (self.to_q, self.to_k, self.to_v))
        key_frames = plan.key_frames.to(x.device)

        def block(t: torch.Tensor, which: int) -> torch.Tensor:
            t = rearrange(t, "(b t) h n d -> b t h n d", t=num_frames)
            return rearrange(t[:, key_frames[:, which]], "b t h n d -> (b t) h n d")

        if plan.applies_log_weights(layer_index):
            out0, lse0 = attention_with_lse(q, block(k, 0), block(v, 0))
            out1, lse1 = attention_with_lse(q, block(k, 1), block(v, 1))
            # log-weight of block 1 relative to block 0, per frame, float32: ((B T),)
            relative = (plan.log_weights[:, 1] - plan.log_weights[:, 0]).to(device=x.device, dtype=torch.float32)
            out = merge_attention_blocks(out0, lse0, out1, lse1, relative.repeat(q.shape[0] // num_frames))
        else:
            out = sdpa(q, torch.cat([block(k, 0), block(k, 1)], dim=2), torch.cat([block(v, 0), block(v, 1)], dim=2))
        return self.to_out(self.merge_heads(out))

    def temporal_self_attention(self, x: torch.Tensor, num_reference: int) -> torch.Tensor:
        """Attention along time: the first ``num_reference`` frames each attend only to themselves (softmax over one
        key is exactly 1, so their output is their own value), the remaining video frames attend among themselves.

        x: (B', T, C) -> (B', T, C)
        """
        v = self.to_v(x)
        video = x[:, num_reference:]
        q, k, vv = (
            self.split_heads(self.to_q(video)),
            self.split_heads(self.to_k(video)),
            self.split_heads(v[:, num_reference:]),
        )
        out = self.merge_heads(sdpa(q, k, vv))
        if num_reference:
            out = torch.cat([v[:, :num_reference], out], dim=1)
        return self.to_out(out)


class GEGLUFeedForward(nn.Module):
    """sgm FeedForward with GEGLU: ``net.0.proj`` (dim -> 2*inner, split [value, gate]), ``net.2`` (inner -> dim_out)."""

    def __init__(self, dim: int, dim_out: int | None = None, mult: int = 4):
        super().__init__()
        inner = dim * mult
        project_in = nn.Module()
        project_in.proj = nn.Linear(dim, inner * 2)
        self.net = nn.Sequential(project_in, nn.Dropout(0.0), nn.Linear(inner, dim_out or dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.net[0].proj(x).chunk(2, dim=-1)
        return self.net[2](value * F.gelu(gate))
