"""Weight-free line extraction: the extended difference of Gaussians (XDoG, Winnemoeller et al. 2012).

This is a fallback for users without ``sk_model.pth``. Its lines differ in width, continuity and texture
from the informative-drawings lines that LVCD was trained on, so colorization quality is lower: it is
**outside the training distribution**.

We use the edge form of XDoG, ``D = G_sigma(L) - tau * G_{k sigma}(L)`` on luminance ``L`` in [0, 1], with a soft
threshold ``T = 1 if D >= epsilon else 1 + tanh(phi * (D - epsilon))``. With ``tau <= 1`` and ``epsilon <= 0`` a
flat region of any brightness gives ``D = (1 - tau) L >= epsilon``, so it stays white; only the dark side of an
edge (and the centre of a thin dark line) goes negative and becomes a dark line. The defaults (tuned on flat-colour
drawings with mild compression noise) mark edges of luma contrast above ~0.04 and keep noise of ~3/255 out.

    >>> lines = xdog(rgb)  # HxWx3 uint8 -> HxW uint8, dark lines (~0) on white (~255)   # doctest: +SKIP
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from lvcd.errors import InputError

# ITU-R BT.601 luma weights, as PIL's convert("L").
_LUMA = (0.299, 0.587, 0.114)


def _gaussian_kernel(sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    radius = max(1, math.ceil(3.0 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return (kernel / kernel.sum()).to(dtype=dtype, device=device)


def _gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, 1, H, W) with mirrored borders (no dark halo at the frame edge)."""
    kernel = _gaussian_kernel(sigma, image.dtype, image.device)
    radius = kernel.numel() // 2
    height, width = image.shape[-2:]
    # Reflect needs the pad to be smaller than the side; tiny images fall back to edge replication.
    mode = "reflect" if radius < min(height, width) else "replicate"
    padded = F.pad(image, (radius, radius, radius, radius), mode=mode)
    blurred = F.conv2d(padded, kernel.view(1, 1, 1, -1))
    return F.conv2d(blurred, kernel.view(1, 1, -1, 1))


def xdog_tensor(
    rgb: torch.Tensor,
    sigma: float = 0.8,
    k: float = 1.6,
    tau: float = 1.0,
    epsilon: float = -0.003,
    phi: float = 400.0,
) -> torch.Tensor:
    """XDoG on a batch: (N, 3, H, W) float RGB in [0, 1] -> (N, 1, H, W) in [0, 1], dark lines on white.

    sigma: scale of the inner Gaussian in pixels (larger = thicker, fewer lines).
    k: ratio of the outer to the inner Gaussian (1.6 approximates a Laplacian of Gaussian).
    tau: weight of the outer Gaussian; < 1 needs stronger edges in bright regions than in dark ones.
    epsilon: threshold on the DoG response (a unit step gives about -0.09); more negative = only stronger edges.
    phi: steepness of the soft threshold; larger = crisper, closer to binary.
    """
    if rgb.ndim != 4 or rgb.shape[1] != 3:
        raise InputError(f"xdog_tensor expects (N, 3, H, W) RGB, got shape {tuple(rgb.shape)}")
    if sigma <= 0 or k <= 0:
        raise InputError(f"xdog needs sigma > 0 and k > 0, got sigma={sigma}, k={k}")
    weights = torch.tensor(_LUMA, dtype=rgb.dtype, device=rgb.device).view(1, 3, 1, 1)
    # float64: the threshold (epsilon -0.003, phi 400) turns errors of 1e-3 in the blur difference into visible grey,
    # and on a GPU float32 convolutions may run in TF32 (10-bit mantissa); the blurs are cheap at any precision
    luma = (rgb.double() * weights.double()).sum(dim=1, keepdim=True)  # (N, 1, H, W)
    response = _gaussian_blur(luma, sigma) - tau * _gaussian_blur(luma, sigma * k)
    soft = 1.0 + torch.tanh(phi * (response - epsilon))
    return torch.where(response >= epsilon, torch.ones_like(soft), soft).clamp(0.0, 1.0).to(rgb.dtype)


def xdog(
    rgb: np.ndarray,
    sigma: float = 0.8,
    k: float = 1.6,
    tau: float = 1.0,
    epsilon: float = -0.003,
    phi: float = 400.0,
) -> np.ndarray:
    """Weight-free XDoG line art: HxWx3 uint8 RGB -> HxW uint8, dark lines (~0) on white (~255).

    Same polarity and dtype as the informative-drawings detector; see :func:`xdog_tensor` for the parameters.
    """
    if not isinstance(rgb, np.ndarray) or rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        shape = getattr(rgb, "shape", None)
        dtype = getattr(rgb, "dtype", type(rgb).__name__)
        raise InputError(f"xdog expects an HxWx3 uint8 RGB array, got shape {shape} dtype {dtype}")
    batch = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255.0
    with torch.no_grad():
        lines = xdog_tensor(batch, sigma=sigma, k=k, tau=tau, epsilon=epsilon, phi=phi)[0, 0]
    # x255, clip, truncate: the same conversion as the informative-drawings detector.
    return (lines.numpy() * 255.0).clip(0, 255).astype(np.uint8)
