"""EDM v-scaling denoiser, sigma schedule and Euler sampler (spec §2.8), k-diffusion style.

The denoiser is ``D(x, sigma) -> x0``; LVCD's blending and prev-reference logic live in the long-video driver
(``lvcd.longvideo``), never inside the Euler step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch


def vscaling(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """SVD's ``VScalingWithEDMcNoise``: (c_skip, c_out, c_in, c_noise) for sigma (T,), each shaped (T,) ."""
    c_skip = 1.0 / (sigma**2 + 1.0)
    c_out = -sigma / (sigma**2 + 1.0) ** 0.5
    c_in = 1.0 / (sigma**2 + 1.0) ** 0.5
    c_noise = 0.25 * sigma.log()
    return c_skip, c_out, c_in, c_noise


def edm_sigmas(
    num_steps: int, sigma_min: float = 0.002, sigma_max: float = 700.0, rho: float = 7.0, device=None
) -> torch.Tensor:
    """``EDMDiscretization``: Karras sigmas from sigma_max down to sigma_min, then a final 0. (num_steps + 1,) float32."""
    ramp = torch.linspace(0, 1, num_steps, device=device)
    min_inv, max_inv = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (max_inv + ramp * (min_inv - max_inv)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros([1])])


def training_sigmas(
    num: int, p_mean: float = 1.0, p_std: float = 1.6, generator: torch.Generator | None = None, device=None
) -> torch.Tensor:
    """``EDMSampling``: ln(sigma) ~ N(p_mean, p_std^2)."""
    return (p_mean + p_std * torch.randn(num, generator=generator, device=device)).exp()


def loss_weight(sigma: torch.Tensor) -> torch.Tensor:
    """``EDMWeighting(sigma_data=1)``: (sigma^2 + 1) / sigma^2."""
    return (sigma**2 + 1.0) / sigma**2


Denoiser = Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
"""denoiser(x, sigma, step) -> x0 prediction; ``step`` lets wrappers (overlap blending) act per step."""


@torch.no_grad()
def sample_euler(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    callback: Callable[[int, torch.Tensor, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Euler's method on the EDM probability-flow ODE (no churn), as LVCD's ``sample_func.sample``.

    x is the noise already scaled to sigmas[0]; per step: d = (x - D(x, sigma_i)) / sigma_i; x += (sigma_{i+1} - sigma_i) d.
    """
    for step in range(len(sigmas) - 1):
        sigma = sigmas[step]
        denoised = denoiser(x, sigma.expand(x.shape[0]), step)
        x = x + (sigmas[step + 1] - sigma) * ((x - denoised) / sigma)
        if callback is not None:
            callback(step, x, denoised)
    return x
