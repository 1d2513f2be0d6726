"""Shared test fixtures: paths of the copied golden files and the tiny official-format weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures"
TINY = FIXTURES / "tiny"
TINY_CONFIG = TINY / "tiny_config.json"
FULL_MANIFEST = FIXTURES / "reference" / "lvcd_state_dict_manifest.json"

# One thread: the tiny test model is too small to gain from more, and the test files run in parallel processes
# (pytest-xdist, pyproject's addopts), one per core.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> dict[str, Path]:
    """The tiny model as the official files: {'svd': tiny_svd.safetensors, 'lvcd': tiny_lvcd.ckpt}."""
    from lvcd.testing.tiny_weights import materialize

    return materialize(TINY / "weights_manifest.json", tmp_path_factory.mktemp("tiny_weights"))


@pytest.fixture(scope="session")
def components() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(TINY / "components.safetensors"))


@pytest.fixture(scope="session")
def sample_n35() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(TINY / "sample_N35.safetensors"))


def cache_official_files(cache: Path, weights: dict[str, Path]) -> None:
    """Put the tiny model's files in a Hugging Face cache at ``cache`` as the official ones, as `hf download` leaves
    them (a snapshot per repository, its commit named by refs/main)."""
    from lvcd.hub import LVCD_REPO, SVD_REPO

    commit = "0" * 40
    for (repo_id, filename), role in ((SVD_REPO, "svd"), (LVCD_REPO, "lvcd")):
        repo = cache / f"models--{repo_id.replace('/', '--')}"
        (repo / "snapshots" / commit).mkdir(parents=True)
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(commit)
        (repo / "snapshots" / commit / filename).symlink_to(weights[role])


def assert_close_rel(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-4, name: str = "") -> float:
    """max|actual - expected| <= rel * max|expected| (the fixtures' tolerance rule); returns the ratio."""
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    scale = expected.abs().max().item()
    err = (actual.double() - expected.double()).abs().max().item()
    ratio = err / scale if scale > 0 else err
    assert ratio <= rel, f"{name}: max abs err {err:.3g} = {ratio:.3g} x max|ref| {scale:.3g} > {rel}"
    return ratio


@pytest.fixture(scope="session")
def tiny_model(tiny_weights):
    """The tiny LVCD model loaded from the official-format files (fp32, CPU, eval)."""
    from lvcd.weights import load_model

    model, report = load_model(tiny_weights["svd"], tiny_weights["lvcd"], config=TINY_CONFIG)
    assert report.ok
    return model
