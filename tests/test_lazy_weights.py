"""A pipeline whose weights are read when its first shot needs them (``from_single_file(lazy=True)``, what
``lvcd colorize`` uses): the shot's inputs are read and checked and a ``--resume`` is matched to its work directory
before gigabytes of weights load, and the shot is the one an eagerly loaded pipeline makes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import lvcd.pipeline
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


def test_a_load_stopped_midway_is_finished_by_the_next_shot(tiny_weights, tmp_path, monkeypatch):
    frames, reference = _shot(tmp_path / "lineart")
    lazy = _pipe(tiny_weights, lazy=True)
    real = lvcd.pipeline.Placement

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(lvcd.pipeline, "Placement", stopped)
    with pytest.raises(KeyboardInterrupt):
        lazy(reference, frames, num_steps=1, seed=3, decode=False, progress=False)
    assert not lazy.weights_loaded  # the tensors are read, the placement is not made
    monkeypatch.setattr(lvcd.pipeline, "Placement", real)
    ours = lazy(reference, frames, num_steps=1, seed=3, decode=False, progress=False)
    theirs = _pipe(tiny_weights)(reference, frames, num_steps=1, seed=3, decode=False, progress=False)
    assert lazy.weights_loaded and torch.equal(ours.latents, theirs.latents)


def test_frames_returned_as_a_tensor_must_fit_beside_the_weights_still_to_load(tiny_weights, tmp_path, monkeypatch):
    frames, reference = _shot(tmp_path / "lineart")
    lazy, eager = _pipe(tiny_weights, lazy=True), _pipe(tiny_weights)
    weights = sum(t.numel() * t.element_size() for t in lazy.model.state_dict().values())
    assert lazy._weights_to_load() == weights and eager._weights_to_load() == 0  # all of it in host memory on a CPU
    frame_bytes = 6 * 3 * 64 * 64 * 4
    assert weights > 2 * frame_bytes
    room = 2 * frame_bytes + weights // 2  # the frames fit beside the job, not beside the weights too
    monkeypatch.setattr("lvcd.host.available_ram", lambda: room)
    with pytest.raises(InputError, match=r"GB available beside the model's weights; give output="):
        lazy(reference, frames, num_steps=1, seed=3, progress=False)
    assert not lazy.weights_loaded
    assert eager(reference, frames, num_steps=1, seed=3, progress=False).frames.shape[0] == 6  # its weights are in


def test_the_vae_dtype_is_part_of_a_previous_sample_job_only(tiny_weights, tmp_path):
    """Chained references are decoded and encoded again by the VAE each window: its dtype shapes the result. With the
    first frame as reference the VAE only encodes the start state, which the work directory keeps (no change there,
    so work directories of earlier versions stay resumable)."""
    frames, reference = _shot(tmp_path / "lineart")
    arguments = {"num_steps": 1, "seed": 3, "decode": False, "progress": False}
    for mode, work in (("first", tmp_path / "first"), ("previous-sample", tmp_path / "chained")):
        _pipe(tiny_weights, vae_dtype=torch.bfloat16, lazy=True)(
            reference, frames, reference_mode=mode, work_dir=work, **arguments
        )
        settings = json.loads((work / "settings.json").read_text())
        assert ("vae dtype" in settings["parts"]) == (mode == "previous-sample"), settings["parts"]
    fp32 = _pipe(tiny_weights, lazy=True)
    fp32(reference, frames, reference_mode="first", work_dir=tmp_path / "first", resume=True, **arguments)
    with pytest.raises(WorkDirMismatch, match=r"\(vae dtype torch.bfloat16 then, torch.float32 now\)"):
        fp32(
            reference, frames, reference_mode="previous-sample", work_dir=tmp_path / "chained", resume=True, **arguments
        )


def test_cli_a_refused_resume_keeps_a_job_stopped_while_its_weights_loaded(tiny_weights, tmp_path, monkeypatch):
    """Stopped while the weights load (after the job is recorded), resumed with a mistyped option: refused, and the
    job, its drawn seed included, is still there for the right command."""
    frames, reference = _shot(tmp_path / "lineart")
    output, work = tmp_path / "shot.mp4", tmp_path / ".shot.mp4.lvcd-work"

    def colorize(*args: str):
        base = ["colorize", "--svd", str(tiny_weights["svd"]), "--lvcd", str(tiny_weights["lvcd"])]
        base += ["--config", str(TINY_CONFIG), "--reference", str(reference), "--lineart", str(frames), "--quiet"]
        return CliRunner().invoke(app, [*base, "--steps", "1", *args])

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(lvcd.weights.PendingModel, "load", stopped)
        first = colorize("-o", str(output))
    assert first.exit_code == 130 and "--resume" in first.output, first.output
    seed = re.search(r"seed (\d+) \(drawn at random", first.output).group(1)
    refused = colorize("-o", str(output), "--resume", "--overlap", "2")
    assert refused.exit_code == 2 and "overlap 4 then, 2 now" in refused.output, refused.output
    assert json.loads((work / "settings.json").read_text())["seed"] == int(seed)
    resumed = colorize("-o", str(output), "--resume")
    assert resumed.exit_code == 0 and f"seed {seed} (recorded by the interrupted run" in resumed.output, resumed.output
    again = colorize("-o", str(tmp_path / "again.mp4"), "--seed", seed)
    assert again.exit_code == 0 and output.read_bytes() == (tmp_path / "again.mp4").read_bytes()


def test_a_resume_of_other_settings_is_refused_before_the_line_art_is_read(tiny_weights, tmp_path, monkeypatch):
    """Settings, reference, keyframes and noise are matched before the hints are built (every line-art frame read:
    minutes for a long shot); the line art itself after, as before."""
    from lvcd.hints import HintStore

    frames, reference = _shot(tmp_path / "lineart")
    work = tmp_path / "w"
    arguments = {"seed": 1, "decode": False, "progress": False, "work_dir": work}
    pipe = _pipe(tiny_weights, lazy=True)
    pipe(reference, frames, num_steps=1, **arguments)
    other = tmp_path / "other.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(other)

    def no_hints(*args, **kwargs):
        raise AssertionError("every line-art frame was read before the work directory was matched")

    with monkeypatch.context() as patch:
        patch.setattr(HintStore, "build", no_hints)
        with pytest.raises(WorkDirMismatch, match=r"\(steps 1 then, 2 now\)"):
            pipe(reference, frames, num_steps=2, resume=True, **arguments)
        with pytest.raises(WorkDirMismatch, match=r"\(the reference differs\)"):
            pipe(other, frames, num_steps=1, resume=True, **arguments)
        with pytest.raises(
            WorkDirMismatch, match=r"\(pass none then, toward the end now; reference frame none then, 2 now\)"
        ):
            pipe(reference, frames, num_steps=1, reference_frame=2, resume=True, **arguments)
    Image.fromarray(np.full((64, 64), 255, np.uint8)).save(frames / "f3.png")  # a drawing redone
    with pytest.raises(WorkDirMismatch, match=r"\(the line art differs\)"):
        pipe(reference, frames, num_steps=1, resume=True, **arguments)
    assert (work / "settings.json").exists()
