"""A shot's end sequence (output staged, record names it, output moved onto its name, work directory removed, record
`done`) killed at every step: the next attempt, a re-run of the batch or a retried job after a dead worker, finishes
the shot without --overwrite, keeping an output this very job moved into place, and still refuses a foreign one.

A kill is simulated in process by a BaseException raised at the chosen point (nothing of the shot's own code catches
it, as nothing runs after a SIGKILL); one test kills a real `lvcd batch` process with SIGKILL at the worst point.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import TINY_CONFIG
from lvcd.batch import BatchOptions, InProcessPool, ModelSpec, ShotSettings, model_identity, read_shots, run_batch
from lvcd.batch import shot as shot_module
from lvcd.batch.dispatch import WorkerLost
from lvcd.io.atomic import remove

from .conftest import assert_same_frames, batch_cli, model_args, read_report, shot_entries, write_manifest

SHOT = "shot2"  # two frames: the fastest shot of the film that has windows


class Killed(BaseException):
    """The worker dies here (a BaseException: no `except Exception` of the shot's code runs for it)."""


def _batch(film, tiny_weights, tmp_path, outdir, pool=None, **options):
    shots = read_shots(write_manifest(tmp_path / "film.json", [film[SHOT]]), ShotSettings(steps=1))
    svd, lvcd = str(tiny_weights["svd"]), str(tiny_weights["lvcd"])
    pool = pool or InProcessPool(ModelSpec(svd, lvcd, str(TINY_CONFIG), "cpu", None, threads=1))
    identity = model_identity(svd, lvcd, str(TINY_CONFIG), None)
    return run_batch(shots, outdir, pool, identity, BatchOptions(output_format="png", progress=False, **options))


def _kill_at(point: str, monkeypatch) -> None:
    """Make the next shot's end sequence die at ``point`` (the last three exist in lvcd before the fix too: the kill
    after the output is in place, before the work directory goes, is the auditor's case)."""
    write_record, rmtree = shot_module.write_record, shutil.rmtree

    def dying_write(path, record):
        if point == "staged" and "committing" in record:  # the output staged, the record not yet naming it
            raise Killed(point)
        if point == "cleaned" and record.get("status") == "done":  # all done but the record
            raise Killed(point)
        write_record(path, record)
        if point == "named" and "committing" in record:  # the record names it; not moved yet
            raise Killed(point)

    def dying_rmtree(path, *args, **kwargs):
        if Path(path).parent.name != "work" or Path(path).parent.parent.name != ".lvcd-batch":
            return rmtree(path, *args, **kwargs)
        if point == "cleaning":  # the work directory half removed
            for part in sorted(Path(path).iterdir())[::2]:
                remove(part)
        raise Killed(point)  # "moved": the output in place, nothing else done

    monkeypatch.setattr(shot_module, "write_record", dying_write)
    if point in ("moved", "cleaning"):
        monkeypatch.setattr(shutil, "rmtree", dying_rmtree)


def _stamps(folder: Path) -> dict:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()}


def test_an_output_is_known_by_its_frames_not_by_an_inode(tmp_path):
    """Shared file systems that number files per machine or mount (sshfs, s3fs, gcsfuse, CIFS) show another worker
    other inodes for the same output: the identity is the frames' names, sizes and times (a rename keeps them), here
    seen through a copy that keeps them but not the inodes; a frame written again is another output."""
    from lvcd.batch.layout import output_identity

    output = tmp_path / "shot"
    output.mkdir()
    for index in range(3):
        (output / f"{index}.png").write_bytes(bytes([index]) * (10 + index))
    (tmp_path / "shot.mp4").write_bytes(b"video")
    for path in (output, tmp_path / "shot.mp4"):
        copy = tmp_path / f"other mount of {path.name}"
        (shutil.copytree if path.is_dir() else shutil.copy2)(path, copy)
        assert output_identity(copy) == output_identity(path) is not None
    (output / "1.png").write_bytes((output / "1.png").read_bytes())
    assert output_identity(output) != output_identity(tmp_path / "other mount of shot")
    assert output_identity(tmp_path / "absent") is None


@pytest.mark.parametrize("point", ["staged", "named", "moved", "cleaning", "cleaned"])
def test_a_batch_killed_anywhere_in_a_shots_end_sequence_finishes_it_on_the_rerun(
    point, local_run, film, tiny_weights, tmp_path, monkeypatch
):
    outdir = tmp_path / "out"
    with monkeypatch.context() as patch:
        _kill_at(point, patch)
        with pytest.raises(Killed):
            _batch(film, tiny_weights, tmp_path, outdir)
    record_path = outdir / ".lvcd-batch" / "shots" / f"{SHOT}.json"
    assert json.loads(record_path.read_text())["status"] == "running"
    moved = point in ("moved", "cleaning", "cleaned")
    assert (outdir / SHOT).exists() == moved
    stamps = _stamps(outdir / SHOT) if moved else None

    report = _batch(film, tiny_weights, tmp_path, outdir)  # the same command again, without --overwrite
    entry = report.shots[SHOT]
    assert entry["error"] is None, entry["error"]
    record = json.loads(record_path.read_text())
    assert record["status"] == "done" and "committing" not in record
    if moved:  # recognised as this job's own output: kept as it is, not made again
        assert entry["status"] == "skipped" and entry["warnings"] == [shot_module.ADOPTED] and entry["frames"] == 2
        assert _stamps(outdir / SHOT) == stamps
    else:  # never moved into place: decoded again from the finished windows
        assert entry["status"] == "done" and entry["windows_resumed"] == entry["windows"] == 1
    assert_same_frames(outdir / SHOT, local_run / SHOT, 2)
    state = outdir / ".lvcd-batch"
    assert not (state / "work").exists() and not (state / "staged").exists()
    assert [p.name for p in outdir.iterdir() if p.name.startswith(".")] == [state.name]  # no writer temporaries
    assert _batch(film, tiny_weights, tmp_path, outdir).shots[SHOT]["status"] == "skipped"


@pytest.mark.parametrize("point", ["named", "moved"])
def test_a_foreign_output_is_still_refused_after_a_kill(point, film, tiny_weights, tmp_path, monkeypatch):
    """The record names the very output moved into place: a file put at the output's path after the kill (here the
    frames with one of them drawn again: the user's own edit) is not this batch's and is not replaced without
    --overwrite."""
    outdir = tmp_path / "out"
    with monkeypatch.context() as patch:
        _kill_at(point, patch)
        with pytest.raises(Killed):
            _batch(film, tiny_weights, tmp_path, outdir)
    foreign = tmp_path / "foreign"
    if point == "moved":
        shutil.copytree(outdir / SHOT, foreign)
        shutil.rmtree(outdir / SHOT)
        first = sorted(foreign.iterdir())[0]
        first.write_bytes(first.read_bytes())  # the same bytes written again: a new modification time
    else:
        shutil.copytree(film[SHOT]["lineart"], foreign)
    shutil.move(foreign, outdir / SHOT)
    stamps = _stamps(outdir / SHOT)
    entry = _batch(film, tiny_weights, tmp_path, outdir).shots[SHOT]
    assert entry["status"] == "failed" and "exists but was not made by this batch" in entry["error"]
    assert _stamps(outdir / SHOT) == stamps


def test_a_worker_killed_after_moving_the_output_has_its_retry_finish_the_shot(
    local_run, film, tiny_weights, tmp_path, monkeypatch
):
    """As a ProcessPool or Ray worker dying in that window: the shot goes to the next worker (here the same runner,
    its earlier life "lost"), which must not run the pipeline onto the existing output (that failed the shot)."""
    svd, lvcd = str(tiny_weights["svd"]), str(tiny_weights["lvcd"])

    class DyingOnce(InProcessPool):
        died = False

        def wait(self, timeout):
            try:
                return super().wait(timeout)
            except Killed:
                monkeypatch.undo()
                DyingOnce.died = True
                return [(0, WorkerLost("local", "killed after moving the output"))]

        def replace(self, slot):
            pass

    _kill_at("moved", monkeypatch)
    pool = DyingOnce(ModelSpec(svd, lvcd, str(TINY_CONFIG), "cpu", None, threads=1))
    outdir = tmp_path / "out"
    report = _batch(film, tiny_weights, tmp_path, outdir, pool=pool)
    entry = report.shots[SHOT]
    assert DyingOnce.died and entry["error"] is None, entry["error"]
    assert entry["status"] == "done" and entry["attempts"] == 2 and len(entry["lost_workers"]) == 1
    assert entry["warnings"] == [shot_module.ADOPTED]
    assert json.loads((outdir / ".lvcd-batch" / "shots" / f"{SHOT}.json").read_text())["status"] == "done"
    assert not (outdir / ".lvcd-batch" / "work" / SHOT).exists()
    assert_same_frames(outdir / SHOT, local_run / SHOT, 2)


KILL_AFTER_MOVE = """
import os, signal, sys
import shutil
rmtree = shutil.rmtree
def dying_rmtree(path, *args, **kwargs):  # the shot's work directory goes once its output is in place
    if os.path.basename(os.path.dirname(str(path))) == "work":
        os.kill(os.getpid(), signal.SIGKILL)
    return rmtree(path, *args, **kwargs)
shutil.rmtree = dying_rmtree
from lvcd.cli import app
sys.argv = ["lvcd", *sys.argv[1:]]
app()
"""


def test_lvcd_batch_sigkilled_right_after_moving_the_output_reruns_without_overwrite(
    local_run, film, tiny_weights, tmp_path
):
    """The auditor's case, with a real SIGKILL of `lvcd batch` at the worst instant: the re-run said 'exists but was
    not made by this batch' on every run, and left the shot's work directory."""
    manifest = write_manifest(tmp_path / "film.json", [film[SHOT]])
    outdir = tmp_path / "out"
    args = ["batch", str(manifest), "-o", str(outdir), *model_args(tiny_weights)]
    args += ["--steps", "1", "--format", "png", "--threads", "1", "--quiet"]
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_MOVE, *args], capture_output=True, timeout=300)
    assert killed.returncode == -9, killed.stderr.decode()[-2000:]
    assert json.loads((outdir / ".lvcd-batch" / "shots" / f"{SHOT}.json").read_text())["status"] == "running"
    assert (outdir / ".lvcd-batch" / "work" / SHOT).exists()
    result = batch_cli(tiny_weights, manifest, outdir)
    assert result.exit_code == 0, result.output
    entry = shot_entries(read_report(outdir))[SHOT]
    assert entry["status"] == "skipped" and entry["warnings"] == [shot_module.ADOPTED]
    assert not (outdir / ".lvcd-batch" / "work" / SHOT).exists()
    assert_same_frames(outdir / SHOT, local_run / SHOT, 2)


@pytest.mark.parametrize("name", ["sh.010", "sh.010.mp4"])
def test_an_output_that_appeared_while_the_shot_ran_is_kept_and_the_result_beside_it(tmp_path, name):
    """Without --overwrite a file or folder put at the output's path while the shot ran stays; the result is moved
    beside it under a visible name that keeps a folder's whole name (sh.010.lvcd-XXXX) or a video's extension."""
    from lvcd.batch.shot import ShotJob, _commit_output
    from lvcd.errors import InputError

    state = tmp_path / ".lvcd-batch"
    job = ShotJob(None, tmp_path / name, state / "work" / "s", state / "shots" / "s.json", "f", False, False)
    job.staged.parent.mkdir(parents=True)
    (job.record.parent).mkdir(parents=True)
    if name.endswith(".mp4"):
        job.staged.write_bytes(b"result")
        job.output.write_bytes(b"theirs")
    else:
        job.staged.mkdir()
        (job.staged / "0.png").write_bytes(b"result")
        job.output.mkdir()
        (job.output / "0.png").write_bytes(b"theirs")
    with pytest.raises(InputError, match="appeared while the shot ran .*; the result is kept at ") as caught:
        _commit_output(job, {"status": "running"})
    kept = Path(str(caught.value).rsplit("kept at ", 1)[1].rstrip("."))
    expected = r"sh\.010\.lvcd-[0-9a-f]{8}" + (r"\.mp4" if name.endswith(".mp4") else "")
    assert kept.parent == tmp_path and re.fullmatch(expected, kept.name), kept.name
    theirs = job.output.read_bytes() if job.output.is_file() else (job.output / "0.png").read_bytes()
    ours = kept.read_bytes() if kept.is_file() else (kept / "0.png").read_bytes()
    assert theirs == b"theirs" and ours == b"result" and not job.staged.exists()
