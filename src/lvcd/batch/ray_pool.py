"""The cluster scheduler: a pool of Ray actors, each holding one model (on one GPU, or on CPUs).

Ray places the actors on the cluster's machines and reports a dead one (killed, out of memory, node lost) as an
actor error; :func:`lvcd.batch.dispatch.dispatch` then gives its shot to the next free actor, which resumes it from
the shot's work directory (OUTDIR must be storage every machine sees) while a new actor replaces the dead one.
``ray`` is an optional dependency: ``pip install 'lvcd[ray]'``.

    >>> pool = RayPool(ModelSpec("svd.safetensors", "lvcd.ckpt"), address="auto")   # doctest: +SKIP
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from lvcd.batch.dispatch import WorkerLost, WorkerPool
from lvcd.batch.shot import ModelSpec, ShotJob, ShotResult, ShotRunner
from lvcd.errors import InputError, LVCDError

ORPHAN_POLL_S = 0.2


def exit_when_orphaned(poll_s: float = ORPHAN_POLL_S) -> threading.Thread:
    """End this process when its machine's raylet is gone (the pid Ray gives its workers in ``RAY_RAYLET_PID``; without
    it, this process's parent).

    A private ``--ray-address local`` instance dies with its batch command, even a killed one, but its actors went on
    running their shots, wrote outputs and records while no batch held OUTDIR's lock, and raced the next run's
    workers. Nothing in an actor is lost by ending it: its shot resumes from the window files, as after any kill.
    Watching the raylet itself (not the parent) keeps a worker started through a wrapper process (``uv run``, conda,
    a profiler) from outliving it, and from ending when such a wrapper ends first."""
    raylet = os.environ.get("RAY_RAYLET_PID", "")
    if raylet.isdecimal():
        pid = int(raylet)

        def alive() -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:  # alive, owned by another user
                return True
            return not _is_zombie(pid)
    else:
        parent = os.getppid()

        def alive() -> bool:
            return os.getppid() == parent

    def watch() -> None:
        while alive():
            time.sleep(poll_s)
        os._exit(1)

    watcher = threading.Thread(target=watch, name="lvcd-exit-when-orphaned", daemon=True)
    watcher.start()
    return watcher


def _is_zombie(pid: int) -> bool:
    """A process that has ended but is not reaped yet (a container's init may never reap a dead raylet)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # no /proc (not Linux): signal 0 said it exists
    return stat[stat.rindex(")") + 2] == "Z"


class RayShotWorker:
    """The actor: one ShotRunner (one loaded model) for its whole life, which ends with its machine's raylet."""

    def __init__(self, model: ModelSpec, label: str):
        exit_when_orphaned()
        self.runner = ShotRunner(model, label)

    def ready(self) -> str:
        return self.runner.worker

    def run(self, job: ShotJob) -> ShotResult:
        return self.runner.run(job)


def import_ray():
    try:
        import ray
    except ImportError:
        raise InputError("--ray needs the ray package: pip install 'lvcd[ray]' (or pip install ray)") from None
    return ray


def _actor_error_text(err: BaseException) -> str:
    """One line: the cause of a failed actor start (its last line), or the first sentence of a death notice."""
    cause = getattr(err, "cause", None)
    if cause is not None:
        lines = str(cause).strip().splitlines()
        return lines[-1] if lines else type(cause).__name__
    text = " ".join(str(err).split())
    return text.split(". ")[0] if text else type(err).__name__


class RayPool(WorkerPool):
    """``workers`` actors (default: one per GPU of the cluster, or one per ``cpus_per_worker`` CPUs without GPUs).

    address: ``auto`` (the running cluster: ``ray start`` on this machine, or $RAY_ADDRESS), ``local`` (a private
    Ray instance on this machine), or a cluster address such as ``ray://head:10001``. When Ray is already
    initialised in this process, that connection is used.
    """

    def __init__(
        self,
        model: ModelSpec,
        address: str = "auto",
        workers: int | None = None,
        gpus_per_worker: float | None = None,
        cpus_per_worker: float = 1,
    ):
        self.model, self.address = model, address
        self.requested, self.gpus_per_worker, self.cpus_per_worker = workers, gpus_per_worker, cpus_per_worker
        self.size, self.workers = 0, []
        self._ray = None
        self._own_ray = False
        self._actors: list = []
        self._actor_class = None
        self._refs: dict = {}  # object ref -> (slot, shot name)
        self._generation: list[int] = []

    def _connect(self):
        ray = import_ray()
        if not ray.is_initialized():
            try:
                if self.address == "local":
                    ray.init(include_dashboard=False)
                else:
                    ray.init(address=self.address)
            except ConnectionError as err:
                raise LVCDError(
                    f"no Ray cluster at {self.address!r} ({_actor_error_text(err)}); start one with `ray start --head` "
                    "(and `ray start --address HEAD:6379` on each worker machine), or use --ray-address local"
                ) from None
            self._own_ray = True
        return ray

    def _plan(self, resources: dict) -> None:
        gpus, cpus = float(resources.get("GPU", 0)), float(resources.get("CPU", 0))
        if self.gpus_per_worker is None:
            self.gpus_per_worker = 1 if gpus > 0 else 0
        if not self.gpus_per_worker and not self.cpus_per_worker > 0:
            raise InputError(
                f"--cpus-per-worker {self.cpus_per_worker:g}: a CPU worker needs CPUs; give 1 or more (or GPU workers: "
                "--gpus-per-worker)"
            )
        capacity = int(gpus // self.gpus_per_worker) if self.gpus_per_worker else int(cpus // self.cpus_per_worker)
        self.size = self.requested or max(capacity, 1)
        if self.size > capacity:
            kind = f"{gpus:g} GPUs" if self.gpus_per_worker else f"{cpus:g} CPUs"
            raise InputError(
                f"the Ray cluster has {kind}, room for {capacity} workers, but {self.size} were asked for; "
                "lower --workers or --gpus-per-worker / --cpus-per-worker, or add machines"
            )

    def _new_actor(self, slot: int):
        ray = self._ray
        device = "cuda" if self.gpus_per_worker else "cpu"
        threads = None if self.gpus_per_worker else (self.model.threads or max(1, int(self.cpus_per_worker)))
        if self._actor_class is None:  # lvcd itself retries a dead worker's shot: Ray restarts nothing
            self._actor_class = ray.remote(
                num_cpus=self.cpus_per_worker, num_gpus=self.gpus_per_worker, max_restarts=0, max_task_retries=0
            )(RayShotWorker)
        label = f"ray-{slot}" + (f".{self._generation[slot]}" if self._generation[slot] else "")
        return self._actor_class.remote(self.model.with_device(device, threads), label)

    def connect(self) -> None:
        """Reach the cluster now rather than in :meth:`start`: a cluster that is not there, or with no room for the
        workers asked for, is said before slower work (the metric networks of ``--evaluate``). :meth:`close` lets it
        go."""
        if self._ray is None:
            self._ray = self._connect()
            self._plan(self._ray.cluster_resources())

    def start(self) -> None:
        self.connect()
        ray = self._ray
        self._plan(ray.cluster_resources())  # again: machines may have joined (or left) since connect
        self._generation = [0] * self.size
        self._actors = [self._new_actor(slot) for slot in range(self.size)]
        self.workers = [f"ray-{slot}" for slot in range(self.size)]
        try:
            self.workers = ray.get([actor.ready.remote() for actor in self._actors])
        except ray.exceptions.RayError as err:
            raise LVCDError(f"a Ray worker could not load the model: {_actor_error_text(err)}") from None

    def submit(self, slot: int, job: ShotJob) -> None:
        if self._actors[slot] is None:  # a lost actor's slot: a new actor loads the model, then runs the shot
            self._actors[slot] = self._new_actor(slot)
        self._refs[self._actors[slot].run.remote(job)] = (slot, job.name)

    def wait(self, timeout: float) -> list[tuple[int, ShotResult | WorkerLost]]:
        ray = self._ray
        if not self._refs:
            return []
        ready, _ = ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        if ready:
            pending = [ref for ref in self._refs if ref not in ready]
            ready += ray.wait(pending, num_returns=len(pending), timeout=0)[0] if pending else []
        outcomes = []
        for ref in ready:
            slot, name = self._refs.pop(ref)
            try:
                result = ray.get(ref)
                self.workers[slot] = result.worker
                outcomes.append((slot, result))
            except ray.exceptions.RayActorError as err:
                outcomes.append((slot, WorkerLost(self.workers[slot], _actor_error_text(err))))
            except ray.exceptions.RayError as err:  # the runner itself failed (it catches every shot error)
                failed = ShotResult(name, "failed", self.workers[slot], error=f"Ray: {_actor_error_text(err)}")
                outcomes.append((slot, failed))
        return outcomes

    def replace(self, slot: int) -> None:
        try:
            self._ray.kill(self._actors[slot], no_restart=True)
        except Exception:  # noqa: BLE001 - it is dead already
            pass
        self._generation[slot] += 1
        self._actors[slot] = None
        self.workers[slot] = f"ray-{slot}.{self._generation[slot]} (not started)"

    def close(self) -> None:
        if self._ray is None:
            return
        for actor in filter(None, self._actors):
            try:
                self._ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - best effort at shutdown
                pass
        if self._own_ray:
            self._ray.shutdown()
        self._ray, self._own_ray, self._actors = None, False, []  # closed once: a second close does nothing
