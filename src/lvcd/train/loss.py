"""The LVCD training loss (official ``StandardDiffusionLoss`` with the video changes, spec §4.3).

For B clips of T frames (reference first):

1. one sigma per clip, ln sigma ~ N(p_mean, p_std^2), repeated over the clip's T frames (the reference too);
2. ``noised = x0 + sigma * eps`` over all frames;
3. ``D = denoiser(noised, sigma)`` (EDM v-scaling, ``LVCDModel.denoise``) with Reference Attention [K_t; K_0];
4. per frame ``mean_CHW((sigma^2 + 1) / sigma^2 * (D - x0)^2)``, then the mean over all B*T frames.

Sigma and noise are drawn (sigma first, then noise, like the official) from an explicit generator, or given.

    >>> cond = build_conditioning(encoders, batch)                                  # doctest: +SKIP
    >>> out = diffusion_loss(model, batch["latents"], cond, generator=generator)     # doctest: +SKIP
    >>> out.loss.backward()                                                          # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from einops import rearrange, repeat

from lvcd.diffusion import loss_weight, training_sigmas
from lvcd.model import Conditioning, LVCDModel
from lvcd.models.embeddings import micro_conditioning
from lvcd.models.transformer import ClipLayout


@dataclass
class LossOutput:
    loss: torch.Tensor  # () mean over all frames
    frame_losses: torch.Tensor  # (B T,) weighted MSE per frame
    sigma: torch.Tensor  # (B,) one per clip
    noise: torch.Tensor  # (B T, 4, h, w)
    denoised: torch.Tensor  # (B T, 4, h, w) x0 prediction


def draw_sigma_and_noise(
    latents: torch.Tensor, p_mean: float, p_std: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sigma (B,) then noise (B T, 4, h, w) for latents (B, T, 4, h, w), in that order, on the generator's device."""
    batch, frames = latents.shape[:2]
    device = generator.device if generator is not None else latents.device
    sigma = training_sigmas(batch, p_mean, p_std, generator=generator, device=device)
    noise = torch.randn((batch * frames, *latents.shape[2:]), generator=generator, device=device, dtype=torch.float32)
    return sigma.to(latents.device), noise.to(latents.device)


def _per_frame(values: torch.Tensor | None, batch: int, frames: int, default: float, device) -> torch.Tensor:
    if values is None:
        return torch.full((batch * frames,), float(default), device=device)
    values = torch.as_tensor(values, device=device).float()
    if values.ndim == 0:
        return values.expand(batch * frames)
    if values.ndim == 1 and values.shape[0] == batch:  # one value per clip
        return values.repeat_interleave(frames)
    return values.reshape(batch * frames)


def micro_conditioning_vector(
    batch: Mapping[str, torch.Tensor],
    num_clips: int,
    num_frames: int,
    fps_id: float,
    motion_bucket_id: float,
    cond_aug: float,
    device,
) -> torch.Tensor:
    """The conditioner's ``vector`` per frame (:func:`lvcd.models.embeddings.micro_conditioning`) from the batch's
    per-frame values (or the defaults where a key is absent). (B T, 768)."""
    columns = [
        _per_frame(batch.get(key), num_clips, num_frames, default, device)
        for key, default in (("fps_id", fps_id), ("motion_bucket_id", motion_bucket_id), ("cond_aug", cond_aug))
    ]
    return micro_conditioning(*columns, num_frames=num_clips * num_frames, device=device)


@torch.no_grad()
def build_conditioning(encoders: LVCDModel, batch: Mapping[str, torch.Tensor]) -> Conditioning:
    """Per-frame conditioning of a training batch, computed with the frozen CLIP and conditioner VAE encoder.

    batch: ``latents`` (B, T, 4, h, w), ``control_hint`` (B, T, 1|3, H, W) lines ~1, ``reference`` (B, 3, H, W) in
    [-1, 1], optional ``fps_id`` / ``motion_bucket_id`` / ``cond_aug`` (B, T). Runs in fp32 outside autocast: the
    official runs the conditioner VAE encoder in fp32 (its CLIP under fp16 autocast; fp32 is the closer value).
    """
    latents, reference, hint = batch["latents"], batch["reference"], batch["control_hint"]
    clips, frames = latents.shape[:2]
    device = latents.device
    with torch.autocast(device_type=device.type, enabled=False):
        crossattn, concat = encoders.embed_reference(reference.float())  # (B, 1, D), (B, 4, h, w) unscaled
    sampling = encoders.config.sampling
    vector = micro_conditioning_vector(
        batch, clips, frames, sampling.fps_id, sampling.motion_bucket_id, sampling.cond_aug, device
    )
    return Conditioning(
        concat=repeat(concat, "b c h w -> (b t) c h w", t=frames),
        crossattn=repeat(crossattn, "b n d -> (b t) n d", t=frames),
        vector=vector,
        hint=rearrange(hint, "b t c h w -> (b t) c h w"),
    )


def diffusion_loss(
    model: LVCDModel,
    latents: torch.Tensor,
    cond: Conditioning,
    sigma: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    p_mean: float | None = None,
    p_std: float | None = None,
    num_reference: int = 1,
) -> LossOutput:
    """The v-prediction loss of B clips. latents: (B, T, 4, h, w) SCALED, reference first; cond over B*T frames.

    sigma (B,) and noise (B T, 4, h, w) are drawn from ``generator`` when not given (sigma first, then noise).
    """
    clips, frames = latents.shape[:2]
    if sigma is None or noise is None:
        sampling = model.config.sampling
        drawn_sigma, drawn_noise = draw_sigma_and_noise(
            latents,
            sampling.p_mean if p_mean is None else p_mean,
            sampling.p_std if p_std is None else p_std,
            generator,
        )
        sigma = drawn_sigma if sigma is None else sigma
        noise = drawn_noise if noise is None else noise
    x0 = rearrange(latents.float(), "b t c h w -> (b t) c h w")
    sigma = sigma.to(device=x0.device, dtype=torch.float32).reshape(clips)
    noise = noise.to(device=x0.device, dtype=torch.float32).reshape(x0.shape)
    sigma_frames = sigma.repeat_interleave(frames)  # (B T,)
    noised = x0 + noise * sigma_frames[:, None, None, None]
    layout = ClipLayout.training(num_frames=frames, num_reference=num_reference, device=x0.device)
    denoised = model.denoise(noised, sigma_frames, cond, layout).float()
    weight = loss_weight(sigma_frames)[:, None, None, None]
    frame_losses = (weight * (denoised - x0) ** 2).flatten(1).mean(dim=1)
    return LossOutput(frame_losses.mean(), frame_losses, sigma, noise, denoised)
