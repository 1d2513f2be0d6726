"""The batch's progress output, its report writes and its planning, on a pool without a model (fast): whole lines in
a log, a bar that ends right on a terminal, a report not rewritten per shot yet final on SIGTERM and resumable after
SIGKILL, video frame counts from the container."""

from __future__ import annotations

import contextlib
import io
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import lvcd.batch.progress
import lvcd.batch.report
from lvcd.batch import BatchOptions, ShotSpec
from lvcd.batch.layout import BatchLayout
from lvcd.batch.report import BatchReport, ReportWriter, new_entry
from lvcd.batch.run import plan_batch
from lvcd.io import open_writer

from .fake_pool import FakePool, fake_batch, fake_shots


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _lines(text: str) -> list[str]:
    assert "\r" not in text and text.endswith("\n"), "a log gets whole lines only"
    return text.splitlines()


def test_in_a_log_progress_is_one_whole_line_per_shot_and_one_at_each_end(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    fake_batch(tmp_path / "out", fake_shots(tmp_path, 5, frames=3), FakePool(), progress=True)
    lines = _lines(sys.stderr.getvalue())
    assert lines[0] == "batch: 5/5 shots to colorize (15 frames); 0 skipped (already complete), 0 failed"
    assert [line.split(":")[0] for line in lines[1:6]] == [f"done    shot{i:04d}" for i in range(5)]
    assert "[1/5 shots, 3/15 frames, " in lines[1] and "frames/s, ETA " in lines[1]
    assert "[5/5 shots, 15/15 frames, " in lines[5] and lines[5].endswith("ETA 00:00]")
    assert lines[6].startswith("batch: 5/5 shots, 15/15 frames in ") and len(lines) == 7


def test_in_a_log_a_heartbeat_line_says_what_runs_while_a_long_shot_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.setattr(lvcd.batch.progress, "HEARTBEAT_SECONDS", 0.05)
    fake_batch(tmp_path / "out", fake_shots(tmp_path, 1), FakePool(seconds=0.5), progress=True)
    beats = [line for line in _lines(sys.stderr.getvalue()) if "; running " in line]
    assert beats and all(line.startswith("batch: 0/1 shots, 0/1 frames (0%)") for line in beats)
    assert beats[0].endswith("; running shot0000 (0/1 windows)")


def test_on_a_terminal_the_bar_ends_with_every_shot_counted_and_none_running(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "stderr", _Terminal())
    fake_batch(tmp_path / "out", fake_shots(tmp_path, 4, frames=2), FakePool(), progress=True)
    output = sys.stderr.getvalue()
    assert output.count("done    shot") == 4
    final = [part for part in output.split("\r") if part.startswith("batch:")][-1]
    assert "8/8" in final and "4/4 shots" in final and "running" not in final, final


def test_the_report_is_not_rewritten_per_shot_yet_is_complete_when_the_batch_ends(tmp_path, monkeypatch):
    writes = []
    original = BatchReport.write
    monkeypatch.setattr(BatchReport, "write", lambda self, path: (writes.append(path), original(self, path)))
    report = fake_batch(tmp_path / "out", fake_shots(tmp_path, 200), FakePool())
    assert len(writes) <= 3  # planned, (at most one while running: 10 s apart), ended; it was 202
    saved = json.loads((tmp_path / "out" / "batch_report.json").read_text())
    assert saved["totals"]["done"] == 200 and saved["finished"] is not None
    assert saved["shots"] == list(report.shots.values()) and {e["status"] for e in saved["shots"]} == {"done"}


def test_while_running_the_report_is_rewritten_every_min_seconds_or_less_often_when_writes_are_slow(monkeypatch):
    now = [0.0]

    class SlowReport:
        cost = 0.01

        def write(self, path):
            now[0] += self.cost

    report = SlowReport()
    writer = ReportWriter(report, Path("unused.json"), clock=lambda: now[0])
    writer.write()
    times = []
    for _ in range(400):  # a shot ends every 0.1 s
        now[0] += 0.1
        before = writer.writes
        writer.changed()
        if writer.writes > before:
            times.append(now[0])
    assert len(times) == 3 and np.diff(times).min() >= lvcd.batch.report.MIN_SECONDS
    report.cost = 1.0  # a huge batch: at most MAX_SHARE of the time goes into rewriting its report
    writer.write()
    start, count = now[0], writer.writes
    for _ in range(1000):
        now[0] += 0.1
        writer.changed()
    assert (writer.writes - count) * report.cost <= lvcd.batch.report.MAX_SHARE * (now[0] - start) + report.cost


def _start_killable_batch(tmp_path: Path, shots: int) -> tuple[subprocess.Popen, Path]:
    outdir = tmp_path / "out"
    script = Path(__file__).with_name("fake_pool.py")
    process = subprocess.Popen([sys.executable, str(script), str(outdir), str(shots), "0.1"])
    deadline = time.time() + 60
    while time.time() < deadline and process.poll() is None:
        if sum(status == "done" for status in _records(outdir).values()) >= 3:
            return process, outdir
        time.sleep(0.02)
    process.kill()
    pytest.fail("the batch did not get going")


def _records(outdir: Path) -> dict[str, str]:
    """The shots' record statuses (not the hidden temporaries a record is written through, which come and go)."""
    records = {}
    for path in (outdir / ".lvcd-batch" / "shots").glob("*.json"):
        if not path.name.startswith("."):
            with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):  # replaced meanwhile
                records[path.stem] = json.loads(path.read_text()).get("status")
    return records


def test_a_batch_stopped_by_sigterm_writes_its_final_report(tmp_path):
    process, outdir = _start_killable_batch(tmp_path, 40)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 128 + signal.SIGTERM
    report = json.loads((outdir / "batch_report.json").read_text())
    assert report["finished"] is not None
    records = _records(outdir)
    statuses = {entry["name"]: entry["status"] for entry in report["shots"]}
    assert {name for name, status in records.items() if status == "done"} == {
        name for name, status in statuses.items() if status == "done"
    }
    # the one worker's shot may be "running" in the report without a record: the stop cut the record's write (its
    # temporary deleted by the writer, or left hidden when the stop came between the two)
    assert len(statuses) == 40 and 40 - len(records) - 1 <= report["totals"]["pending"] <= 40 - len(records)
    assert sum(status == "running" for status in statuses.values()) <= 1


def test_after_sigkill_the_report_is_valid_and_the_rerun_skips_what_finished(tmp_path):
    process, outdir = _start_killable_batch(tmp_path, 40)
    process.kill()
    process.wait(timeout=30)
    report = json.loads((outdir / "batch_report.json").read_text())  # the last one written: valid, every shot
    assert len(report["shots"]) == 40 and report["finished"] is None
    finished = {name for name, status in _records(outdir).items() if status == "done"}
    pool = FakePool()
    rerun = fake_batch(outdir, fake_shots(tmp_path, 40), pool)
    assert {name for name, entry in rerun.shots.items() if entry["status"] == "skipped"} == finished
    assert sorted(pool.ran) == sorted(set(rerun.shots) - finished) and not rerun.failed
    saved = json.loads((outdir / "batch_report.json").read_text())
    assert saved["totals"]["skipped"] == len(finished) and saved["totals"]["done"] == 40 - len(finished)


def test_planning_takes_a_videos_frame_count_from_its_container_without_decoding_it(tmp_path, monkeypatch):
    pytest.importorskip("av")
    from lvcd.io.frames import FrameSource

    shots = fake_shots(tmp_path, 1, frames=3)
    for suffix in ("mp4", "webm"):
        with open_writer(tmp_path / f"clip.{suffix}", fps=24) as writer:
            for index in range(30):
                writer.write(np.full((32, 32, 3), index * 8, np.uint8))
        shots.append(ShotSpec(suffix, tmp_path / "ref.png", tmp_path / f"clip.{suffix}"))
    video = type(FrameSource.open(tmp_path / "clip.mp4"))

    def decode_all(self):
        raise AssertionError("planning decoded the whole video to count its frames")

    monkeypatch.setattr(video, "__len__", decode_all)
    layout = BatchLayout(tmp_path / "out", "gif")
    report = BatchReport("", layout.outdir, "local", {s.name: new_entry(s.name, s.name) for s in shots})
    jobs, frames = plan_batch(shots, layout, {"model": "fake"}, BatchOptions("gif", progress=False), report)
    assert frames == {"shot0000": 3, "mp4": 30, "webm": 30}
    assert [job.name for job in jobs] == ["mp4", "webm", "shot0000"]  # longest first


def test_a_record_write_does_not_list_the_records_folder_and_killed_writers_leftovers_go(tmp_path, monkeypatch):
    """One record per shot: listing the folder on every write made a batch's record writes O(shots^2)."""
    import os

    from lvcd.batch.layout import lock_outdir, read_record, write_record

    layout = BatchLayout(tmp_path / "out", "gif")
    left = layout.record_path("old").with_name(".old.json.partial-1a2b3c4d.json")  # the atomic writer's temporary
    left.parent.mkdir(parents=True)
    left.write_text("{")  # unlocked: its writer was killed
    os.utime(left, (time.time() - 3600, time.time() - 3600))
    user_file = left.parent / ".notes.txt"  # not lvcd's: never removed
    user_file.write_text("mine")
    with monkeypatch.context() as patch:
        patch.setattr(Path, "glob", lambda *args: pytest.fail("listed the folder"))
        patch.setattr(os, "scandir", lambda *args: pytest.fail("listed the folder"))
        write_record(layout.record_path("a"), {"status": "done"})
    assert read_record(layout.record_path("a")) == {"status": "done"}
    os.close(lock_outdir(layout))
    assert sorted(p.name for p in left.parent.iterdir()) == [".notes.txt", "a.json"]


def test_a_stopped_batchs_report_takes_a_shot_recorded_done_as_done(tmp_path):
    """The worker recorded the shot done as the batch stopped, before its result reached the dispatcher: the final
    report said "running" where the record (and a re-run) say done (seen as a flaky report test)."""
    from types import SimpleNamespace

    from lvcd.batch.layout import write_record
    from lvcd.batch.report import BatchReport, new_entry
    from lvcd.batch.run import _settle_running
    from lvcd.batch.shot import ShotJob

    jobs = [
        ShotJob(SimpleNamespace(name=n), tmp_path / n, tmp_path / "w" / n, tmp_path / f"{n}.json", "f1", False, False)
        for n in "ab"
    ]
    shots = {job.output.name: new_entry(job.output.name, job.output.name) for job in jobs}
    for entry in shots.values():
        entry["status"] = "running"
    write_record(jobs[0].record, {"status": "done", "fingerprint": "f1", "frames": 7, "worker": "w0"})
    write_record(jobs[1].record, {"status": "done", "fingerprint": "another job's", "frames": 7})
    report = BatchReport(None, tmp_path, "local", shots)
    _settle_running(report, jobs)
    assert report.shots["a"]["status"] == "done" and report.shots["a"]["frames"] == 7
    assert report.shots["b"]["status"] == "running"
