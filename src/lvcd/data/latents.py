"""Frames to training latents: the encoder protocol ``lvcd data prepare`` and ``lvcd data synth`` write latents
with, its adapter of lvcd's VAE, and each frame's own seeded posterior noise (so a frame's latent does not depend on
which run, shard or resume encoded it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch

from lvcd.errors import InputError


class LatentEncoder(Protocol):
    """Encodes frames to SCALED latents with explicit posterior noise."""

    latent_channels: int
    downsample: int

    def __call__(self, images: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """images (N, 3, H, W) in [-1, 1], noise (N, C, H/d, W/d) ~ N(0, 1) -> scaled latents (N, C, H/d, W/d)."""
        ...


class VAELatentEncoder:
    """Adapter of ``lvcd.models.vae.AutoencoderKL`` to ``LatentEncoder`` (no grad, moved to its device/dtype)."""

    def __init__(self, vae: Any, device: str | torch.device | None = None) -> None:
        config = getattr(vae, "cfg", None) or getattr(vae, "config", None)
        if config is None:
            raise InputError("The VAE has no `cfg` (VAEConfig); build it with lvcd.models.vae.AutoencoderKL(config).")
        self.vae = vae
        self.latent_channels = int(config.z_channels)
        self.downsample = int(config.downsample_factor)
        parameter = next(vae.parameters(), None)
        self.device = (
            torch.device(device)
            if device is not None
            else (parameter.device if parameter is not None else torch.device("cpu"))
        )
        self.dtype = parameter.dtype if parameter is not None else torch.float32

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, self.dtype)
        noise = noise.to(self.device, self.dtype)
        return self.vae.encode(images, noise=noise).float().cpu()


def as_latent_encoder(encoder: Any, device: str | torch.device | None = None) -> LatentEncoder:
    """Accept a ``LatentEncoder`` or an ``AutoencoderKL``."""
    if hasattr(encoder, "latent_channels") and callable(encoder):
        return encoder
    if hasattr(encoder, "encode"):
        return VAELatentEncoder(encoder, device)
    raise InputError(f"Cannot encode latents with {type(encoder).__name__}: pass an AutoencoderKL or a LatentEncoder.")


def frame_seed(seed: int, name: str) -> int:
    """Seed of one frame's posterior noise: a hash of the global seed and the frame name (63 bits)."""
    digest = hashlib.sha256(f"{seed}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def frame_noise(seed: int, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    generator = torch.Generator().manual_seed(frame_seed(seed, name))
    return torch.randn(shape, generator=generator)


def to_model_input(frames: Sequence[np.ndarray]) -> torch.Tensor:
    """HxWx3 uint8 frames -> (N, 3, H, W) float32 in [-1, 1]."""
    batch = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float()
    return batch / 127.5 - 1.0
