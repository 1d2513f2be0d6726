"""SpatialVideoTransformer: a spatial transformer block (Reference Attention + single-token CLIP cross-attention)
followed by a temporal transformer block over the frames of each clip, merged with a learned mix factor (spec §2.4)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import torch
from einops import rearrange
from torch import nn

from lvcd.models.attention import Attention, GEGLUFeedForward, ReferenceAttentionPlan
from lvcd.models.blocks import MixFactor
from lvcd.models.embeddings import frame_position_indices, timestep_embedding
from lvcd.models.norm import group_norm


@dataclass(frozen=True)
class ClipLayout:
    """How the frames of one network call are arranged: B clips of ``num_frames`` frames, the first
    ``num_reference`` of each clip on the reference path, and the spatial Reference Attention plan."""

    num_frames: int
    num_reference: int
    reference_attention: ReferenceAttentionPlan
    # Window constant: each SVT's frame-position embedding of one clip, (T, 1, C), by ``SpatialVideoTransformer.name``
    # (``LVCDModel.with_position_embeddings`` fills it once per shot; None: computed at every call, as in training).
    position_embeddings: Mapping[str, torch.Tensor] | None = field(default=None, compare=False, hash=False)

    @classmethod
    def training(cls, num_frames: int, num_reference: int = 1, device=None) -> ClipLayout:
        return cls(num_frames, num_reference, ReferenceAttentionPlan.training(num_frames, device))

    def with_position_embeddings(self, embeddings: Mapping[str, torch.Tensor]) -> ClipLayout:
        return replace(self, position_embeddings=dict(embeddings))


class SpatialTransformerBlock(nn.Module):
    """sgm BasicTransformerBlock with attn1 = Reference Attention and attn2 = cross-attention to the CLIP token."""

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int):
        super().__init__()
        self.attn1 = Attention(dim, heads, dim_head)
        self.ff = GEGLUFeedForward(dim)
        self.attn2 = Attention(dim, heads, dim_head, context_dim=context_dim)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, layout: ClipLayout, layer_index: int) -> torch.Tensor:
        x = (
            self.attn1.reference_self_attention(
                self.norm1(x), layout.num_frames, layout.reference_attention, layer_index
            )
            + x
        )
        x = self.attn2.single_token_cross_attention(context) + x
        return self.ff(self.norm3(x)) + x


class TemporalTransformerBlock(nn.Module):
    """sgm VideoTransformerBlock (ff_in, masked temporal self-attention, cross-attention to the clip's first-frame
    context, ff). Works on ((B S), T, C)."""

    def __init__(self, dim: int, heads: int, dim_head: int, context_dim: int):
        super().__init__()
        self.norm_in = nn.LayerNorm(dim)
        self.ff_in = GEGLUFeedForward(dim)
        self.attn1 = Attention(dim, heads, dim_head)
        self.ff = GEGLUFeedForward(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = Attention(dim, heads, dim_head, context_dim=context_dim)
        self.norm1, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, clip_context: torch.Tensor, layout: ClipLayout) -> torch.Tensor:
        # x: ((B T), S, C); clip_context: (B, 1, Dctx) = the context of each clip's first frame
        tokens = x.shape[1]
        z = rearrange(x, "(b t) s c -> (b s) t c", t=layout.num_frames)
        z = self.ff_in(self.norm_in(z)) + z
        z = self.attn1.temporal_self_attention(self.norm1(z), layout.num_reference) + z
        cross = self.attn2.single_token_cross_attention(clip_context)  # (B, 1, C): same for every token of a clip
        z = (rearrange(z, "(b s) t c -> b (s t) c", s=tokens) + cross).reshape(z.shape)
        z = self.ff(self.norm3(z)) + z
        return rearrange(z, "(b s) t c -> (b t) s c", s=tokens)


class SpatialVideoTransformer(nn.Module):
    """One SVT; ``layer_index`` is its position among the network's spatial-attention layers (module order).

    ``depth`` (sgm's ``transformer_depth``; 1 in SVD/LVCD) pairs of spatial and temporal blocks run in turn, each
    pair merged by the mix factor; all of an SVT's spatial blocks follow its Reference Attention plan.
    """

    def __init__(
        self,
        channels: int,
        heads: int,
        dim_head: int,
        context_dim: int,
        layer_index: int,
        depth: int = 1,
        name: str = "",
    ):
        super().__init__()
        self.layer_index = layer_index
        self.name = name or str(layer_index)  # unique within a model ("unet.3", "controlnet.3"): its constants' key
        self.norm = group_norm(channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, channels)
        self.transformer_blocks = nn.ModuleList(
            [SpatialTransformerBlock(channels, heads, dim_head, context_dim) for _ in range(depth)]
        )
        self.proj_out = nn.Linear(channels, channels)
        self.time_stack = nn.ModuleList(
            [TemporalTransformerBlock(channels, heads, dim_head, context_dim) for _ in range(depth)]
        )
        self.time_pos_embed = nn.Sequential(
            nn.Linear(channels, 4 * channels), nn.SiLU(), nn.Linear(4 * channels, channels)
        )
        self.time_mixer = MixFactor()

    def forward(self, x: torch.Tensor, context: torch.Tensor, layout: ClipLayout) -> torch.Tensor:
        # x: ((B T), C, H, W); context: ((B T), 1, Dctx)
        height, width = x.shape[-2:]
        x_in = x
        h = self.proj_in(rearrange(self.norm(x), "n c h w -> n (h w) c"))
        if layout.position_embeddings is not None and self.name in layout.position_embeddings:
            position_emb = layout.position_embeddings[self.name]
        else:
            position_emb = self.position_embedding(layout, x.device, h.dtype)
        position_emb = position_emb.repeat(x.shape[0] // layout.num_frames, 1, 1)
        clip_context = context[:: layout.num_frames]
        for block, temporal in zip(self.transformer_blocks, self.time_stack, strict=True):
            h = block(h, context, layout, self.layer_index)
            h = self.time_mixer(h, temporal(h + position_emb, clip_context, layout))
        h = rearrange(self.proj_out(h), "n (h w) c -> n c h w", h=height, w=width)
        return h + x_in

    def position_embedding(self, layout: ClipLayout, device=None, dtype=None) -> torch.Tensor:
        """The learned frame-position embedding of one clip, (T, 1, C): a constant of the layout."""
        positions = frame_position_indices(layout.num_frames, layout.num_reference, device=device)
        channels = self.proj_in.out_features
        return self.time_pos_embed(timestep_embedding(positions, channels).to(dtype))[:, None]
