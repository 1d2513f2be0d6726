"""`lvcd batch` throughput: shots/hour and frames/s of the local and the Ray path with 1 and 2 workers (JSON out).

Each run colorizes the same synthetic shots into a fresh folder (PNG frames) with ``lvcd.batch.run_batch``:

- ``local`` 1 worker: ``InProcessPool`` (the model in this process); 2 workers: ``ProcessPool`` (2 processes);
- ``ray`` n workers: ``RayPool`` on a private Ray instance started here with n CPUs, bound to 127.0.0.1.

Every worker uses ``--threads`` torch threads (default 1), so the runs do the same arithmetic. ``startup_s`` is the
pool's start (processes/actors, model loading), ``run_s`` the time from then to the last shot; throughput figures
use ``run_s``. ``ray_overhead`` compares Ray with the local path at the same worker count: the extra run time per
shot, relative to the local run time per shot (the target is under 5% on shots of 30+ frames). Without ``--svd``
the tiny test model is used: real mechanics (windows, decoding, writing, scheduling), meaningless colours.

    python benchmarks/batch.py --lengths 30,40,50,60 --steps 1
    python benchmarks/batch.py --svd svd.safetensors --lvcd lvcd.ckpt --config svd-lvcd --device cuda --modes local:1
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "tiny"


def write_shots(folder: Path, lengths: list[int], size_hw: tuple[int, int]) -> Path:
    """Synthetic shots (moving rings, dark lines) and a JSON manifest of them; returns the manifest."""
    height, width = size_hw
    yy, xx = np.mgrid[:height, :width]
    entries = []
    for number, count in enumerate(lengths):
        lineart = folder / f"shot{number:02d}"
        lineart.mkdir(parents=True)
        for index in range(count):
            cx = width * (0.2 + 0.6 * index / max(count, 1))
            ring = np.abs(np.hypot(xx - cx, yy - height / 2) - height / 4) < 1.5
            Image.fromarray(np.where(ring, 0, 255).astype(np.uint8)).save(lineart / f"{index:05d}.png")
        colour = np.random.default_rng(number).integers(0, 255, (height, width, 3), dtype=np.uint8)
        Image.fromarray(colour).save(folder / f"shot{number:02d}_ref.png")
        entries.append({"name": lineart.name, "reference": f"{lineart.name}_ref.png", "lineart": lineart.name})
    manifest = folder / "film.json"
    manifest.write_text(json.dumps(entries))
    return manifest


class _TimedPool:
    """Wraps a pool to note when its workers are up (start() returned)."""

    def __init__(self, pool):
        self.pool, self.started_at = pool, None

    def __getattr__(self, name):
        return getattr(self.pool, name)

    def start(self) -> None:
        self.pool.start()
        self.started_at = time.perf_counter()


def _ray_start(cpus: int):
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # loopback only: read when ray is imported
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    return ray


def run_mode(args, manifest: Path, outdir: Path, scheduler: str, workers: int) -> dict:
    from lvcd.batch import (
        BatchOptions,
        InProcessPool,
        ModelSpec,
        ProcessPool,
        RayPool,
        ShotSettings,
        model_identity,
        read_shots,
        run_batch,
    )

    model = ModelSpec(args.svd, args.lvcd, args.config, args.device, None, threads=args.threads)
    shots = read_shots(manifest, ShotSettings(steps=args.steps, seed=0))
    ray = None
    if scheduler == "ray":
        ray = _ray_start(workers)
        pool = RayPool(model, workers=workers)
    elif workers == 1:
        pool = InProcessPool(model.with_device(args.device or "cpu"), label="local")
    else:
        pool = ProcessPool(model, [args.device or "cpu"] * workers, threads=args.threads)
    timed = _TimedPool(pool)
    begin = time.perf_counter()
    options = BatchOptions(output_format="png", progress=False, scheduler=scheduler)
    report = run_batch(shots, outdir, timed, model_identity(args.svd, args.lvcd, args.config, None), options)
    end = time.perf_counter()
    if ray is not None:
        ray.shutdown()
    entries = list(report.shots.values())
    failed = [e["name"] for e in entries if e["status"] != "done"]
    frames = sum(e["frames"] or 0 for e in entries)
    run_s = end - timed.started_at
    return {
        "scheduler": scheduler,
        "workers": workers,
        "shots": len(entries),
        "failed": failed,
        "frames": frames,
        "startup_s": round(timed.started_at - begin, 3),
        "run_s": round(run_s, 3),
        "wall_s": round(end - begin, 3),
        "shots_per_hour": round(len(entries) * 3600 / run_s, 1),
        "frames_per_second": round(frames / run_s, 3),
        "shot_seconds_in_worker": [e["seconds"] for e in entries],
        "run_s_per_shot": round(run_s / len(entries), 4),
        # worker time not spent inside ShotRunner.run (scheduling, transfers, polling; with 2+ workers also the
        # idle tail while the last shot runs), per shot
        "outside_worker_s_per_shot": round((run_s * workers - sum(e["seconds"] for e in entries)) / len(entries), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--svd", default=None, help="svd.safetensors (default: the tiny test model)")
    parser.add_argument("--lvcd", default=None)
    parser.add_argument("--config", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--lengths", default="30,40,50,60", help="frames of each shot")
    parser.add_argument("--frame-size", default="64x64", help="HxW of the synthetic frames")
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    parser.add_argument("--modes", default="local:1,ray:1,local:2,ray:2", help="scheduler:workers,...")
    parser.add_argument("--output", default=None, help="also write the JSON here")
    args = parser.parse_args()
    from lvcd.testing.tiny_weights import materialize

    lengths = [int(v) for v in args.lengths.split(",")]
    size_hw = tuple(int(v) for v in args.frame_size.split("x"))
    with tempfile.TemporaryDirectory(prefix="lvcd-bench-batch-") as tmp:
        tmp = Path(tmp)
        if args.svd is None:
            files = materialize(TINY / "weights_manifest.json", tmp / "weights")
            args.svd, args.lvcd, args.config = str(files["svd"]), str(files["lvcd"]), str(TINY / "tiny_config.json")
        manifest = write_shots(tmp / "shots", lengths, size_hw)
        load_before = os.getloadavg()
        runs = []
        for mode in args.modes.split(","):
            scheduler, workers = mode.split(":")
            runs.append(run_mode(args, manifest, tmp / f"out-{scheduler}-{workers}", scheduler, int(workers)))
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    import torch

    by_mode = {(r["scheduler"], r["workers"]): r for r in runs}
    overhead = {}
    for (scheduler, workers), run in by_mode.items():
        local = by_mode.get(("local", workers))
        if scheduler == "ray" and local is not None:
            extra = run["run_s_per_shot"] - local["run_s_per_shot"]
            overhead[f"workers={workers}"] = {
                "extra_s_per_shot": round(extra, 4),
                "relative": round(extra / local["run_s_per_shot"], 4),
            }
    result = {
        "benchmark": "batch",
        "model": "tiny test model" if "tiny" in str(args.config) else args.config,
        "settings": {
            "lengths": lengths,
            "frame_size": list(size_hw),
            "steps": args.steps,
            "threads_per_worker": args.threads,
            "device": args.device,
        },
        "machine": {
            "cpus": os.cpu_count(),
            "torch": torch.__version__,
            "loadavg_before": [round(v, 2) for v in load_before],
            "loadavg_after": [round(v, 2) for v in os.getloadavg()],
        },
        "runs": runs,
        "ray_overhead": overhead,
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")


if __name__ == "__main__":
    main()
