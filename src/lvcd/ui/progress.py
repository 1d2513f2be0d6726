"""The page's progress: one bar over the whole job with the time left, and the line of jobs waiting their turn.

A job's work is counted in units (one unit: one denoising step of one window): sampling is windows x steps units,
then each decoded frame and each frame of the side-by-side video adds its share. The bar is the share of units done,
so it only moves forward across the stages. The time left is measured on the job itself (seconds per step, then
seconds per decoded frame); before the first step it is what the last job at the same size and sampler measured on
this server, if any (the model's cost grows faster than its area, so a guess from another size would mislead).

>>> tracker = JobProgress()                                  # doctest: +SKIP
>>> tracker.plan(windows=2, steps=25, frames=30, key=((320, 576), "euler"))
>>> tracker.sampled(progress)                                # (units done, units in all, text)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from lvcd.errors import LVCDError

DECODE_UNITS = 0.5  # a decoded frame, in denoising steps of a window, until this server has measured it at a size
# (the demo model on a CPU: 0.3 at 256x256, 1.3 at 128x128; the official model on a GPU: about 0.2)
SIDE_BY_SIDE_UNITS = 0.02  # a frame of the side-by-side video: encoding only
Key = tuple[tuple[int, int], str]  # (processing size, sampler): what a step's time depends on, on one server


@dataclass(frozen=True)
class Speed:
    """Seconds of one denoising step of one window, and of one decoded frame, measured on this server."""

    step_seconds: float
    frame_seconds: float | None = None


def duration(seconds: float) -> str:
    """``75`` -> ``1:15``; ``3725`` -> ``1:02:05``."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class JobProgress:
    """One job's progress: ``plan`` it, then report every step, decoded frame and side-by-side frame; each report
    returns (units done, units in all, text), with units done never going back."""

    def __init__(self, speeds: dict[Key, Speed] | None = None, clock: Callable[[], float] = time.monotonic):
        self.clock = clock
        self.speeds = {} if speeds is None else speeds
        self.started = clock()
        self.key: Key | None = None
        self.windows = self.steps = self.frames = 0
        self.decode_units = DECODE_UNITS
        self.done = 0.0
        self.sampled_steps = 0
        self.sampling_ended: float | None = None  # when the last step was reported
        self.decoded_frames = 0
        self.decoding_ended: float | None = None

    def plan(self, windows: int, steps: int, frames: int, key: Key | None = None) -> None:
        self.windows, self.steps, self.frames, self.key = windows, steps, frames, key
        known = self.speeds.get(key) if key is not None else None
        if known is not None and known.frame_seconds is not None:
            self.decode_units = known.frame_seconds / known.step_seconds

    @property
    def total(self) -> float:
        return self.windows * self.steps + self.frames * (self.decode_units + SIDE_BY_SIDE_UNITS)

    def starting(self) -> tuple[float, float, str]:
        left = self.seconds_left()
        estimate = (
            f"about {duration(left)} in all, as measured on the last job of this size here"
            if left is not None
            else "the time it takes is known after its first step"
        )
        return self._report(0, f"preparing the shot · {estimate}")

    def sampled(self, progress) -> tuple[float, float, str]:
        """After a denoising step (a ``lvcd.pipeline.SamplingProgress``, 0-based window and step)."""
        self.windows, self.steps = progress.windows, progress.steps  # the pipeline's own plan prevails
        self.sampled_steps = progress.window * progress.steps + progress.step + 1
        self.sampling_ended = self.clock()
        window, step = f"{progress.window + 1}/{progress.windows}", f"{progress.step + 1}/{progress.steps}"
        text = f"sampling · window {window} · step {step}"
        return self._report(self.sampled_steps, text)

    def decoded(self, frame: int, frames: int) -> tuple[float, float, str]:
        """After ``frame`` of ``frames`` frames are decoded and written."""
        self.sampled_steps = self.windows * self.steps
        self.frames, self.decoded_frames, self.decoding_ended = frames, frame, self.clock()
        units = self.sampled_steps + frame * self.decode_units
        return self._report(units, f"decoding · frame {frame}/{frames}")

    def side_by_side(self, frame: int, frames: int) -> tuple[float, float, str]:
        units = self.windows * self.steps + frames * self.decode_units + frame * SIDE_BY_SIDE_UNITS
        return self._report(units, f"writing the side-by-side video · frame {frame}/{frames}")

    def _report(self, units: float, text: str) -> tuple[float, float, str]:
        self.done = max(self.done, units)
        left = self.seconds_left()
        if self.sampled_steps and left is not None:
            text += f" · about {duration(left)} left"
        return self.done, self.total, text

    def measured(self) -> Speed | None:
        """This job's speed so far (None before its first step)."""
        if not self.sampled_steps or self.sampling_ended is None:
            return None
        step = (self.sampling_ended - self.started) / self.sampled_steps  # preparing the shot counts with the steps
        frame = None
        if self.decoded_frames and self.decoding_ended is not None:
            frame = (self.decoding_ended - self.sampling_ended) / self.decoded_frames
        return Speed(step, frame)

    def seconds_left(self) -> float | None:
        speed = self.measured()
        known = self.speeds.get(self.key) if self.key is not None else None
        if speed is None and known is None:
            return None
        step = speed.step_seconds if speed is not None else known.step_seconds
        frame = (speed.frame_seconds if speed is not None else None) or (known and known.frame_seconds)
        frame = frame or step * self.decode_units
        steps_left = self.windows * self.steps - self.sampled_steps
        frames_left = self.frames - self.decoded_frames
        return steps_left * step + frames_left * frame + self.frames * SIDE_BY_SIDE_UNITS * step


class LineFull(LVCDError):
    """A job asked while the page's line holds as many waiting jobs as it takes."""


class Line:
    """This server's jobs in the order they asked: one at a time on the model, the others wait their turn and are
    told how many jobs are ahead and how long the running one has left. Keeps the speeds the jobs measured."""

    def __init__(self, poll_seconds: float = 1.0, max_waiting: int | None = None):
        self.poll_seconds = poll_seconds
        self.max_waiting = max_waiting  # more jobs than this waiting: the next is refused (lvcd ui --max-queue)
        self.speeds: dict[Key, Speed] = {}
        self._changed = threading.Condition()
        self._waiting: deque[object] = deque()
        self._running: tuple[threading.Event, JobProgress] | None = None

    @contextlib.contextmanager
    def turn(self, cancel: threading.Event, tracker: JobProgress, tell: Callable[[str], None]) -> Iterator[None]:
        """Wait for this job's turn (``tell`` gets what to show meanwhile), run the block, then let the next one in.
        Raises ``JobCancelled`` when ``cancel`` is set while waiting."""
        from lvcd.ui.jobs import JobCancelled

        ticket = object()
        with self._changed:
            busy = self._running is not None or self._waiting
            if busy and self.max_waiting is not None and len(self._waiting) >= self.max_waiting:
                raise LineFull(
                    f"this page already has {len(self._waiting)} job{'s' * (len(self._waiting) != 1)} waiting, the "
                    "most it takes (one job runs at a time); try again when they are done"
                )
            self._waiting.append(ticket)
        try:
            while True:
                with self._changed:
                    if cancel.is_set():  # first: a job stopped while it waited never takes its turn
                        raise JobCancelled
                    if self._running is None and self._waiting[0] is ticket:
                        self._waiting.popleft()
                        self._running = (cancel, tracker)
                        self._changed.notify_all()  # the others move up a place
                        break
                    text = self._waiting_text(self._waiting.index(ticket))
                tell(text)
                with self._changed:
                    self._changed.wait(self.poll_seconds)
        except BaseException:
            with self._changed:
                self._waiting.remove(ticket)
                self._changed.notify_all()
            raise
        tracker.started = tracker.clock()  # its time counts from its turn
        try:
            yield
        finally:
            with self._changed:
                self._running = None
                speed = tracker.measured()
                if speed is not None and tracker.key is not None:
                    known = self.speeds.get(tracker.key)
                    frame = speed.frame_seconds or (known.frame_seconds if known else None)
                    self.speeds[tracker.key] = Speed(speed.step_seconds, frame)
                self._changed.notify_all()

    def _waiting_text(self, waiting_ahead: int) -> str:
        if self._running is None:  # between two jobs: the first in line is about to start
            if not waiting_ahead:
                return "starting"
            return f"waiting: {waiting_ahead} job{'s' * (waiting_ahead != 1)} ahead of yours (one job runs at a time)"
        running_cancel, running = self._running
        ahead = waiting_ahead + 1
        jobs = f"{ahead} job{'s' * (ahead != 1)} ahead of yours"
        if running_cancel.is_set():
            return f"waiting: {jobs}; the running one was stopped and ends after its current step"
        left = running.seconds_left()
        timing = f"has about {duration(left)} left" if left is not None else "has not finished its first step yet"
        return f"waiting: {jobs} (one job runs at a time); the running one {timing}"
