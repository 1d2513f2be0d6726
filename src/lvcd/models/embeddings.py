"""Sinusoidal embeddings: diffusion time, frame position and the SVD micro-conditioning vector."""

from __future__ import annotations

import math

import torch


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """sgm's sinusoid: ``[cos(t * f_i), sin(t * f_i)]`` with ``f_i = exp(-ln(max_period) * i / (dim/2))``.

    Computed in float32 whatever the input dtype, like the official code.
    (N,) -> (N, dim)
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=timesteps.device) / half)
    args = timesteps[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        embedding = torch.cat([embedding, torch.zeros_like(embedding[:, :1])], dim=-1)
    return embedding


MICRO_CONDITIONING_DIM = 256  # sinusoid width of each of the three values


def micro_conditioning(
    fps_id: float | torch.Tensor,
    motion_bucket_id: float | torch.Tensor,
    cond_aug: float | torch.Tensor,
    num_frames: int,
    device=None,
    dim: int = MICRO_CONDITIONING_DIM,
) -> torch.Tensor:
    """The conditioner's ``vector``: ``[emb(fps_id) | emb(motion_bucket_id) | emb(cond_aug)]`` per frame.

    Each value is a number (the same for every frame, as in inference) or a tensor of ``num_frames`` per-frame values
    (training batches). Returns (num_frames, 3 * dim).
    """
    columns = [
        torch.as_tensor(value, dtype=torch.float32, device=device).expand(num_frames)
        for value in (fps_id, motion_bucket_id, cond_aug)
    ]
    return torch.cat([timestep_embedding(column, dim) for column in columns], dim=-1)


def frame_position_indices(num_frames: int, num_reference: int, device=None) -> torch.Tensor:
    """Frame-position index per frame of a clip: 0 for each reference-path frame, then 0, 1, ... for video frames.

    The official code derives this from ``T - 14``; here the reference count is explicit.
    """
    video = torch.arange(num_frames - num_reference, device=device)
    return torch.cat([torch.zeros(num_reference, dtype=video.dtype, device=device), video])
