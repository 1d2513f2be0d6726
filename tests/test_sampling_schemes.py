"""The paper's sampling ablations as options (issue #13): prev_reference / blending off, the previous sample as
reference, and overlap 0; what each changes and what it must leave alone, resume included."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lvcd.errors import InputError
from lvcd.pipeline import LVCDPipeline
from lvcd.sampling import SamplingSchemes

TINY_CONFIG = "tests/fixtures/tiny/tiny_config.json"
FIRST_WINDOW = 15  # frame 0 and the 14 video frames of window 0 (overlap 4)


@pytest.fixture(scope="module")
def pipe(tiny_model) -> LVCDPipeline:
    return LVCDPipeline(tiny_model)


@pytest.fixture(scope="module")
def shot() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(3)
    # 64x64: the tiny model's smallest processing size (half the cost of 64x128); what is compared is which
    # windows change, not the image size
    lineart = (torch.rand(30, 1, 64, 64, generator=generator) > 0.9).float()
    return torch.rand(3, 64, 64, generator=generator), 1 - lineart


def _latents(pipe, shot, **options) -> torch.Tensor:
    return pipe(shot[0], shot[1], num_steps=2, seed=5, progress=False, decode=False, **options).latents


@pytest.fixture(scope="module")
def sampled(pipe, shot):
    """``_latents`` with the same options computed once per module (a fresh copy each call): several tests compare
    with the same runs (the default schemes, overlap 4, previous-sample), and a run is deterministic for its seed.
    No overlap given is the config's (4): the same job as overlap=4."""
    runs: dict[tuple, torch.Tensor] = {}

    def latents(**options) -> torch.Tensor:
        key = tuple(sorted({"overlap": pipe.config.sampling.overlap, **options}.items()))
        if key not in runs:
            runs[key] = _latents(pipe, shot, **options)
        return runs[key].clone()

    return latents


def test_schemes_change_only_the_windows_they_act_on(sampled):
    full = sampled()
    variants = {
        "no schemes": sampled(prev_reference=False, blending=False),
        "no blending": sampled(blending=False),
        "no prev-reference": sampled(prev_reference=False),
        "previous sample": sampled(reference_mode="previous-sample"),
    }
    for name, latents in variants.items():
        assert latents.shape == full.shape, name
        # the first window has no previous window: every scheme leaves it alone
        assert torch.equal(latents[:FIRST_WINDOW], full[:FIRST_WINDOW]), name
        assert not torch.equal(latents[FIRST_WINDOW:], full[FIRST_WINDOW:]), name
    assert not torch.equal(variants["no blending"], variants["no prev-reference"])


def test_overlap_zero_shares_no_frame_between_windows(sampled):
    latents = sampled(overlap=0)
    assert latents.shape[0] == 30
    # window 0 of overlap 0 is 15 frames (reference + 14): its latents differ from overlap 4's 19-frame window
    assert not torch.equal(latents[:FIRST_WINDOW], sampled()[:FIRST_WINDOW])


@pytest.mark.parametrize("overlap", [8, 13])
def test_overlaps_beyond_half_a_window_produce_every_frame(sampled, overlap):
    """The paper's Table 3 goes up to overlap 8 (6 new frames per window); 13 leaves one. Frames shared by three
    windows are generated once, by the first window that has them as new frames."""
    latents = sampled(overlap=overlap)
    assert latents.shape[0] == 30 and torch.isfinite(latents).all()
    assert not torch.equal(latents, sampled(overlap=4))


def test_previous_sample_mode_resumes_bit_identically(pipe, shot, sampled, tmp_path):
    full = sampled(reference_mode="previous-sample")

    class Stop(Exception):
        pass

    def stop_in_third_window(progress) -> None:
        if progress.window == 2:
            raise Stop

    work = tmp_path / "work"
    with pytest.raises(Stop):
        pipe(shot[0], shot[1], num_steps=2, seed=5, work_dir=work, progress=False, reference_mode="previous-sample",
             callback=stop_in_third_window)  # fmt: skip
    resumed = pipe(shot[0], shot[1], num_steps=2, seed=5, work_dir=work, resume=True, progress=False,
                   reference_mode="previous-sample").latents  # fmt: skip
    assert torch.equal(resumed, full)
    # another scheme is another job: its work directory is not reused
    with pytest.raises(InputError):
        pipe(shot[0], shot[1], num_steps=2, seed=5, work_dir=work, resume=True, progress=False, blending=False)


def test_bad_scheme_settings_are_user_errors(pipe, shot):
    with pytest.raises(InputError, match="reference_mode"):
        _latents(pipe, shot, reference_mode="last")
    with pytest.raises(InputError, match="keyframes"):
        _latents(pipe, shot, reference_mode="previous-sample", keyframes={10: np.zeros((64, 64, 3), np.uint8)})
    with pytest.raises(ValueError, match="reference_mode"):
        SamplingSchemes(reference_mode="x")


def test_cli_options_reach_the_pipeline(tiny_weights, shot, tmp_path):
    from PIL import Image

    from lvcd.cli import app

    folder = tmp_path / "lineart"
    folder.mkdir()
    for index, frame in enumerate(shot[1][:20]):
        Image.fromarray((frame[0].numpy() * 255).astype(np.uint8)).save(folder / f"{index:03d}.png")
    reference = tmp_path / "ref.png"
    Image.fromarray((shot[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)).save(reference)
    outputs = {}
    for name, flags in {"full": [], "ablated": ["--no-prev-reference", "--no-blending", "--overlap", "2"]}.items():
        result = CliRunner().invoke(
            app,
            ["colorize", "--svd", str(tiny_weights["svd"]), "--lvcd", str(tiny_weights["lvcd"]), "--config",
             TINY_CONFIG, "-r", str(reference), "-l", str(folder), "-o", str(tmp_path / name), "--steps", "1",
             "--seed", "0", "--quiet", *flags],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        outputs[name] = sorted((tmp_path / name).iterdir())
    assert len(outputs["full"]) == len(outputs["ablated"]) == 20
    assert any(a.read_bytes() != b.read_bytes() for a, b in zip(outputs["full"], outputs["ablated"], strict=True))
