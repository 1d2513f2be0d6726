"""PSNR and SSIM against scikit-image on random data."""

from __future__ import annotations

import numpy as np
import pytest
import skimage.metrics as skimage_metrics  # noqa: E402 - scikit-image is a declared test dependency
import torch

from lvcd.errors import InputError
from lvcd.metrics.psnr_ssim import psnr, ssim


def _pairs(seed: int, shape=(3, 3, 40, 52), noise: float = 0.1):
    generator = torch.Generator().manual_seed(seed)
    clean = torch.rand(shape, generator=generator, dtype=torch.float64)
    noisy = (clean + noise * torch.randn(shape, generator=generator, dtype=torch.float64)).clamp(0, 1)
    return noisy, clean


def _hwc(batch: torch.Tensor, index: int) -> np.ndarray:
    return batch[index].permute(1, 2, 0).numpy()


@pytest.mark.parametrize("seed,noise", [(0, 0.02), (1, 0.1), (2, 0.5)])
def test_psnr_matches_scikit_image(seed, noise):
    pred, gt = _pairs(seed, noise=noise)
    ours = psnr(pred, gt)
    for i in range(pred.shape[0]):
        reference = skimage_metrics.peak_signal_noise_ratio(_hwc(gt, i), _hwc(pred, i), data_range=1.0)
        assert ours[i].item() == pytest.approx(reference, abs=1e-9)


@pytest.mark.parametrize(
    "seed,noise,shape", [(0, 0.02, (2, 3, 40, 52)), (1, 0.1, (2, 3, 33, 21)), (2, 0.5, (1, 3, 64, 64))]
)
def test_ssim_matches_scikit_image_gaussian(seed, noise, shape):
    pred, gt = _pairs(seed, shape=shape, noise=noise)
    ours = ssim(pred, gt)
    for i in range(pred.shape[0]):
        reference = skimage_metrics.structural_similarity(
            _hwc(pred, i),
            _hwc(gt, i),
            channel_axis=-1,
            data_range=1.0,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
        )
        assert ours[i].item() == pytest.approx(reference, abs=1e-10)


def test_uint8_range_frames_match_scikit_image():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (1, 3, 32, 32)).astype(np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-20, 20, a.shape), 0, 255).astype(np.uint8)
    ta, tb = torch.from_numpy(a).double() / 255, torch.from_numpy(b).double() / 255
    ref_psnr = skimage_metrics.peak_signal_noise_ratio(a[0].transpose(1, 2, 0), b[0].transpose(1, 2, 0), data_range=255)
    assert psnr(ta, tb)[0].item() == pytest.approx(ref_psnr, abs=1e-9)
    ref_ssim = skimage_metrics.structural_similarity(
        a[0].transpose(1, 2, 0),
        b[0].transpose(1, 2, 0),
        channel_axis=-1,
        data_range=255,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert ssim(ta, tb)[0].item() == pytest.approx(ref_ssim, abs=1e-9)


def test_identical_frames():
    frames = torch.rand(2, 3, 16, 16)
    assert ssim(frames, frames).tolist() == pytest.approx([1.0, 1.0])
    assert psnr(frames, frames).tolist() == [100.0, 100.0]  # capped, finite


def test_ssim_scipy_free_path_agrees(monkeypatch):
    import builtins

    pred, gt = _pairs(4, shape=(1, 3, 24, 30))
    with_scipy = ssim(pred, gt)
    real_import = builtins.__import__

    def no_scipy(name, *args, **kwargs):
        if name.startswith("scipy"):
            raise ImportError("no scipy")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_scipy)
    assert ssim(pred, gt).item() == pytest.approx(with_scipy.item(), abs=1e-12)


def test_shape_errors():
    with pytest.raises(InputError):
        psnr(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
    with pytest.raises(InputError):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))  # smaller than the 11-tap window
