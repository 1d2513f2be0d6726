"""PSNR and SSIM per frame, on RGB in [0, 1].

SSIM is Wang et al. (2004) as scikit-image computes it with ``gaussian_weights=True, sigma=1.5,
use_sample_covariance=False``: an 11-tap Gaussian window (sigma 1.5, truncated at 3.5 sigma), K1 = 0.01,
K2 = 0.03, computed per RGB channel and averaged, over the region where the window fits inside the image.

    >>> psnr(pred, gt)   # (N, 3, H, W) in [0, 1] -> (N,) dB          # doctest: +SKIP
    >>> ssim(pred, gt)   # -> (N,)                                     # doctest: +SKIP
"""

from __future__ import annotations

import numpy as np
import torch

from lvcd.errors import InputError

# PSNR of identical frames is infinite; capping the MSE keeps means and JSON finite (100 dB at range 1).
MIN_MSE = 1e-10

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _check_pair(pred: torch.Tensor, gt: torch.Tensor) -> None:
    if pred.shape != gt.shape or pred.ndim != 4:
        raise InputError(
            f"expected two (N, C, H, W) batches of one shape, got {tuple(pred.shape)} and {tuple(gt.shape)}"
        )


def psnr(pred: torch.Tensor, gt: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio of each frame in dB: ``10 log10(range^2 / MSE)`` over all pixels and channels."""
    _check_pair(pred, gt)
    mse = (pred.double() - gt.double()).pow(2).flatten(1).mean(dim=1).clamp_min(MIN_MSE * data_range**2)
    return 10.0 * torch.log10(data_range**2 / mse)


def _gaussian_window() -> np.ndarray:
    radius = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)  # 5 -> an 11-tap window, as scipy.ndimage.gaussian_filter
    window = np.exp(-0.5 * (np.arange(-radius, radius + 1, dtype=np.float64) / SSIM_SIGMA) ** 2)
    return window / window.sum()


def _correlate_valid(images: np.ndarray, window: np.ndarray, axis: int) -> np.ndarray:
    """1-D correlation along ``axis`` (-1 or -2) keeping only positions where the whole window fits."""
    radius = window.size // 2
    count = images.shape[axis] - 2 * radius

    def part(start: int, length: int) -> np.ndarray:
        return images[..., start : start + length] if axis == -1 else images[..., start : start + length, :]

    try:
        from scipy.ndimage import correlate1d  # the fast path (the eval extra)
    except ImportError:
        return sum(part(k, count) * weight for k, weight in enumerate(window))
    full = correlate1d(images, window, axis=axis, mode="constant")
    return full[..., radius : radius + count] if axis == -1 else full[..., radius : radius + count, :]


def _filter_valid(images: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable filter over the last two axes, only where the window fits (no padding, so no border rule)."""
    return _correlate_valid(_correlate_valid(images, window, axis=-1), window, axis=-2)


def ssim(pred: torch.Tensor, gt: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Structural similarity of each frame (mean over channels and valid positions), in float64."""
    _check_pair(pred, gt)
    window = _gaussian_window()
    if min(pred.shape[-2:]) < window.size:
        raise InputError(f"SSIM needs frames of at least {window.size} pixels a side, got {tuple(pred.shape[-2:])}")
    x = pred.detach().cpu().double().numpy()
    y = gt.detach().cpu().double().numpy()
    # One pass over the five local moments: (5, N, C, H-10, W-10).
    mu_x, mu_y, xx, yy, xy = _filter_valid(np.stack([x, y, x * x, y * y, x * y]), window)
    var_x, var_y, cov_xy = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    numerator = (2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)
    denominator = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return torch.from_numpy((numerator / denominator).mean(axis=(1, 2, 3)))
