"""A resumed job reuses its work directory's hints when its line-art files and settings are the ones they were made
from (lvcd.hint_source); it read and converted every frame again before (a decode pass of minutes for a long 1080p
shot)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import lvcd.hints
from conftest import TINY_CONFIG
from lvcd.hint_source import HINTS_FORMAT, record_path
from lvcd.hints import HintStore, LineartFrames
from lvcd.io import plan_size
from lvcd.pipeline import LVCDPipeline
from lvcd.workdir import WorkDir


def _drawings(folder: Path, count: int = 6, size_hw=(24, 40)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[: size_hw[0], : size_hw[1]]
    for index in range(count):
        ring = np.abs(np.hypot(xx - 8 - 3 * index, yy - 12) - 6) < 1.2
        Image.fromarray(np.where(ring, 0, 255).astype(np.uint8)).save(folder / f"f{index:02d}.png")
    return folder


@pytest.fixture
def converted(monkeypatch):
    """How many frames were converted to hints (each read frame is)."""
    calls = []
    original = lvcd.hints.frame_to_hint
    monkeypatch.setattr(lvcd.hints, "frame_to_hint", lambda *a, **k: calls.append(1) or original(*a, **k))
    return calls


def _build(lineart, path: Path, polarity: str = "dark-lines", plan=None) -> HintStore:
    frames = LineartFrames(lineart)
    plan = plan or plan_size(frames.size_hw, multiple=8, forced_hw=(24, 40))
    return HintStore.build(frames, plan, polarity, path, progress=False)


def test_the_same_files_and_settings_reuse_the_store_without_reading_a_frame(tmp_path, converted):
    folder = _drawings(tmp_path / "art")
    first = _build(folder, tmp_path / "hints.npy")
    built = first.get(range(6)).clone()
    assert len(converted) == 6
    record = json.loads(record_path(tmp_path / "hints.npy").read_text())
    assert record["format"] == HINTS_FORMAT and record["count"] == 6 and len(record["files_sha256"]) == 64

    again = _build(folder, tmp_path / "hints.npy")
    assert len(converted) == 6  # no frame read again
    assert torch.equal(again.get(range(6)), built)
    listed = _build(sorted(folder.iterdir()), tmp_path / "hints.npy")  # the same files given as a list
    assert len(converted) == 6 and torch.equal(listed.get(range(6)), built)


@pytest.mark.parametrize("change", ["a redrawn frame", "another polarity", "another size", "a store cut short"])
def test_anything_else_builds_the_hints_afresh(tmp_path, converted, change):
    folder = _drawings(tmp_path / "art")
    store_path = tmp_path / "hints.npy"
    _build(folder, store_path)
    arguments = {}
    if change == "a redrawn frame":  # same size, same name, one pixel
        drawing = np.asarray(Image.open(folder / "f03.png")).copy()
        drawing[0, 0] = 0
        Image.fromarray(drawing).save(folder / "f03.png")
    elif change == "another polarity":
        arguments["polarity"] = "bright-lines"
    elif change == "another size":
        arguments["plan"] = plan_size((24, 40), multiple=8, forced_hw=(48, 80))
    else:
        with open(store_path, "r+b") as handle:
            handle.truncate(store_path.stat().st_size - 4)
    store = _build(folder, store_path, **arguments)
    assert len(converted) == 12  # every frame read again
    fresh = _build(folder, tmp_path / "fresh.npy", **arguments)
    assert torch.equal(store.get(range(6)), fresh.get(range(6)))


def test_frames_given_as_arrays_are_never_taken_for_a_stored_shot(tmp_path, converted):
    folder = _drawings(tmp_path / "art")
    arrays = [np.asarray(Image.open(path)) for path in sorted(folder.iterdir())]
    _build(arrays, tmp_path / "hints.npy")
    assert not record_path(tmp_path / "hints.npy").exists()
    _build(arrays, tmp_path / "hints.npy")
    assert len(converted) == 12


def test_a_fresh_job_clears_the_record_with_the_hints(tmp_path):
    work = WorkDir(tmp_path / "w", resume=False)
    _build(_drawings(tmp_path / "art"), work.hints_path)
    assert record_path(work.hints_path).exists()
    work.release()
    WorkDir(tmp_path / "w", resume=False).release()
    assert not work.hints_path.exists() and not record_path(work.hints_path).exists()


def test_a_resumed_job_reads_no_line_art_frame_for_its_hints_and_gives_the_same_result(
    tiny_weights, tmp_path, converted
):
    pipe = LVCDPipeline.from_single_file(tiny_weights["svd"], tiny_weights["lvcd"], config=TINY_CONFIG, device="cpu")
    folder = _drawings(tmp_path / "art", count=5, size_hw=(64, 64))
    reference = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    arguments = dict(num_steps=1, seed=3, work_dir=tmp_path / "w", progress=False)
    first = pipe(reference, folder, **arguments)
    assert len(converted) == 5
    resumed = pipe(reference, folder, resume=True, **arguments)
    assert len(converted) == 5  # the hints came from the work directory
    assert torch.equal(first.latents, resumed.latents)


def test_a_job_no_one_can_resume_does_not_hash_its_line_art(tiny_weights, tmp_path, monkeypatch):
    """Without work_dir= the job runs in a scratch folder that is never resumed: hashing its line-art files (a second
    read of every file) would be for nothing."""
    hashed = []
    monkeypatch.setattr("lvcd.hint_source.files_digest", lambda files, progress=True: hashed.append(files) or "0" * 64)
    pipe = LVCDPipeline.from_single_file(tiny_weights["svd"], tiny_weights["lvcd"], config=TINY_CONFIG, device="cpu")
    folder = _drawings(tmp_path / "art", count=3, size_hw=(64, 64))
    reference = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    pipe(reference, folder, num_steps=1, seed=3, progress=False)
    assert hashed == []
    pipe(reference, folder, num_steps=1, seed=3, work_dir=tmp_path / "w", progress=False)
    assert len(hashed) == 1  # a work directory given: recorded for a resume
