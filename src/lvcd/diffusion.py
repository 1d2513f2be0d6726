"""EDM v-scaling denoiser, sigma schedule and samplers (Euler, spec §2.8; Heun; DPM-Solver++(2M)), k-diffusion style.

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
    ramp = torch.linspace(0, 1, num_steps, device=device, dtype=torch.float32)  # float32 whatever torch's default
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
    return (p_mean + p_std * torch.randn(num, generator=generator, device=device, dtype=torch.float32)).exp()


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


sample_euler.calls_per_step = 1  # denoiser calls per step (before the last); see ``denoiser_calls_before``


@torch.no_grad()
def sample_heun(
    denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, callback: Callback | None = None
) -> torch.Tensor:
    """Heun's method (EDM's Algorithm 1 without churn, k-diffusion's ``sample_heun``): an Euler step, then the
    slope at its end averaged with the slope at its start (second order). Two denoiser calls per step, one for the
    last step (to sigma 0, where Heun falls back to Euler)."""
    to_zero = (sigmas == 0).tolist()  # read once: a test of a device tensor in the loop would sync every step
    for step in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[step], sigmas[step + 1]
        denoised = denoiser(x, sigma.expand(x.shape[0]))
        slope = (x - denoised) / sigma
        x_euler = x + (sigma_next - sigma) * slope
        if to_zero[step + 1]:
            x = x_euler
        else:
            slope_next = (x_euler - denoiser(x_euler, sigma_next.expand(x.shape[0]))) / sigma_next
            x = x + (sigma_next - sigma) * (slope + slope_next) / 2
        if callback is not None:
            callback({"i": step, "x": x, "sigma": sigma, "denoised": denoised})
    return x


sample_heun.calls_per_step = 2


@torch.no_grad()
def sample_dpmpp_2m(
    denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, callback: Callback | None = None
) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022) in k-diffusion's EDM form (``sample_dpmpp_2m``): a multistep second-order
    solver in t = -log(sigma) that extrapolates the x0-prediction from the current and the previous step. One
    denoiser call per step; the first step (no history) and the last (to sigma 0) are first order."""
    previous = None
    to_zero = (sigmas == 0).tolist()  # read once: a test of a device tensor in the loop would sync every step
    for step in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[step], sigmas[step + 1]
        denoised = denoiser(x, sigma.expand(x.shape[0]))
        if to_zero[step + 1]:
            x = denoised  # the exponential-integrator step to sigma 0 lands on the prediction
        else:
            h = sigma.log() - sigma_next.log()
            estimate = denoised
            if previous is not None:
                r = (sigmas[step - 1].log() - sigma.log()) / h
                estimate = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * previous
            x = (sigma_next / sigma) * x - torch.expm1(-h) * estimate
        previous = denoised
        if callback is not None:
            callback({"i": step, "x": x, "sigma": sigma, "denoised": denoised})
    return x


sample_dpmpp_2m.calls_per_step = 1

SAMPLERS: dict[str, Callable[..., torch.Tensor]] = {
    "euler": sample_euler,
    "heun": sample_heun,
    "dpmpp_2m": sample_dpmpp_2m,
}
"""Samplers by name (``--sampler``); "euler" is the official sampler and the default."""


def get_sampler(name: str) -> Callable[..., torch.Tensor]:
    """The sampler called ``name`` (one of :data:`SAMPLERS`); a ValueError names the choices otherwise."""
    if name not in SAMPLERS:
        raise ValueError(f"Unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}.")
    return SAMPLERS[name]


def denoiser_calls_before(sampler: Callable[..., torch.Tensor], step: int) -> int:
    """Denoiser calls a sampler makes in its first ``step`` steps (none of which is the last step to sigma 0)."""
    return step * getattr(sampler, "calls_per_step", 1)
