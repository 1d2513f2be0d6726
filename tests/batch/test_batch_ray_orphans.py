"""A killed `lvcd batch --ray-address local` takes its Ray actors with it: none goes on writing into OUTDIR."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from .conftest import write_manifest, write_shot


def _actors() -> set[int]:
    """Live processes of Ray actors of lvcd (Ray titles them ``ray::RayShotWorker...``)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _running(int(entry.name)):
            try:
                if b"RayShotWorker" in (entry / "cmdline").read_bytes():
                    found.add(int(entry.name))
            except OSError:  # ended meanwhile
                pass
    return found


def _running(pid: int) -> bool:
    """The process exists and has not ended (a zombie has ended: nobody may have reaped it yet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _wait_for(predicate, seconds: float, poll_s: float = 0.05) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return predicate()


_WATCHED = textwrap.dedent(
    """
    import time
    from lvcd.batch.ray_pool import exit_when_orphaned
    exit_when_orphaned(0.05)
    print("watching", flush=True)
    time.sleep(120)
    """
)
_PARENT = textwrap.dedent(
    f"""
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", {_WATCHED!r}], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "watching"
    print(child.pid, flush=True)
    time.sleep(120)
    """
)


def _watched_child(env: dict | None = None) -> tuple[subprocess.Popen, int]:
    """A parent process and the pid of its child, which watches with exit_when_orphaned."""
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True, env=env)
    return parent, int(parent.stdout.readline())


def test_a_process_whose_parent_dies_ends_itself(tmp_path):
    """exit_when_orphaned, without Ray: a child of a SIGKILLed parent ends within a few polls."""
    middle, pid = _watched_child()
    try:
        time.sleep(0.3)
        assert _running(pid)  # alive while its parent is
        middle.kill()
        middle.wait()
        assert _wait_for(lambda: not _running(pid), 10)
    finally:
        middle.kill()
        _kill(pid)


def test_a_worker_watches_the_raylet_ray_names_not_a_wrapper_between_them(tmp_path):
    """With RAY_RAYLET_PID (set by Ray in every worker): the end of an intermediate parent (a `uv run` or conda
    wrapper) leaves the worker running; the raylet's end, even as an unreaped zombie, ends it."""
    raylet = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    middle, pid = _watched_child({**os.environ, "RAY_RAYLET_PID": str(raylet.pid)})
    try:
        middle.kill()
        middle.wait()
        time.sleep(0.5)
        assert _running(pid)  # its wrapper is gone, its raylet is not
        raylet.kill()  # not reaped yet: a zombie, as under an init that never reaps
        assert _wait_for(lambda: not _running(pid), 10)
    finally:
        for process in (middle, raylet):
            process.kill()
        raylet.wait()
        _kill(pid)


def test_killed_batch_on_a_private_ray_instance_leaves_no_actor_running(tmp_path):
    pytest.importorskip("ray", reason="the Ray path needs `pip install 'lvcd[ray]'`")
    reference = write_shot(tmp_path / "lineart", 33, seed=0)
    manifest = write_manifest(
        tmp_path / "film.json", [{"name": "s0", "reference": str(reference), "lineart": str(tmp_path / "lineart")}]
    )
    outdir = tmp_path / "out"
    before = _actors()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    command = [sys.executable, "-m", "lvcd.cli", "batch", str(manifest), "-o", str(outdir), "--model", "demo",
               "--steps", "2", "--format", "png", "--ray-address", "local", "--workers", "1", "--quiet"]  # fmt: skip
    batch = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    work = outdir / ".lvcd-batch" / "work" / "s0"
    try:
        started = _wait_for(lambda: any(work.glob("window_*")) or batch.poll() is not None, 180, 0.002)
        assert started and batch.poll() is None, "the batch ended before its first window"
        batch.send_signal(signal.SIGKILL)
        batch.wait()
        assert _wait_for(lambda: not (_actors() - before), 15), "a Ray actor outlived its killed batch"
        time.sleep(2)  # had an actor gone on, it would finish the 3-window shot in this time
        record = json.loads((outdir / ".lvcd-batch" / "shots" / "s0.json").read_text())
        assert record["status"] == "running" and not (outdir / "s0").exists()
    finally:
        batch.kill()
        for pid in _actors() - before:
            _kill(pid)
    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert rerun.returncode == 0, rerun.stderr
    assert len(list((outdir / "s0").glob("*.png"))) == 33 and not list(outdir.glob(".s0.partial*"))
