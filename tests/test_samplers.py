"""Samplers on a denoiser whose ODE solution is known exactly, and their wiring (Python API, CLI, page, nodes).

Data x0 ~ N(mu, s^2) per element: the exact denoiser is D(x, sigma) = mu + s^2 / (s^2 + sigma^2) (x - mu), and the
probability-flow ODE carries x(sigma_max) to x(0) = mu + (x(sigma_max) - mu) * s / sqrt(s^2 + sigma_max^2).
"""

from __future__ import annotations

import math

import pytest
import torch

from lvcd.diffusion import SAMPLERS, denoiser_calls_before, edm_sigmas, get_sampler, sample_euler

MU, S = 0.3, 0.5


def gaussian_denoiser(x, sigma):
    sigma = sigma.double()[:, None]
    return MU + S**2 / (S**2 + sigma**2) * (x - MU)


def solve(name: str, steps: int) -> float:
    """Max error at sigma = 0 against the exact solution, for the LVCD schedule (sigma_max 700, rho 7)."""
    sigmas = edm_sigmas(steps).double()
    start = torch.linspace(-3, 3, 64, dtype=torch.float64)[None].expand(2, -1) * sigmas[0]
    exact = MU + (start - MU) * S / math.sqrt(S**2 + float(sigmas[0]) ** 2)
    calls = []

    def counted(x, sigma):
        calls.append(1)
        return gaussian_denoiser(x, sigma)

    result = get_sampler(name)(counted, start.clone(), sigmas)
    expected_calls = steps if name != "heun" else 2 * steps - 1
    assert len(calls) == expected_calls
    return float((result - exact).abs().max())


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_each_sampler_converges_to_the_exact_solution(name):
    """(At 6-10 steps the first step from sigma 700 dominates; second-order methods settle from ~15 steps.)"""
    errors = [solve(name, steps) for steps in (15, 25, 50)]
    assert errors[0] > errors[1] > errors[2], errors
    assert errors[-1] < (0.2 if name == "euler" else 0.03), errors  # |x(0)| is up to 1.8


def test_second_order_samplers_beat_euler_at_the_same_steps_and_converge_faster():
    """Measured (max error at 25 / 50 steps): Euler 0.239 / 0.122, Heun 0.090 / 0.020, DPM++(2M) 0.101 / 0.022."""
    for steps in (25, 50):
        euler = solve("euler", steps)
        assert solve("heun", steps) < euler / 2 and solve("dpmpp_2m", steps) < euler / 2
    # doubling the steps: Euler's error about halves (first order), the others' drops about 4x (second order)
    euler_ratio = solve("euler", 25) / solve("euler", 50)
    assert 1.5 < euler_ratio < 2.8
    for name in ("heun", "dpmpp_2m"):
        assert solve(name, 25) / solve(name, 50) > 3.5


def test_euler_is_the_official_default_and_unknown_names_are_refused():
    assert get_sampler("euler") is sample_euler and next(iter(SAMPLERS)) == "euler"
    with pytest.raises(ValueError, match="heun"):
        get_sampler("ddim")
    assert denoiser_calls_before(SAMPLERS["heun"], 3) == 6 and denoiser_calls_before(sample_euler, 3) == 3


def _shot(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(3, 64, 64, generator=generator), (torch.rand(16, 1, 64, 64, generator=generator) > 0.9).float()


@torch.no_grad()
def test_pipeline_runs_the_chosen_sampler_and_resume_keeps_it_apart(tiny_model, monkeypatch, tmp_path):
    from lvcd import diffusion
    from lvcd.errors import InputError
    from lvcd.pipeline import LVCDPipeline

    used = []
    original = diffusion.SAMPLERS["heun"]

    def recording_heun(denoiser, x, sigmas, callback=None):
        used.append(len(sigmas) - 1)
        return original(denoiser, x, sigmas, callback=callback)

    recording_heun.calls_per_step = 2
    monkeypatch.setitem(diffusion.SAMPLERS, "heun", recording_heun)
    reference, lineart = _shot()
    pipe = LVCDPipeline(tiny_model)
    run = dict(num_steps=2, seed=3, polarity="bright-lines", progress=False)
    heun = pipe(reference, lineart, sampler="heun", work_dir=tmp_path / "heun", **run)
    assert used == [2, 2]  # both windows, 2 steps each
    euler = pipe(reference, lineart, **run)
    assert not torch.equal(heun.latents, euler.latents)
    with pytest.raises(InputError, match="resum|another|match|differ"):
        pipe(reference, lineart, work_dir=tmp_path / "heun", resume=True, **run)  # the Euler job is another job
    with pytest.raises(InputError, match="dpmpp_2m"):
        pipe(reference, lineart, sampler="dpm", **run)


def test_cli_passes_sampler_and_steps_and_refuses_unknown_samplers(tmp_path, monkeypatch, tiny_weights):
    from typer.testing import CliRunner

    from lvcd.cli import app
    from lvcd.pipeline import LVCDPipeline

    seen = {}
    compiled = []

    def fake_call(self, reference, lineart, **kwargs):
        seen.update(kwargs)
        raise SystemExit(0)

    monkeypatch.setattr(LVCDPipeline, "__call__", fake_call)
    monkeypatch.setattr(LVCDPipeline, "compile", lambda self, **options: compiled.append(options) or self)
    reference, lineart = _shot()
    from PIL import Image

    Image.fromarray((reference.permute(1, 2, 0).numpy() * 255).astype("uint8")).save(tmp_path / "ref.png")
    folder = tmp_path / "lineart"
    folder.mkdir()
    for index in range(3):
        Image.fromarray((lineart[index, 0].numpy() * 255).astype("uint8")).save(folder / f"{index:02d}.png")
    base = ["colorize", "-r", str(tmp_path / "ref.png"), "-l", str(folder), "-o", str(tmp_path / "out.mp4")]
    base += ["--svd", str(tiny_weights["svd"]), "--lvcd", str(tiny_weights["lvcd"]), "--config", _tiny_config()]
    result = CliRunner().invoke(app, [*base, "--sampler", "dpmpp_2m", "--steps", "10", "--compile"])
    assert result.exit_code == 0, result.output
    assert seen["sampler"] == "dpmpp_2m" and seen["num_steps"] == 10 and compiled == [{}]


def _tiny_config() -> str:
    from conftest import TINY_CONFIG

    return str(TINY_CONFIG)


def test_page_settings_check_the_sampler():
    from lvcd.errors import InputError
    from lvcd.ui.jobs import JobSettings, check_settings

    assert check_settings(10, sampler="heun") == JobSettings(steps=10, sampler="heun")
    assert check_settings().sampler == "euler"
    with pytest.raises(InputError, match="Sampler"):
        check_settings(sampler="ddim")


def test_samplers_read_no_tensor_value_per_step():
    """A Python test of a tensor's value (``if sigma_next == 0``, ``.item()``) waits for the GPU: none per step."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class ScalarReads(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func in (torch.ops.aten._local_scalar_dense.default, torch.ops.aten.is_nonzero.default):
                ScalarReads.count += 1
            return func(*args, **(kwargs or {}))

    sigmas = edm_sigmas(10, 0.002, 700.0, 7.0)
    for name, sampler in SAMPLERS.items():
        ScalarReads.count = 0
        with ScalarReads():
            sampler(lambda x, sigma: x * 0.5, torch.randn(2, 3) * 700.0, sigmas)
        assert ScalarReads.count <= 1, (name, ScalarReads.count)  # at most once per sampling, not once per step
