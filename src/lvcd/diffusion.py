"""EDM v-scaling denoiser, sigma schedule and Euler sampler (spec §2.8), k-diffusion style.

The one contract between samplers and models is k-diffusion's denoiser ``D(x, sigma) -> x0``. A sampler is a plain
function ``sample_x(denoiser, x, sigmas, callback=None)``; LVCD's overlapped blending and prev-reference attention
live in a wrapper around the denoiser (``lvcd.sampling.WindowDenoiser``, which counts its calls), never inside a
sampler step, so any sampler of this signature runs LVCD's long videos.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from lvcd.config import SamplingConfig

_OFFICIAL = SamplingConfig()


def vscaling(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """SVD's ``VScalingWithEDMcNoise``: (c_skip, c_out, c_in, c_noise) for sigma (T,), each shaped (T,) ."""
    c_skip = 1.0 / (sigma**2 + 1.0)
    c_out = -sigma / (sigma**2 + 1.0) ** 0.5
    c_in = 1.0 / (sigma**2 + 1.0) ** 0.5
    c_noise = 0.25 * sigma.log()
    return c_skip, c_out, c_in, c_noise


def edm_sigmas(
    num_steps: int,
    sigma_min: float = _OFFICIAL.sigma_min,
    sigma_max: float = _OFFICIAL.sigma_max,
    rho: float = _OFFICIAL.rho,
    device=None,
) -> torch.Tensor:
    """``EDMDiscretization``: Karras sigmas from sigma_max down to sigma_min, then a final 0. (num_steps + 1,) float32."""
    ramp = torch.linspace(0, 1, num_steps, device=device)
    min_inv, max_inv = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (max_inv + ramp * (min_inv - max_inv)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def training_sigmas(
    num: int,
    p_mean: float = _OFFICIAL.p_mean,
    p_std: float = _OFFICIAL.p_std,
    generator: torch.Generator | None = None,
    device=None,
) -> torch.Tensor:
    """``EDMSampling``: ln(sigma) ~ N(p_mean, p_std^2)."""
    return (p_mean + p_std * torch.randn(num, generator=generator, device=device)).exp()


def loss_weight(sigma: torch.Tensor) -> torch.Tensor:
    """``EDMWeighting(sigma_data=1)``: (sigma^2 + 1) / sigma^2."""
    return (sigma**2 + 1.0) / sigma**2


Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``denoiser(x, sigma) -> x0``: x (B, ...) at noise levels sigma (B,), returns the x0 prediction shaped like x."""

Callback = Callable[[dict[str, Any]], None]
"""Called after every step with k-diffusion's dict: ``{"i": step, "x": x, "sigma": sigmas[i], "denoised": x0}``."""


@torch.no_grad()
def sample_euler(
    denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, callback: Callback | None = None
) -> torch.Tensor:
    """Euler's method on the EDM probability-flow ODE (no churn), as LVCD's ``sample_func.sample``.

    x is the noise already scaled to sigmas[0]; per step: d = (x - D(x, sigma_i)) / sigma_i; x += (sigma_{i+1} - sigma_i) d.
    One denoiser call per step.
    """
    for step in range(len(sigmas) - 1):
        sigma = sigmas[step]
        denoised = denoiser(x, sigma.expand(x.shape[0]))
        x = x + (sigmas[step + 1] - sigma) * ((x - denoised) / sigma)
        if callback is not None:
            callback({"i": step, "x": x, "sigma": sigma, "denoised": denoised})
    return x
