"""What a running batch says on stderr: a live bar on a terminal, plain status lines in a log.

On a terminal, one tqdm bar over the frames of the batch (frames/s, ETA) that moves while shots run, with a line
above it as each shot ends. Anywhere else (Slurm, Kubernetes, ``2> batch.log``) a bar redrawn with ``\\r`` is one
endless line, so the batch writes whole lines instead: one as each shot ends, a heartbeat when a minute has passed
without one, and a last one when the batch ends::

    done    sc001: 120 frames in 201.3 s on ray-1 (pid 77 on node2) [1/200 shots, 120/24000 frames, 0.6 frames/s, ETA 11:03:20]
    batch: 1/200 shots, 168/24000 frames (1%), 0.6 frames/s, ETA 11:02:05; running sc002 (5/12 windows)
    batch: 200/200 shots (2 failed), 24000/24000 frames in 11:04:10
"""

from __future__ import annotations

import sys
import threading
import time

from tqdm.auto import tqdm

from lvcd.batch.layout import read_record
from lvcd.batch.shot import ShotJob, ShotResult, finished_windows

HEARTBEAT_SECONDS = 60.0  # log mode: a status line when none was written for this long


def is_terminal(stream) -> bool:
    """Whether ``stream`` is a terminal (where a bar redrawn in place is readable)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class BatchProgress:
    """Progress over the frames of a batch. A background thread moves it as running shots finish windows (read from
    their work directories), so it also moves while one long shot runs in this process.

    ``frames``: the planned frame count of each shot to run (from container metadata for videos: a shot's own
    count replaces it when the shot ends). ``stream``: where to write (default stderr, looked up now).
    """

    def __init__(self, frames: dict[str, int], enabled: bool, stream=None, tick_seconds: float = 1.0):
        self.stream = sys.stderr if stream is None else stream
        self.frames = dict(frames)
        self.live = enabled and is_terminal(self.stream)
        self.log = enabled and not self.live
        self.done_frames = self.shown_frames = self.ended = self.failed = 0
        self.running: dict[str, ShotJob] = {}
        self._notes: dict[str, str] = {}  # name -> "name (3/12 windows)" of each running shot, as last read
        self.bar = tqdm(
            total=sum(self.frames.values()),
            desc="batch",
            unit="frame",
            file=self.stream,
            disable=not self.live,
            smoothing=0.1,
            dynamic_ncols=True,
        )
        self.started_at = self._last_line = time.monotonic()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        seconds = tick_seconds if self.live else min(tick_seconds, HEARTBEAT_SECONDS)
        self._ticker = threading.Thread(target=self._tick_loop, args=(seconds,), daemon=True)
        if enabled:
            self._ticker.start()

    def _tick_loop(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            try:
                if self.live or time.monotonic() - self._last_line >= HEARTBEAT_SECONDS:
                    self.tick()
            except Exception:  # noqa: BLE001 - progress is advice: a file mid-replacement must not stop the batch
                pass

    def tick(self) -> None:
        """Read how far the running shots are; redraw the bar (terminal) or write a heartbeat line (log)."""
        partial_frames, notes, counted = 0, {}, {}
        with self._lock:
            running = list(self.running.values())
        for job in running:
            record = read_record(job.record) or {}
            current = record.get("fingerprint") == job.fingerprint
            windows = record.get("windows") if current else None
            if current and isinstance(record.get("frames"), int):
                counted[job.name] = record["frames"]  # the worker's count replaces the planned one
            done = min(finished_windows(job.work_dir), windows) if windows else 0
            notes[job.name] = f"{job.name} ({done}/{windows} windows)" if windows else job.name
            frames = counted.get(job.name, self.frames[job.name])
            partial_frames += frames * done // (windows + 1) if windows else 0  # + 1: decoding
        with self._lock:
            for name, frames in counted.items():
                self._recount(name, frames)
            self._notes = {name: notes[name] for name in self.running if name in notes}
            self._show(self.done_frames + partial_frames)
            if self.log:
                self._line(f"batch: {self._counts()}; running {self._running_text()}")

    def started(self, job: ShotJob) -> None:
        with self._lock:
            self.running[job.name] = job
            self._notes[job.name] = job.name

    def finished(self, job: ShotJob, result: ShotResult) -> None:
        with self._lock:
            self.running.pop(job.name, None)
            self._notes.pop(job.name, None)
            self.ended += 1
            self.failed += result.status == "failed"
            if result.status == "done" and result.frames is not None:
                self._recount(job.name, result.frames)
            self.done_frames += self.frames[job.name]
            self._show(self.done_frames)
            line = _result_line(job, result)
            if self.log:
                self._line(f"{line} [{self._counts(brief=True)}]")
            elif self.live:
                self.bar.write(line, file=self.stream)

    def close(self) -> None:
        """Stop the ticker; the bar (or the last line) shows how the batch ended."""
        self._stop.set()
        if self._ticker.is_alive():
            self._ticker.join()
        with self._lock:
            self._notes.clear()
            self._show(self.done_frames)
            if self.log:
                elapsed = tqdm.format_interval(time.monotonic() - self.started_at)
                self._line(f"batch: {self._shot_counts()}, {self.done_frames}/{self.bar.total} frames in {elapsed}")
        self.bar.close()

    def _recount(self, name: str, frames: int) -> None:
        """A shot's frame count as its worker counted it (the planned one of a video is its container's)."""
        self.bar.total += frames - self.frames[name]
        self.frames[name] = frames

    def _show(self, frames: int) -> None:
        """Move the bar to ``frames`` (never back) with the current shot counts; caller holds the lock."""
        self.shown_frames = max(self.shown_frames, frames)
        if not self.live:
            return
        text = self._shot_counts() + (f"; running {self._running_text()}" if self._notes else "")
        self.bar.set_postfix_str(text, refresh=False)
        if self.shown_frames > self.bar.n:
            self.bar.update(self.shown_frames - self.bar.n)
        else:
            self.bar.refresh()

    def _shot_counts(self) -> str:
        text = f"{self.ended}/{len(self.frames)} shots"
        return text + (f" ({self.failed} failed)" if self.failed else "")

    def _running_text(self) -> str:
        notes = list(self._notes.values())
        return ", ".join(notes[:3]) + (f" and {len(notes) - 3} more" if len(notes) > 3 else "") if notes else "-"

    def _counts(self, brief: bool = False) -> str:
        """Shots, frames, rate and ETA for a log line."""
        total, elapsed = self.bar.total, time.monotonic() - self.started_at
        text = f"{self._shot_counts()}, {self.shown_frames}/{total} frames"
        if not brief and total:
            text += f" ({100 * self.shown_frames // total}%)"
        if self.shown_frames and elapsed > 0:
            rate = self.shown_frames / elapsed
            text += f", {rate:.3g} frames/s, ETA {tqdm.format_interval((total - self.shown_frames) / rate)}"
        return text

    def _line(self, text: str) -> None:
        """One whole line, flushed at once (log collectors read line by line)."""
        self.stream.write(text + "\n")
        self.stream.flush()
        self._last_line = time.monotonic()


def _result_line(job: ShotJob, result: ShotResult) -> str:
    if result.status != "done":
        return f"FAILED  {job.name}: {result.error}"
    resumed = f", resumed {result.windows_resumed}/{result.windows} windows" if result.windows_resumed else ""
    plural = "s" if result.frames != 1 else ""
    line = f"done    {job.name}: {result.frames} frame{plural} in {result.seconds:.1f} s on {result.worker}"
    return line + resumed + ("; line art: " + result.lineart_levels if result.lineart_levels else "")
