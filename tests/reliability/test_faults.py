"""Real faults, as a studio meets them: SIGINT / SIGTERM / SIGKILL at a random point of a run, then --resume gives
the very bytes of an uninterrupted run (an unseeded run too); a full disk (a small tmpfs) fails with one line that
says to --resume, which then finishes once space is freed; a read-only folder; a second job on the same output.

The tiny random model keeps each run to seconds. Mounting needs root: without it those tests are skipped, saying so.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lvcd.cli import app

from .conftest import World, can_mount, checksums, draw_shot, remount, tmpfs

runner = CliRunner()
FRAMES = 32  # three windows of 14 frames (overlap 4): a kill can land between any two
MOUNT = can_mount()


def _args(w: World, lineart: Path, output: Path, *extra: str) -> list[str]:
    return [
        "colorize", "--svd", str(w.svd), "--lvcd", str(w.lvcd), "--config", str(w.config), "--quiet",
        "--reference", str(w.reference), "--lineart", str(lineart), "--steps", "2", "-o", str(output), *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def shot(world, tmp_path_factory):
    """32 frames of line art and the uninterrupted result of seed 5 (the bytes every resumed run must give)."""
    folder = tmp_path_factory.mktemp("shot")
    draw_shot(folder / "lineart", FRAMES)
    full = folder / "full.mp4"
    result = runner.invoke(app, _args(world, folder / "lineart", full, "--seed", "5"))
    assert result.exit_code == 0, result.output
    return folder / "lineart", full.read_bytes()


def _hidden_leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def _ctrl_c_enabled() -> None:
    """A job started from a background shell inherits SIGINT ignored (and Python then installs no Ctrl-C handler):
    give the child the default disposition, as a terminal's foreground job has."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt(args: list[str], work: Path, how: signal.Signals, rng: random.Random) -> tuple[subprocess.Popen, str]:
    """Start `lvcd colorize` in a process and send ``how`` at a random point: once the start state or a random window
    is on disk, after a random extra delay."""
    marks = ["start.safetensors"] + [f"window_{i:06d}.safetensors" for i in range(2)]  # of 3 windows
    mark = rng.choice(marks)
    delay = rng.uniform(0, 0.3)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "lvcd.cli", *args],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_ctrl_c_enabled,
    )
    deadline = time.time() + 240
    while not (work / mark).exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(delay)
    assert process.poll() is None, f"the run ended before {how.name} after {mark} + {delay:.2f} s"
    process.send_signal(how)
    _, stderr = process.communicate(timeout=120)
    return process, f"{how.name} after {mark} + {delay:.2f} s:\n{stderr}"


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=lambda s: s.name)
def test_interrupted_at_a_random_point_then_resumed_gives_the_same_bytes(world, shot, tmp_path, how):
    lineart, full = shot
    output = tmp_path / "shot.mp4"
    work = tmp_path / ".shot.mp4.lvcd-work"
    unseeded = how == signal.SIGKILL  # an unseeded run: its drawn seed is recorded, and --resume continues it
    seed = [] if unseeded else ["--seed", "5"]
    inputs = checksums(world.inputs)
    process, story = _interrupt(_args(world, lineart, output, *seed), work, how, random.Random())
    expected_code = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGKILL: -9}[how]
    assert process.returncode == expected_code, story
    assert "Traceback" not in story, story
    if how != signal.SIGKILL:
        (line,) = [line for line in story.splitlines() if line.startswith("error:")]
        assert "interrupted" in line and "--resume" in line and str(work) in line, story
    drawn = re.search(r"seed (\d+) \(drawn at random", story)
    assert (drawn is not None) == unseeded, story
    assert not output.exists(), story  # nothing partial at the target

    resumed = runner.invoke(app, _args(world, lineart, output, *seed, "--resume"))
    assert resumed.exit_code == 0, f"{story}\n{resumed.output}"
    if unseeded:
        assert f"seed {drawn.group(1)} (recorded by the interrupted run" in resumed.output
        again = runner.invoke(app, _args(world, lineart, tmp_path / "again.mp4", "--seed", drawn.group(1)))
        assert again.exit_code == 0, again.output
        full = (tmp_path / "again.mp4").read_bytes()
        (tmp_path / "again.mp4").unlink()
    assert output.read_bytes() == full, story
    assert _hidden_leftovers(tmp_path) == [], story  # the work folder and a killed writer's temporaries: gone
    assert checksums(world.inputs) == inputs


@pytest.mark.skipif(MOUNT is not None, reason=str(MOUNT))
def test_a_full_disk_fails_in_one_line_and_resume_finishes_once_space_is_freed(world, shot, tmp_path):
    lineart, full = shot
    with tmpfs(tmp_path / "disk", "1200k") as disk:  # the hints (1 MB) and a window or two fit
        output = disk / "shot.mp4"
        result = runner.invoke(app, _args(world, lineart, output, "--seed", "5"))
        assert result.exit_code == 1, result.output
        (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert "No space left on device" in line and str(disk) in line and "--resume" in line, line
        assert "Traceback" not in result.output
        assert not output.exists() and _hidden_leftovers(disk) == [".shot.mp4.lvcd-work"]  # only the resumable state
        remount(disk, "size=8m")
        resumed = runner.invoke(app, _args(world, lineart, output, "--seed", "5", "--resume"))
        assert resumed.exit_code == 0, resumed.output
        assert output.read_bytes() == full and _hidden_leftovers(disk) == []


@pytest.mark.skipif(MOUNT is not None, reason=str(MOUNT))
@pytest.mark.parametrize("command", ["colorize", "convert", "lineart"])
def test_a_read_only_folder_is_refused_before_any_work(world, shot, tmp_path, command):
    lineart, _ = shot
    with tmpfs(tmp_path / "ro", "1m", read_only=True) as folder:
        args = {
            "colorize": _args(world, lineart, folder / "shot.mp4"),
            "convert": ["convert", "--svd", str(world.svd), "--lvcd", str(world.lvcd), "-o", str(folder / "c.safetensors")],
            "lineart": ["lineart", str(lineart), "-o", str(folder / "l"), "--method", "xdog"],
        }[command]  # fmt: skip
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert "Read-only file system" in line and str(folder) in line and "writable" in line
        assert list(folder.iterdir()) == []


def test_a_second_job_on_the_same_output_is_refused_and_the_first_finishes(world, shot, tmp_path):
    lineart, full = shot
    output = tmp_path / "shot.mp4"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(
        [sys.executable, "-m", "lvcd.cli", *_args(world, lineart, output, "--seed", "5")], env=env,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    work = tmp_path / ".shot.mp4.lvcd-work"
    deadline = time.time() + 240
    while not (work / "start.safetensors").exists() and first.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    second = runner.invoke(app, _args(world, lineart, output, "--seed", "5"))
    _, stderr = first.communicate(timeout=240)
    assert second.exit_code == 2, second.output
    assert f"already running on it (pid {first.pid})" in second.output
    assert first.returncode == 0, stderr  # the second job changed nothing of the first one's
    assert output.read_bytes() == full and _hidden_leftovers(tmp_path) == []
