"""`lvcd batch --ray` on a local Ray cluster started by the test (2 CPUs, bound to 127.0.0.1 only)."""

from __future__ import annotations

import os

import pytest

from conftest import TINY_CONFIG
from lvcd.batch import BatchOptions, ModelSpec, RayPool, ShotSettings, model_identity, read_shots, run_batch

from .conftest import (
    LENGTHS,
    assert_same_frames,
    batch_cli,
    in_thread,
    kill_worker_mid_shot,
    read_report,
    shot_entries,
    write_manifest,
)


@pytest.fixture(scope="module")
def ray_cluster():
    """A private Ray instance with 2 CPUs on the loopback address only (never the machine's LAN address)."""
    saved = {key: os.environ.get(key) for key in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_USAGE_STATS_ENABLED")}
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # read when ray is imported: Ray then uses 127.0.0.1
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    ray = pytest.importorskip("ray", reason="the Ray path needs `pip install 'lvcd[ray]'`")
    from ray._private import ray_constants, services

    ray_constants.ENABLE_RAY_CLUSTER = False  # the same, should ray have been imported before this fixture
    assert services.get_node_ip_address() == "127.0.0.1"
    for attempt in range(3):  # Ray gives its node a fixed 30 s to come up: a loaded machine may need another try
        try:
            ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
            break
        except Exception as err:  # noqa: BLE001 - only Ray's own startup timeout is retried (and then skipped)
            ray.shutdown()
            if "timed out during startup" not in str(err):
                raise
            if attempt == 2:
                pytest.skip("Ray's node did not start within its fixed 30 s, 3 times: this machine is overloaded")
    assert "node:127.0.0.1" in ray.cluster_resources()
    yield ray
    ray.shutdown()
    for key, value in saved.items():
        os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)


def test_ray_batch_is_byte_identical_to_the_local_batch(ray_cluster, local_run, film, tiny_weights, tmp_path):
    outdir = tmp_path / "out"
    result = batch_cli(tiny_weights, write_manifest(tmp_path / "film.json", film.values()), outdir, "--ray")
    assert result.exit_code == 0, result.output
    report = read_report(outdir)
    assert report["scheduler"] == "ray" and len(report["workers"]) == 2
    entries = shot_entries(report)
    assert {entry["status"] for entry in entries.values()} == {"done"}
    assert {entry["worker"] for entry in entries.values()} == set(report["workers"])  # both workers were used
    for count in LENGTHS:
        assert_same_frames(outdir / f"shot{count}", local_run / f"shot{count}", count)


def test_killed_ray_worker_has_its_shot_resumed_on_another(ray_cluster, local_run, film, tiny_weights, tmp_path):
    """The actor running shot33 is SIGKILLed after 2 of its 3 windows; another actor finishes it from disk."""
    shots = read_shots(write_manifest(tmp_path / "film.json", [film["shot33"], film["shot2"]]), ShotSettings(steps=1))
    svd, lvcd = str(tiny_weights["svd"]), str(tiny_weights["lvcd"])
    pool = RayPool(ModelSpec(svd, lvcd, str(TINY_CONFIG)), workers=2)
    outdir = tmp_path / "out"
    options = BatchOptions(output_format="png", progress=False, scheduler="ray")
    identity = model_identity(svd, lvcd, str(TINY_CONFIG), None)
    thread, box = in_thread(run_batch, shots, outdir, pool, identity, options)
    seen = kill_worker_mid_shot(outdir, "shot33", windows=2, batch=(thread, box))
    thread.join(timeout=300)
    assert "error" not in box, box
    entries = shot_entries(read_report(outdir))
    entry = entries["shot33"]
    assert entry["status"] == "done" and entry["attempts"] == 2 and len(entry["lost_workers"]) == 1
    assert entry["worker"].split(" ")[0] != entry["lost_workers"][0].split(" ")[0]  # finished by another worker
    assert entry["windows"] == 3 and entry["windows_resumed"] >= seen >= 2  # the early windows were not recomputed
    assert_same_frames(outdir / "shot33", local_run / "shot33", 33)
    assert entries["shot2"]["status"] == "done"
