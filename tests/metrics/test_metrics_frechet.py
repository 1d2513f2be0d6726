"""Fréchet distance (FID/FVD core) and FID with a tiny random feature network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lvcd.metrics.frechet import feature_statistics, frechet_distance, trace_sqrt_product
from lvcd.metrics.inception import InceptionFeatures

from .synthetic import TinyImageFeatures


def _random_cov(rng, dim):
    a = rng.standard_normal((dim, dim))
    return a @ a.T / dim


def test_trace_sqrt_matches_scipy_sqrtm():
    import scipy.linalg as linalg

    rng = np.random.default_rng(0)
    a, b = _random_cov(rng, 12), _random_cov(rng, 12)
    reference = np.trace(linalg.sqrtm(a @ b)).real
    assert trace_sqrt_product(a, b) == pytest.approx(reference, rel=1e-9)


def test_distance_of_set_to_itself_is_zero_even_when_singular():
    rng = np.random.default_rng(1)
    features = rng.standard_normal((20, 64))  # fewer samples than dimensions: singular covariance
    stats = feature_statistics(features)
    assert frechet_distance(stats, stats) == pytest.approx(0.0, abs=1e-8)


def test_mean_shift_adds_its_squared_norm():
    rng = np.random.default_rng(2)
    features = rng.standard_normal((200, 8))
    shift = np.arange(8) * 0.1
    distance = frechet_distance(feature_statistics(features + shift), feature_statistics(features))
    assert distance == pytest.approx(float(np.sum(shift**2)), rel=1e-9)


def test_single_sample_has_zero_covariance():
    stats = feature_statistics(np.ones((1, 5)))
    assert stats.count == 1 and not stats.cov.any()


def test_fid_with_tiny_random_feature_network():
    extractor = InceptionFeatures(TinyImageFeatures().eval(), torchscript=True)  # TorchScript calling convention
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(24, 3, 32, 32, generator=generator)
    real = feature_statistics(extractor(images))
    assert frechet_distance(feature_statistics(extractor(images)), real) == pytest.approx(0.0, abs=1e-9)
    darker = feature_statistics(extractor(images * 0.5))
    noisy = feature_statistics(extractor((images + 0.3 * torch.randn(images.shape, generator=generator)).clamp(0, 1)))
    assert frechet_distance(darker, real) > 1e-4
    assert frechet_distance(noisy, real) > 1e-4
