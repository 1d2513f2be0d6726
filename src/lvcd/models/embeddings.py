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


def micro_conditioning(
    fps_id: float, motion_bucket_id: float, cond_aug: float, num_frames: int, device=None, dim: int = 256
) -> torch.Tensor:
    """The conditioner's ``vector``: ``[emb(fps_id) | emb(motion_bucket_id) | emb(cond_aug)]`` per frame.

    Returns (num_frames, 3 * dim); every row is identical.
    """
    values = torch.tensor([float(fps_id), float(motion_bucket_id), float(cond_aug)], device=device)
    row = timestep_embedding(values, dim).reshape(1, 3 * dim)
    return row.expand(num_frames, -1).contiguous()


def frame_position_indices(num_frames: int, num_reference: int, device=None) -> torch.Tensor:
    """Frame-position index per frame of a clip: 0 for each reference-path frame, then 0, 1, ... for video frames.

    The official code derives this from ``T - 14``; here the reference count is explicit.
    """
    video = torch.arange(num_frames - num_reference, device=device)
    return torch.cat([torch.zeros(num_reference, dtype=video.dtype, device=device), video])
