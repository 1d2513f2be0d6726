"""Fréchet distance between Gaussians fitted to feature sets (FID, FVD).

``d^2 = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2))``. The trace of the matrix square root is
computed as ``tr((S_a^(1/2) S_b S_a^(1/2))^(1/2))``, which equals it for positive semi-definite covariances and
only needs symmetric eigendecompositions (float64, no scipy), so it stays real and stable even when the
covariances are singular (fewer samples than feature dimensions).

    >>> frechet_distance(feature_statistics(fake), feature_statistics(real))   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lvcd.errors import InputError


@dataclass(frozen=True)
class FeatureStatistics:
    """Mean (D,), covariance (D, D) and sample count of a feature set."""

    mean: np.ndarray
    cov: np.ndarray
    count: int


def feature_statistics(features: np.ndarray) -> FeatureStatistics:
    """Mean and unbiased covariance of (N, D) features; one sample gives a zero covariance."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] == 0:
        raise InputError(f"feature statistics need (N, D) features with N >= 1, got shape {features.shape}")
    mean = features.mean(axis=0)
    if features.shape[0] == 1:
        cov = np.zeros((features.shape[1], features.shape[1]))
    else:
        cov = np.cov(features, rowvar=False)
    return FeatureStatistics(mean=mean, cov=np.atleast_2d(cov), count=features.shape[0])


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    eigenvalues, eigenvectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))) @ eigenvectors.T


def trace_sqrt_product(cov_a: np.ndarray, cov_b: np.ndarray) -> float:
    """``tr((cov_a cov_b)^(1/2))`` for positive semi-definite covariances."""
    root_a = _psd_sqrt(cov_a)
    inner = root_a @ cov_b @ root_a
    eigenvalues = np.linalg.eigvalsh((inner + inner.T) / 2)
    return float(np.sqrt(np.clip(eigenvalues, 0.0, None)).sum())


def frechet_distance(a: FeatureStatistics, b: FeatureStatistics) -> float:
    """Squared Fréchet distance of two Gaussians (the number reported as FID / FVD); never negative."""
    if a.mean.shape != b.mean.shape:
        raise InputError(f"feature dimensions differ: {a.mean.shape} vs {b.mean.shape}")
    mean_term = float(np.sum((a.mean - b.mean) ** 2))
    trace_term = float(np.trace(a.cov) + np.trace(b.cov)) - 2.0 * trace_sqrt_product(a.cov, b.cov)
    return max(mean_term + trace_term, 0.0)
