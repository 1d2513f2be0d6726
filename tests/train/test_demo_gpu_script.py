"""examples/demo/gpu_continue.sh, the one-call GPU continuation of the demo model's training, end to end on CPU
with the tiny model: data (several processes, latents), a time-limited fine-tune from a whole-model file, the
export, and the parts that come back from the device machine re-joining into a loadable file."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from lvcd.demo import DEMO_WEIGHTS
from lvcd.weights import WeightsFile

ROOT = Path(__file__).parents[2]


def test_gpu_continue_script_end_to_end_at_toy_scale(tmp_path):
    start = DEMO_WEIGHTS  # the script's default: it continues from the shipped weights
    out = tmp_path / "out"
    env = {
        **os.environ,
        "LVCD_DEMO_SHOTS": "2",
        "LVCD_DEMO_BATCH": "1",
        "LVCD_DEMO_WORKERS": "2",
        "LVCD_DEMO_WORK": str(tmp_path / "work"),
        "LVCD_DEMO_SET": "eval.shots=1 eval.frames=2 eval.steps=1",
        "LVCD_DEMO_BUDGET_S": "3600",  # the toy run's time is MINUTES, whatever this machine's load
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    done = subprocess.run(
        ["bash", "examples/demo/gpu_continue.sh", str(out), "0.001"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "train.max_minutes (0.00075) reached at step 1" in done.stdout  # 3/4 of the time at the learning rate
    assert "optim.learning_rate: 0.0002 in the checkpoint, 4e-05 from now on." in done.stdout  # then the cool-down
    assert "train.max_minutes (0.00025) reached at step 2" in done.stdout
    # the warm phase's checkpoint went to OUT as soon as it was written (a call killed later still has it), then the
    # cool-down's replaced it
    exports = [line.rsplit("_", 1)[1] for line in done.stdout.splitlines() if line.startswith("== export: ")]
    assert [int(step) for step in exports] == [1, 2], done.stdout[-2000:]

    parts = sorted(out.glob("lvcd-demo.safetensors.part*"))
    assert parts and all(part.stat().st_size <= 15 * 2**20 for part in parts)
    joined = tmp_path / "lvcd-demo.safetensors"
    joined.write_bytes(b"".join(part.read_bytes() for part in parts))
    digest, name = (out / "lvcd-demo.safetensors.sha256").read_text().split()
    assert name == "lvcd-demo.safetensors" and hashlib.sha256(joined.read_bytes()).hexdigest() == digest

    before, after = WeightsFile(start, "svd"), WeightsFile(joined, "svd")
    assert after.model_config().name == before.model_config().name
    assert sorted(after.keys()) == sorted(before.keys())
    changed = [k for k in before.keys() if k.startswith("model.diffusion_model.")
               and not torch.equal(before.get(k).half(), after.get(k))]  # fmt: skip
    assert changed  # two optimizer steps moved the averaged UNet weights
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step"] == 2 and summary["batch_size"] == 1 and summary["device"] == "cpu"
    assert [row.split(",")[0] for row in (out / "eval_log.csv").read_text().splitlines()[1:]] == ["1", "2"]
    train_log = (out / "train_log_tail.csv").read_text().splitlines()
    assert train_log[0].startswith("step,") and [row.split(",")[0] for row in train_log[1:]] == ["1", "2"]


def test_gpu_continue_script_refuses_a_full_run_without_cuda(tmp_path):
    """On a machine without CUDA the full-size data and training would outlast the device call: refused at once."""
    env = {**os.environ, "LVCD_DEMO_WORK": str(tmp_path / "work"), "LVCD_DEMO_SHOTS": "800",
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}  # fmt: skip
    done = subprocess.run(["bash", "examples/demo/gpu_continue.sh", str(tmp_path / "out"), "3"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and "no CUDA device here: 800 shots" in done.stderr, done.stderr
    assert not (tmp_path / "work").exists() and not (tmp_path / "out").exists()
