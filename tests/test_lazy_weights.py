"""A pipeline whose weights are read when its first shot needs them (``from_single_file(lazy=True)``, what
``lvcd colorize`` uses): the shot's inputs are read and checked and a ``--resume`` is matched to its work directory
before gigabytes of weights load, and the shot is the one an eagerly loaded pipeline makes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import lvcd.weights
from conftest import TINY_CONFIG
from lvcd.cli import app
from lvcd.errors import InputError
from lvcd.pipeline import LVCDPipeline
from lvcd.workdir import WorkDirMismatch


def _shot(folder: Path, count: int = 6) -> tuple[Path, Path]:
    """Dark-lines drawings of a moving ring at 64x64 (the smallest size) and a coloured frame 0."""
    folder.mkdir(parents=True)
    yy, xx = np.mgrid[:64, :64]
    for index in range(count):
        ring = np.abs(np.hypot(xx - 20 - 3 * index, yy - 32) - 16) < 1.5
        Image.fromarray(np.where(ring, 0, 255).astype(np.uint8)).save(folder / f"f{index}.png")
    reference = folder.parent / "ref.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(reference)
    return folder, reference


def _pipe(tiny_weights, **kwargs) -> LVCDPipeline:
    return LVCDPipeline.from_single_file(tiny_weights["svd"], tiny_weights["lvcd"], config=TINY_CONFIG, **kwargs)


@pytest.fixture
def reads(monkeypatch) -> list[int]:
    """How many times a pipeline's tensors were read from the files."""
    calls, load = [], lvcd.weights.PendingModel.load

    def counted(self, device="cpu"):
        calls.append(1)
        return load(self, device)

    monkeypatch.setattr(lvcd.weights.PendingModel, "load", counted)
    return calls


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_before_its_first_shot_a_lazy_pipeline_has_the_eager_ones_dtypes_and_memory(tiny_weights, reads, dtype):
    lazy = _pipe(tiny_weights, dtype=dtype, lazy=True)
    assert reads == [] and not lazy.weights_loaded and lazy.placement is None
    eager = _pipe(tiny_weights, dtype=dtype)
    assert reads == [1] and eager.weights_loaded
    on_meta = {t.device.type for t in lazy.model.parameters()}
    assert on_meta == {"meta"}
    assert {k: (v.dtype, v.shape) for k, v in lazy.model.state_dict().items()} == {
        k: (v.dtype, v.shape) for k, v in eager.model.state_dict().items()
    }
    assert lazy.memory_needed((64, 64)) == eager.memory_needed((64, 64))
    assert lazy.config == eager.config and lazy.offload == eager.offload is False
    assert _pipe(tiny_weights, device="cpu", offload=True, lazy=True).offload is False  # nothing moves on the host
    lazy.load_weights()
    assert reads == [1, 1] and lazy.weights_loaded and lazy.placement is not None
    lazy.load_weights()  # once only
    assert reads == [1, 1]
    for (key, ours), theirs in zip(lazy.model.state_dict().items(), eager.model.state_dict().values(), strict=True):
        assert torch.equal(ours, theirs), key


def test_a_lazy_pipeline_refuses_a_bad_shot_or_another_jobs_work_dir_before_reading_weights(
    tiny_weights, tmp_path, reads
):
    frames, reference = _shot(tmp_path / "lineart")
    lazy = _pipe(tiny_weights, lazy=True)
    with pytest.raises(InputError, match="Keyframe index 9 is outside the shot"):
        lazy(reference, frames, keyframes={9: reference}, num_steps=1, seed=1, progress=False)
    _pipe(tiny_weights)(reference, frames, num_steps=1, seed=1, work_dir=tmp_path / "w", progress=False)
    assert reads == [1]  # the eager pipeline's
    with pytest.raises(WorkDirMismatch, match=r"steps 1 then, 2 now"):
        lazy(reference, frames, num_steps=2, seed=1, work_dir=tmp_path / "w", resume=True, progress=False)
    assert reads == [1] and not lazy.weights_loaded


def test_a_lazy_pipeline_colours_the_shot_an_eager_one_does(tiny_weights, tmp_path):
    frames, reference = _shot(tmp_path / "lineart")
    lazy = _pipe(tiny_weights, lazy=True)
    ours = lazy(reference, frames, num_steps=2, seed=3, progress=False)
    theirs = _pipe(tiny_weights)(reference, frames, num_steps=2, seed=3, progress=False)
    assert lazy.weights_loaded
    assert torch.equal(ours.latents, theirs.latents) and torch.equal(ours.frames, theirs.frames)


def test_cli_resume_of_another_job_is_refused_before_the_weights_load(tiny_weights, tmp_path, monkeypatch):
    frames, reference = _shot(tmp_path / "lineart")
    work, first, again = tmp_path / "work", tmp_path / "first.mp4", tmp_path / "again.mp4"

    def colorize(*args: str):
        base = ["colorize", "--svd", str(tiny_weights["svd"]), "--lvcd", str(tiny_weights["lvcd"])]
        base += ["--config", str(TINY_CONFIG), "--reference", str(reference), "--lineart", str(frames)]
        return CliRunner().invoke(app, [*base, "--seed", "1", "--work-dir", str(work), "--quiet", *args])

    done = colorize("-o", str(first), "--steps", "1", "--keep-work")
    assert done.exit_code == 0, done.output
    assert (work / "settings.json").exists()

    def no_weights(*args, **kwargs):
        raise AssertionError("the weights were read before the work directory was matched")

    with monkeypatch.context() as patch:
        patch.setattr(lvcd.weights.PendingModel, "load", no_weights)
        refused = colorize("-o", str(again), "--steps", "2", "--resume")
    assert refused.exit_code == 2 and not isinstance(refused.exception, AssertionError), refused.output
    (line,) = [line for line in refused.output.splitlines() if line.startswith("error:")]
    assert "belongs to a job with other inputs or settings (steps 1 then, 2 now)" in line, line
    assert not again.exists()
    resumed = colorize("-o", str(again), "--steps", "1", "--resume")  # the same job: its windows are reused
    assert resumed.exit_code == 0, resumed.output
    assert again.read_bytes() == first.read_bytes() and not work.exists()
