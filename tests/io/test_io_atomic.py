"""lvcd.io.atomic: the one atomic writer, for files and folders."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path

import pytest

from lvcd.io.atomic import AtomicOutput, atomic_output, write_json_atomic


def _hidden(folder) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_a_file_appears_only_when_complete_and_replaces_the_old_one(tmp_path):
    target = tmp_path / "sub" / "out.json"
    with atomic_output(target) as temporary:
        assert temporary.name.startswith(".out.json.partial-") and temporary.suffix == ".json"
        temporary.write_text("new")
        assert not target.exists()
    assert target.read_text() == "new" and _hidden(target.parent) == []
    with pytest.raises(RuntimeError, match="boom"), atomic_output(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "new" and _hidden(target.parent) == []


def test_a_folder_replaces_the_old_folder_entirely(tmp_path):
    target = tmp_path / "frames"
    target.mkdir()
    (target / "old.png").write_text("old")
    with atomic_output(target, folder=True) as staging:
        (staging / "00000.png").write_text("new")
        assert (target / "old.png").exists()
    assert sorted(p.name for p in target.iterdir()) == ["00000.png"] and _hidden(tmp_path) == []


def test_without_overwrite_an_existing_target_is_kept(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("mine")
    output = AtomicOutput(target, overwrite=False)
    output.path.write_text("new")
    with pytest.raises(FileExistsError):
        output.commit()
    assert target.read_text() == "mine" and output.path.exists()  # the caller decides what to do with the result
    output.discard()
    assert _hidden(tmp_path) == []


def test_json_writer(tmp_path):
    path = write_json_atomic(tmp_path / "a.json", {"x": [1, 2]})
    assert json.loads(path.read_text()) == {"x": [1, 2]} and path.read_text().endswith("\n")
    with pytest.raises(ValueError):
        write_json_atomic(tmp_path / "b.json", {"x": math.nan}, allow_nan=False)
    assert not (tmp_path / "b.json").exists() and _hidden(tmp_path) == []


def test_a_written_file_gets_the_umask_mode_even_when_a_library_makes_it_private(tmp_path):
    import os

    import torch

    from lvcd.weights import save_safetensors

    previous = os.umask(0o022)
    try:
        path = save_safetensors({"a": torch.zeros(2)}, tmp_path / "w.safetensors")  # safetensors itself writes 0600
        assert oct(path.stat().st_mode & 0o777) == oct(0o644)
        os.umask(0o027)
        assert oct(write_json_atomic(tmp_path / "b.json", {}).stat().st_mode & 0o777) == oct(0o640)
    finally:
        os.umask(previous)


def test_a_killed_writers_temporaries_are_removed_by_the_next_write_but_a_live_writers_are_kept(tmp_path):
    target = tmp_path / "out.json"
    live = AtomicOutput(target)  # holds its lock, as a writer still running would
    live.path.write_text("in progress")
    dead_file = tmp_path / ".out.json.partial-0123abcd.json"  # as a SIGKILLed writer leaves them: no lock held
    dead_folder = tmp_path / ".out.json.partial-4567cdef"
    dead_file.write_text("half")
    dead_folder.mkdir()
    (dead_folder / "00000.png").write_text("half")
    user_file = tmp_path / ".out.json.notes"  # not a name lvcd makes: never touched
    user_file.write_text("mine")
    write_json_atomic(target, {"done": True})
    assert not dead_file.exists() and not dead_folder.exists()
    assert live.path.read_text() == "in progress" and user_file.read_text() == "mine"
    live.discard()
    assert _hidden(tmp_path) == [".out.json.notes"]


def test_a_temporary_is_locked_before_it_is_visible(tmp_path, monkeypatch):
    """Another process cleaning up may look at a temporary at any instant: it must never find one of a live writer
    unlocked (it would delete it as a dead writer's). The temporary appears under its name already locked."""
    from lvcd.io import atomic
    from lvcd.io.locks import is_abandoned

    seen = []
    real_rename = os.rename

    def rename(source, destination):
        seen.append((Path(source).name, is_abandoned(source)))  # what a cleaner would conclude at this instant
        return real_rename(source, destination)

    monkeypatch.setattr(atomic.os, "rename", rename)
    for folder in (False, True):
        output = AtomicOutput(tmp_path / ("frames" if folder else "out.mp4"), folder=folder)
        assert not is_abandoned(output.path) and atomic.abandoned_temporaries(output.target) == []
        output.discard()
    assert [locked for _, locked in seen] == [False, False] and all(".creating-" in name for name, _ in seen)


def test_a_creating_temporary_of_a_killed_writer_is_removed_once_old(tmp_path):
    from lvcd.io.atomic import remove_abandoned_temporaries

    target = tmp_path / "out.mp4"
    fresh, old = tmp_path / ".out.mp4.creating-0123abcd", tmp_path / ".out.mp4.creating-89abcdef"
    fresh.write_bytes(b"")
    old.write_bytes(b"")
    os.utime(old, (time.time() - 3600, time.time() - 3600))
    assert remove_abandoned_temporaries(target) == [old]
    assert fresh.exists() and not old.exists()


def test_a_writer_waits_for_a_clean_up_that_tests_its_fresh_temporary(tmp_path, monkeypatch):
    """A clean-up in another process may hold a fresh temporary's lock for an instant while it tests it: the writer
    must wait for the lock, not go on without one (its temporary would then look abandoned and be deleted)."""
    import fcntl
    import threading

    from lvcd.io import atomic
    from lvcd.io.locks import is_abandoned

    real_open = os.open

    def open_then_probe(path, flags, *mode):
        fd = real_open(path, flags, *mode)
        if ".creating-" in str(path):  # the cleaner's probe: holds the lock for 0.3 s
            probe = real_open(path, os.O_RDONLY)
            fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            threading.Timer(0.3, os.close, (probe,)).start()
        return fd

    monkeypatch.setattr(atomic.os, "open", open_then_probe)
    output = AtomicOutput(tmp_path / "out.mp4")
    monkeypatch.undo()
    time.sleep(0.5)  # the probe is over
    assert not is_abandoned(output.path) and atomic.remove_abandoned_temporaries(output.target) == []
    output.discard()


def _killed_replacing(target: Path, new_frame: str, at: str) -> None:
    """Replace the folder ``target`` by a new one holding ``new_frame``, killed ``at`` ``"between"`` or ``"after"``
    its two moves (:func:`lvcd.testing.faults.killed_replacing`), as a killed ``--overwrite`` leaves it."""
    from lvcd.testing.faults import killed_replacing

    def replace() -> None:
        with atomic_output(target, folder=True) as staging:
            (staging / new_frame).write_text("new")

    killed_replacing(replace, at)


def test_an_overwrite_killed_between_its_two_moves_has_the_old_output_moved_back_by_the_next_write(tmp_path):
    """The old folder was left hidden as .NAME.replaced-XXXX with NAME missing, and nothing ever put it back: the
    next write of NAME now moves it back first (a warning says so), then proceeds as it would have."""
    from lvcd.errors import InputError
    from lvcd.io.writers import open_writer

    target = tmp_path / "frames"
    target.mkdir()
    (target / "00000.png").write_text("old")
    _killed_replacing(target, "00001.png", at="between")
    assert not target.exists()
    with pytest.warns(UserWarning, match=r"frames: an earlier replacement of it .* was interrupted .*moved back"):
        with pytest.raises(InputError, match="frames: already exists"):  # without --overwrite: the old one is kept
            open_writer(target, overwrite=False)
    assert sorted(p.name for p in target.iterdir()) == ["00000.png"] and (target / "00000.png").read_text() == "old"
    assert _hidden(tmp_path) == [p for p in _hidden(tmp_path) if ".partial-" in p]  # nothing else of lvcd's left
    _killed_replacing(target, "00001.png", at="between")
    with pytest.warns(UserWarning, match="moved back"), atomic_output(target, folder=True) as staging:
        (staging / "00002.png").write_text("newer")
    assert sorted(p.name for p in target.iterdir()) == ["00002.png"] and _hidden(tmp_path) == []


def test_an_overwrite_killed_after_its_two_moves_has_the_old_output_deleted_by_the_next_write(tmp_path):
    target = tmp_path / "frames"
    target.mkdir()
    (target / "00000.png").write_text("old")
    _killed_replacing(target, "00001.png", at="after")
    assert sorted(p.name for p in target.iterdir()) == ["00001.png"]
    (old,) = [p for p in tmp_path.iterdir() if p.name.startswith(".frames.replaced-") and p.is_dir()]
    write_json_atomic(tmp_path / "other.json", {})  # another output's write leaves it alone
    assert (old / "00000.png").read_text() == "old"
    with atomic_output(target, folder=True) as staging:
        (staging / "00002.png").write_text("newer")
    assert sorted(p.name for p in target.iterdir()) == ["00002.png"] and _hidden(tmp_path) == []


def test_only_provably_lvcd_replaced_folders_are_moved_back_or_deleted(tmp_path):
    """A .NAME.replaced-XXXX without lvcd's record (a user's, or one from before records), one whose record a live
    replacement holds locked, and one whose NAME was made anew since the kill are never moved nor deleted; the last
    is one line saying what to do."""
    from lvcd.errors import InputError
    from lvcd.io.atomic import recover_replaced
    from lvcd.io.locks import lock_path

    target = tmp_path / "frames"
    unrecorded = tmp_path / ".frames.replaced-0123abcd"
    unrecorded.mkdir()
    assert recover_replaced(target) == [] and unrecorded.is_dir() and not target.exists()
    target.mkdir()
    (target / "00000.png").write_text("old")
    _killed_replacing(target, "00001.png", at="between")
    record = next(p for p in tmp_path.iterdir() if p.name.endswith(".lvcd"))
    backup = record.with_name(record.name.removesuffix(".lvcd"))
    live = lock_path(record)  # as the replacing process would, were it still running
    try:
        assert recover_replaced(target) == [] and backup.is_dir() and not target.exists()
    finally:
        os.close(live)
    target.mkdir()
    (target / "00000.png").write_text("made again by the user")
    with pytest.raises(
        InputError, match=r"frames: an interrupted replacement .* left the previous frames at .*made anew"
    ):
        recover_replaced(target)
    assert (backup / "00000.png").read_text() == "old" and record.exists() and unrecorded.is_dir()
    assert (target / "00000.png").read_text() == "made again by the user"


def test_the_cli_moves_an_interrupted_overwrites_old_output_back_before_any_work(tmp_path):
    """``lvcd colorize`` checks its output before loading a model: there, not only when the writer opens (after the
    model loaded), the old output comes back and a run without --overwrite is refused as for any existing output."""
    from lvcd.cli.checks import check_output
    from lvcd.errors import InputError

    target = tmp_path / "frames"
    target.mkdir()
    (target / "00000.png").write_text("old")
    _killed_replacing(target, "00001.png", at="between")
    with pytest.warns(UserWarning, match="moved back"), pytest.raises(InputError, match="exists; pass --overwrite"):
        check_output(target, {}, overwrite=False, resume=False)
    assert (target / "00000.png").read_text() == "old"
