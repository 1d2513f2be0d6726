"""The embedded scheduler: workers on this machine, no cluster.

- :class:`InProcessPool`: one worker in this process (one CPU worker, or the one GPU).
- :class:`ProcessPool`: one process per worker (one per visible GPU by default, or ``--workers N`` on CPU), each
  loading the model once. A worker process that dies is replaced, and its shot resumes on the next free worker.

:func:`local_devices` chooses the devices: one per visible GPU, else one CPU worker.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.connection import wait as wait_connections

from lvcd.batch.dispatch import WorkerLost, WorkerPool
from lvcd.batch.shot import ModelSpec, ShotJob, ShotResult, ShotRunner
from lvcd.errors import LVCDError


def local_devices(device: str | None, workers: int | None) -> list[str]:
    """One device per worker: every visible GPU (or ``workers`` of them, round robin) for ``cuda`` or no device;
    ``workers`` CPU workers (default 1) for ``cpu``; a given ``cuda:N`` is used by every worker."""
    import torch

    from lvcd.devices import default_device

    device = str(default_device(device))
    if device == "cuda":
        count = torch.cuda.device_count()
        return [f"cuda:{i % count}" for i in range(workers or count)]
    return [device] * (workers or 1)


def _error_text(err: BaseException) -> str:
    return str(err) if isinstance(err, LVCDError) else f"{type(err).__name__}: {err}"


class InProcessPool(WorkerPool):
    """One worker in this process: ``wait`` runs the submitted shot right here (Ctrl-C stops it at once)."""

    def __init__(self, model: ModelSpec, label: str = "local"):
        self.model, self.label = model, label
        self.size = 1
        self.workers = [label]
        self._runner: ShotRunner | None = None
        self._job: ShotJob | None = None

    def start(self) -> None:
        self._runner = ShotRunner(self.model, self.label)
        self.workers = [self._runner.worker]

    def submit(self, slot: int, job: ShotJob) -> None:
        self._job = job

    def wait(self, timeout: float) -> list[tuple[int, ShotResult | WorkerLost]]:
        job, self._job = self._job, None
        return [] if job is None else [(0, self._runner.run(job))]

    def replace(self, slot: int) -> None:  # this process is never lost: a shot's failures come back as results
        raise RuntimeError("the in-process worker cannot be lost")

    def close(self) -> None:
        self._runner = None


def _exit_with_parent(parent_pid: int, seconds: float = 1.0) -> None:
    """End this worker when the batch process is gone (killed): an orphan would race the next run on its shot."""
    while True:
        time.sleep(seconds)
        if os.getppid() != parent_pid:
            os._exit(1)


def _die_with_parent(parent_pid: int) -> None:
    """End this worker the moment the batch process dies (killed): an orphan that finished its shot would race the
    next run on it. On Linux the kernel sends SIGKILL at once (PR_SET_PDEATHSIG); elsewhere a thread checks every
    second."""
    try:
        import ctypes

        if ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL) == 0:  # 1: PR_SET_PDEATHSIG
            if os.getppid() != parent_pid:  # the batch died before the request took hold
                os._exit(1)
            return
    except (OSError, AttributeError):  # not Linux: no prctl
        pass
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()


def _process_main(model: ModelSpec, label: str, conn, parent_pid: int) -> None:
    """A worker process: load the model once, then run the shots sent to it until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers
    _die_with_parent(parent_pid)
    try:
        runner = ShotRunner(model, label)
    except BaseException as err:  # noqa: BLE001 - reported to the parent, which stops the batch
        conn.send(("error", _error_text(err)))
        return
    conn.send(("ready", runner.worker))
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        conn.send(("result", runner.run(job)))


class ProcessPool(WorkerPool):
    """One spawned process per device in ``devices``, each holding one model."""

    def __init__(self, model: ModelSpec, devices: list[str], threads: int | None = None):
        cpu_workers = sum(d == "cpu" for d in devices)
        default_threads = max(1, (os.cpu_count() or 1) // max(cpu_workers, 1))
        self.models = [model.with_device(d, threads or (default_threads if d == "cpu" else None)) for d in devices]
        self.size = len(devices)
        self.workers = [f"{d}-{i}" for i, d in enumerate(devices)]
        self._context = multiprocessing.get_context("spawn")  # no fork: CUDA and threads do not survive one
        self._processes: list = [None] * self.size
        self._conns: list = [None] * self.size
        self._generation = [0] * self.size
        self._busy: set[int] = set()

    def _spawn(self, slot: int) -> None:
        if self._conns[slot] is not None:  # a worker that died idle
            self._conns[slot].close()
            self._processes[slot].join()
        parent, child = self._context.Pipe()
        label = self.workers[slot].split(" ")[0]
        process = self._context.Process(
            target=_process_main,
            args=(self.models[slot], label, child, os.getpid()),
            name=f"lvcd-{label}",
            daemon=True,
        )
        process.start()
        child.close()
        self._processes[slot], self._conns[slot] = process, parent

    def start(self) -> None:
        for slot in range(self.size):
            self._spawn(slot)
        for slot in range(self.size):  # the workers load in parallel; wait for all of them
            process, conn = self._processes[slot], self._conns[slot]
            wait_connections([conn, process.sentinel])
            if not conn.poll():
                raise LVCDError(
                    f"worker {self.workers[slot]} died while loading the model (exit code {process.exitcode})"
                )
            kind, message = conn.recv()
            if kind == "error":
                raise LVCDError(f"worker {self.workers[slot]} could not load the model: {message}")
            self.workers[slot] = message

    def submit(self, slot: int, job: ShotJob) -> None:
        if self._processes[slot] is None or not self._processes[slot].is_alive():
            self._spawn(slot)  # a lost worker's slot (or one that died idle): a new worker loads, then runs the shot
        self._conns[slot].send(job)
        self._busy.add(slot)

    def wait(self, timeout: float) -> list[tuple[int, ShotResult | WorkerLost]]:
        watched = {}
        for slot in self._busy:
            watched[self._conns[slot]], watched[self._processes[slot].sentinel] = slot, slot
        outcomes: dict[int, ShotResult | WorkerLost] = {}
        for ready in wait_connections(list(watched), timeout=timeout):
            slot = watched[ready]
            if slot not in outcomes:
                outcome = self._receive(slot)
                if outcome is not None:
                    outcomes[slot] = outcome
                    self._busy.discard(slot)
        return list(outcomes.items())

    def _receive(self, slot: int) -> ShotResult | WorkerLost | None:
        """The slot's result, its loss, or None (only a replacement's 'ready': its shot is still running)."""
        process, conn = self._processes[slot], self._conns[slot]
        try:
            message = conn.recv() if conn.poll() else None
        except (EOFError, OSError):
            message = None
        if message is not None and message[0] == "result":
            return message[1]
        if message is not None and message[0] == "ready":
            self.workers[slot] = message[1]
            return None
        if message is None and process.is_alive():
            return None
        process.join(timeout=5)
        reason = message[1] if message is not None else f"process exit code {process.exitcode}"
        return WorkerLost(self.workers[slot], reason)

    def replace(self, slot: int) -> None:
        self._busy.discard(slot)
        old = self._processes[slot]
        if old.is_alive():
            old.kill()
        old.join()
        self._conns[slot].close()
        self._processes[slot] = self._conns[slot] = None
        self._generation[slot] += 1
        self.workers[slot] = f"{self.models[slot].device}-{slot}.{self._generation[slot]} (not started)"

    def close(self) -> None:
        """Idle workers are told to stop; busy ones (Ctrl-C, an error) are killed: their shots resume next time."""
        for slot, (process, conn) in enumerate(zip(self._processes, self._conns, strict=True)):
            if process is None:
                continue
            if slot in self._busy:
                process.kill()
                continue
            try:
                conn.send(None)
            except (OSError, ValueError):
                process.kill()
        for process in self._processes:
            if process is None:
                continue
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
