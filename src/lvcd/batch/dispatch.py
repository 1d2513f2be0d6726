"""Handing shots to a pool of workers as they free up, whatever the pool is (a thread, processes, Ray actors).

A pool has ``size`` slots, each holding one worker (one loaded model). :func:`dispatch` keeps every slot busy
while shots remain. A worker that dies (killed, out of memory, its machine gone) comes back as :class:`WorkerLost`:
its shot goes back to the front of the queue for the next free worker, which resumes it from the shot's work
directory; the dead worker's slot is refilled with a new worker only when it is needed again (it is used last).
A shot that loses ``retries + 1`` workers fails.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from lvcd.batch.shot import ShotJob, ShotResult


@dataclass(frozen=True)
class WorkerLost:
    """A worker died while it held a shot (no result came back)."""

    worker: str
    reason: str


class WorkerPool(ABC):
    """Slots ``0 .. size-1``, each running one shot at a time."""

    size: int
    workers: list[str]  # one label per slot, for the report

    @abstractmethod
    def start(self) -> None:
        """Start the workers and load their models; raise LVCDError (one line) when they cannot load."""

    @abstractmethod
    def submit(self, slot: int, job: ShotJob) -> None: ...

    @abstractmethod
    def wait(self, timeout: float) -> list[tuple[int, ShotResult | WorkerLost]]:
        """Outcomes of submitted shots that ended within ``timeout`` seconds (possibly none)."""

    @abstractmethod
    def replace(self, slot: int) -> None:
        """The slot's worker was lost: clean it up; the next ``submit`` to the slot starts a new worker."""

    @abstractmethod
    def close(self) -> None:
        """Stop the workers this pool started."""


def dispatch(
    jobs: Iterable[ShotJob],
    pool: WorkerPool,
    on_result: Callable[[ShotJob, ShotResult, list[str]], None],
    retries: int = 2,
    on_start: Callable[[ShotJob, int], None] | None = None,
    poll_seconds: float = 1.0,
) -> None:
    """Run every job on the pool. ``on_start(job, slot)`` is called when a shot goes to a worker, and
    ``on_result(job, result, lost)`` with each shot's final result and the workers it lost on the way."""
    queue = deque(jobs)
    idle = list(range(pool.size))[::-1]
    busy: dict[int, ShotJob] = {}
    lost: dict[str, list[str]] = {}
    while queue or busy:
        while idle and queue:
            slot, job = idle.pop(), queue.popleft()
            pool.submit(slot, job)
            busy[slot] = job
            if on_start is not None:
                on_start(job, slot)
        for slot, outcome in pool.wait(poll_seconds):
            job = busy.pop(slot)
            if isinstance(outcome, WorkerLost):
                lost.setdefault(job.name, []).append(f"{outcome.worker} was lost ({outcome.reason})")
                if len(lost[job.name]) <= retries:
                    queue.appendleft(job)  # next free worker, resuming from the work directory
                else:
                    error = f"gave up after {len(lost[job.name])} workers died running it; last: {lost[job.name][-1]}"
                    on_result(job, ShotResult(job.name, "failed", outcome.worker, error=error), lost[job.name])
                pool.replace(slot)
                idle.insert(0, slot)  # used last: workers that are up already take the retried shot first
            else:
                on_result(job, outcome, lost.get(job.name, []))
                idle.append(slot)
