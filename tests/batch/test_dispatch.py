"""The scheduler-independent dispatch loop on a scripted pool: free workers first, retries, giving up."""

from __future__ import annotations

from pathlib import Path

from lvcd.batch import ShotJob, ShotResult, ShotSpec, WorkerLost, WorkerPool, dispatch


class ScriptedPool(WorkerPool):
    """Two slots; each shot's attempts end as scripted ('lost' or 'done'), one outcome per wait()."""

    def __init__(self, script: dict[str, list[str]], last_slot_first: bool = False):
        self.last_slot_first = last_slot_first
        self.size, self.workers = 2, ["w0", "w1"]
        self.script = {name: list(outcomes) for name, outcomes in script.items()}
        self.running: dict[int, str] = {}
        self.log: list[tuple[str, ...]] = []

    def start(self) -> None:
        pass

    def submit(self, slot: int, job: ShotJob) -> None:
        self.running[slot] = job.name
        self.log.append(("submit", job.name, self.workers[slot]))

    def wait(self, timeout: float):
        slot = max(self.running) if self.last_slot_first else min(self.running)
        name = self.running.pop(slot)
        if self.script[name].pop(0) == "lost":
            return [(slot, WorkerLost(self.workers[slot], "killed"))]
        return [(slot, ShotResult(name, "done", self.workers[slot], frames=1))]

    def replace(self, slot: int) -> None:
        self.workers[slot] += "'"
        self.log.append(("replace", self.workers[slot]))

    def close(self) -> None:
        pass


def _job(name: str) -> ShotJob:
    shot = ShotSpec(name, Path("ref.png"), Path("lineart"))
    return ShotJob(shot, Path(f"{name}.mp4"), Path(f"work/{name}"), Path(f"{name}.json"), "fp")


def test_a_shot_is_retried_until_it_has_lost_more_workers_than_retries():
    pool = ScriptedPool({"a": ["lost", "lost", "done"], "b": ["done"], "c": ["lost", "lost", "lost"]})
    results = {}
    dispatch([_job(n) for n in "abc"], pool, lambda job, result, lost: results.update({job.name: (result, lost)}))
    assert results["a"][0].status == "done" and results["a"][1] == ["w0 was lost (killed)", "w0' was lost (killed)"]
    assert results["b"][0].status == "done" and results["b"][1] == []
    assert results["c"][0].status == "failed" and len(results["c"][1]) == 3
    assert "gave up after 3 workers died" in results["c"][0].error


def test_a_lost_shot_goes_to_a_worker_that_is_up_before_a_replacement():
    pool = ScriptedPool({"a": ["lost", "done"], "b": ["done"]}, last_slot_first=True)
    dispatch([_job("a"), _job("b")], pool, lambda job, result, lost: None)
    # b finishes on w1, then w0 dies running a: a goes to the idle w1, not to w0's slot (a new worker would load first).
    assert pool.log == [("submit", "a", "w0"), ("submit", "b", "w1"), ("replace", "w0'"), ("submit", "a", "w1")]
