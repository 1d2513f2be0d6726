"""Decoding latents to frames in overlapping chunks with the reference latent as temporal context (spec §3.7)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from lvcd.longvideo import plan_decoding
from lvcd.model import LVCDModel

DECODE_CHUNK = 10  # latents decoded together, as the official code


@torch.no_grad()
def decode_frames(
    model: LVCDModel,
    latent_at: Callable[[list[int]], torch.Tensor],
    num_frames: int,
    chunk: int = DECODE_CHUNK,
    overlap: int = 3,
    have: Callable[[int], bool] | None = None,
) -> Iterator[tuple[int, torch.Tensor | None]]:
    """Yield (frame index, pixels (3, H, W) in [-1, 1], float32 on the model's device) for frames 0..N-1 in order.

    ``latent_at(indices)`` returns SCALED latents (k, 4, h, w); only one chunk is decoded at a time. ``have(index)``:
    the caller has that frame already (decoded by a stopped job); a chunk whose frames it all has is not decoded, its
    frames come as (index, None).
    """
    vae_dtype = next(model.vae.parameters()).dtype
    for piece in plan_decoding(num_frames, chunk=chunk, overlap=overlap):
        if have is not None and all(have(index) for index in piece.output_frames):
            yield from ((index, None) for index in piece.output_frames)
            continue
        indices = list(piece.latent_indices)
        pixels = model.vae.decode(latent_at(indices).to(vae_dtype), num_frames=len(indices)).clamp(-1, 1).float()
        yield from zip(piece.output_frames, pixels[piece.keep_from :], strict=True)
