"""Fixtures of the batch tests: a film of five synthetic shots (1, 2, 15, 33, 60 frames) and its local batch run.

The outputs are PNG folders and are compared byte for byte (PNG encoding is deterministic; the mp4 encoder is not
guaranteed to be from run to run). Every worker uses one CPU thread, so all runs compute the same floats.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import TINY_CONFIG
from lvcd.cli import app
from lvcd.testing.drawings import draw_ring_shot

LENGTHS = (1, 2, 15, 33, 60)
SIZE_HW = (64, 64)  # the tiny model's smallest processing size: fastest


def write_shot(folder: Path, count: int, seed: int) -> Path:
    """Dark-lines drawings of a moving ring in ``folder``, and a coloured frame 0 beside it; returns the reference."""
    draw_ring_shot(folder, count, SIZE_HW)
    height, width = SIZE_HW
    reference = folder.parent / f"{folder.name}_ref.png"
    colour = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    Image.fromarray(colour).save(reference)
    return reference


@pytest.fixture(scope="session")
def film(tmp_path_factory) -> dict[str, dict]:
    """name -> manifest entry (absolute paths) of the five shots; shot60 has its own steps, each its own seed."""
    root = tmp_path_factory.mktemp("film")
    entries = {}
    for seed, count in enumerate(LENGTHS):
        reference = write_shot(root / f"lineart{count}", count, seed)
        entry = {"name": f"shot{count}", "reference": str(reference), "lineart": str(root / f"lineart{count}")}
        entries[entry["name"]] = {**entry, "seed": 10 + seed, **({"steps": 2} if count == 60 else {})}
    return entries


def write_manifest(path: Path, entries) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(list(entries)))
    return path


def model_args(tiny_weights) -> list[str]:
    return ["--svd", str(tiny_weights["svd"]), "--lvcd", str(tiny_weights["lvcd"]), "--config", str(TINY_CONFIG)]


def batch_cli(tiny_weights, manifest: Path, outdir: Path, *extra: str):
    args = ["batch", str(manifest), "-o", str(outdir), *model_args(tiny_weights)]
    args += ["--steps", "1", "--format", "png", "--threads", "1", "--quiet", *extra]
    return CliRunner().invoke(app, args)


def read_report(outdir: Path) -> dict:
    report = json.loads((outdir / "batch_report.json").read_text())
    assert report["schema"] == "lvcd.batch/1"
    return report


def shot_entries(report: dict) -> dict[str, dict]:
    return {entry["name"]: entry for entry in report["shots"]}


def assert_same_frames(folder_a: Path, folder_b: Path, count: int) -> None:
    """Two PNG-folder outputs hold the same frames, byte for byte."""
    names_a, names_b = sorted(p.name for p in folder_a.iterdir()), sorted(p.name for p in folder_b.iterdir())
    assert names_a == names_b and len(names_a) == count, (folder_a, folder_b)
    for name in names_a:
        assert (folder_a / name).read_bytes() == (folder_b / name).read_bytes(), f"{folder_a.name}/{name} differs"


@pytest.fixture(scope="session")
def local_run(film, tiny_weights, tmp_path_factory) -> Path:
    """OUTDIR of `lvcd batch` over the five shots with the embedded default (one CPU worker, in process)."""
    root = tmp_path_factory.mktemp("local_run")
    result = batch_cli(tiny_weights, write_manifest(root / "film.json", film.values()), root / "out")
    assert result.exit_code == 0, result.output
    return root / "out"


def in_thread(function, *args):
    """Run ``function(*args)`` in a thread; returns (thread, box) where box gets 'value' or 'error'."""
    box: dict = {}

    def target():
        try:
            box["value"] = function(*args)
        except BaseException as err:  # noqa: BLE001 - re-raised by the test
            box["error"] = err

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, box


def kill_worker_mid_shot(
    outdir: Path, name: str, windows: int = 2, timeout: float = 180, batch: tuple | None = None
) -> int:
    """SIGKILL the worker process running shot ``name`` once it has finished ``windows`` windows (its pid comes from
    the shot's record); returns how many window files were on disk just before the kill. ``batch``: the (thread, box)
    of ``in_thread`` running the batch; once that thread has ended nothing more can happen, so the wait fails then
    (with the batch's error) rather than at the timeout."""
    record_path = outdir / ".lvcd-batch" / "shots" / f"{name}.json"
    work = outdir / ".lvcd-batch" / "work" / name
    deadline = time.time() + timeout
    while time.time() < deadline:
        ended = batch is not None and not batch[0].is_alive()  # before the record is read: no progress after it
        try:
            record = json.loads(record_path.read_text())
        except (OSError, ValueError):
            record = {}
        if record.get("status") == "running" and (work / f"window_{windows - 1:06d}.safetensors").exists():
            pid = record["pid"]
            assert pid != os.getpid(), "the shot runs in the test process: nothing to kill"
            seen = len(list(work.glob("window_*.safetensors")))
            os.kill(pid, signal.SIGKILL)
            return seen
        assert record.get("status") != "done", f"{name} finished before it could be interrupted"
        if ended:
            raise AssertionError(f"the batch ended before {name} reached window {windows}: {batch[1]}")
        time.sleep(0.02)
    raise AssertionError(f"{name} did not reach window {windows} within {timeout} s")
