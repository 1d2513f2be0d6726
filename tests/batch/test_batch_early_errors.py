"""`lvcd batch` says what is wrong before any slow work: no worker starts (none loads the weights), no metric network
and no Ray connection is made for a batch that a check can refuse.

A bad shot found when the batch plans its shots is reported failed, in one line, and the others run (as a missing
reference always was); an option or setting that fits no shot refuses the whole command: exit code 2, one `error:`
line. The packaged demo model (no weight files) and shots of a few 64x64 frames keep every test fast; no shot is
sampled.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from lvcd.cli import app
from lvcd.errors import InputError

from .conftest import read_report, shot_entries, write_manifest, write_shot

STARTS = (
    "lvcd.batch.local.InProcessPool.start",
    "lvcd.batch.local.ProcessPool.start",
    "lvcd.batch.ray_pool.RayPool.start",
    "lvcd.weights.PendingModel.load",
)


@pytest.fixture
def no_workers(monkeypatch):
    """Any worker starting (its weights loading), in this process or before a worker process is spawned, fails."""

    def started(*args, **kwargs):
        raise AssertionError("the workers started (the weights would load) before the batch's checks refused it")

    for target in STARTS:
        monkeypatch.setattr(target, started)


@pytest.fixture
def no_metric_networks(monkeypatch):
    def loaded(*args, **kwargs):
        raise AssertionError("the metric networks loaded before the batch's checks refused it")

    monkeypatch.setattr("lvcd.metrics.build_tools", loaded)


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    """A folder with a good shot of 4 frames (``good/``, ``good_ref.png``), a file that is no image, and a shot
    whose third frame has another size (``mixed/``)."""
    root = tmp_path_factory.mktemp("early")
    write_shot(root / "good", 4, seed=0)
    (root / "notimg.png").write_text("not an image")
    write_shot(root / "mixed", 3, seed=1)
    Image.new("L", (64, 32), 255).save(root / "mixed" / "f002.png")
    return root


def good(root: Path, name: str = "good", **fields) -> dict:
    return {"name": name, "reference": str(root / "good_ref.png"), "lineart": str(root / "good"), **fields}


def batch(manifest: Path, outdir: Path, *extra: str):
    args = ["batch", str(manifest), "-o", str(outdir), "--model", "demo", "--device", "cpu", "--format", "png"]
    return CliRunner().invoke(app, [*args, "--steps", "1", "--quiet", *extra])


def refused(result) -> str:
    """The one `error:` line of a command refused with exit code 2, without a traceback."""
    text = result.output
    assert not isinstance(result.exception, AssertionError), text
    assert result.exit_code == 2 and "Traceback" not in text, text
    (line,) = [line for line in text.splitlines() if line.startswith("error:")]
    return line


# ------------------------------------------------------------------------------- A: a shot's inputs, at planning


def test_a_batch_of_bad_shots_reports_each_in_one_line_and_starts_no_worker(shots, tmp_path, no_workers):
    entries = [
        good(shots, "late_keyframe", keyframes={"99": str(shots / "good_ref.png")}),
        good(shots, "keyframe_on_reference", reference_frame=2, keyframes={"2": str(shots / "good_ref.png")}),
        good(shots, "keyframe_not_image", keyframes={"2": str(shots / "notimg.png")}),
        good(shots, "reference_not_image", reference=str(shots / "notimg.png")),
        good(shots, "reference_frame_past", reference_frame=50),
        good(shots, "mixed_sizes", lineart=str(shots / "mixed")),
    ]
    outdir = tmp_path / "out"
    result = batch(write_manifest(tmp_path / "film.json", entries), outdir)
    assert result.exit_code == 1 and not isinstance(result.exception, AssertionError), result.output
    assert "Traceback" not in result.output
    report = shot_entries(read_report(outdir))
    expected = {
        "late_keyframe": ("Keyframe index 99", "outside the shot (0..3)"),
        "keyframe_on_reference": ("Keyframe index 2", "reference_frame 2"),
        "keyframe_not_image": ("keyframes 2=", "notimg.png", "not a readable image"),
        "reference_not_image": ("reference ", "notimg.png", "not a readable image"),
        "reference_frame_past": ("reference_frame 50 is outside the shot of 4 frames",),
        "mixed_sizes": ("f002.png", "size 64x32 differs"),
    }
    for name, fragments in expected.items():
        entry = report[name]
        assert entry["status"] == "failed" and "\n" not in entry["error"], entry
        assert all(fragment in entry["error"] for fragment in fragments), entry["error"]
        assert f"failed {name}: {entry['error']}" in result.output
    assert not (outdir / ".lvcd-batch" / "shots").exists()  # no worker ever recorded a shot


def test_a_bad_shot_is_failed_before_the_workers_start_and_the_others_go_on(shots, tmp_path, monkeypatch):
    outdir = tmp_path / "out"
    at_start = {}

    def start(pool):  # the workers would load here: see what the batch had decided by then, and stop
        at_start.update({name: e["status"] for name, e in shot_entries(read_report(outdir)).items()})
        raise InputError("stopped where the workers would start")

    monkeypatch.setattr("lvcd.batch.local.InProcessPool.start", start)
    entries = [good(shots), good(shots, "late_keyframe", keyframes={"99": str(shots / "good_ref.png")})]
    line = refused(batch(write_manifest(tmp_path / "film.json", entries), outdir))
    assert line == "error: stopped where the workers would start"
    assert at_start == {"good": "pending", "late_keyframe": "failed"}


def test_a_keyframe_past_a_videos_frames_is_found_at_planning(shots, tmp_path, no_workers):
    pytest.importorskip("av")
    import numpy as np

    from lvcd.io import open_writer

    video = tmp_path / "clip.mp4"
    with open_writer(video, fps=24) as writer:
        for index in range(5):
            writer.write(np.full((64, 64, 3), 255 - index, np.uint8))
    entry = good(shots, "clip", lineart=str(video), keyframes={"7": str(shots / "good_ref.png")})
    result = batch(write_manifest(tmp_path / "film.json", [entry]), tmp_path / "out")
    assert result.exit_code == 1 and not isinstance(result.exception, AssertionError), result.output
    error = shot_entries(read_report(tmp_path / "out"))["clip"]["error"]
    assert "Keyframe index 7" in error and "(0..4)" in error, error


# ------------------------------------------------------------------------------- B: frame rates


@pytest.mark.parametrize(
    ("extra", "fields", "fragments"),
    [
        (["--fps", "0"], {}, ("--fps 0:", "from 0.001 to 1000")),
        (["--fps", "0.001", "--format", "gif"], {}, ("--fps 0.001:", "655.35 s")),
        (["--format", "gif"], {"fps": 0.001}, ("shot 'good': fps 0.001:", "655.35 s")),
    ],
    ids=["fps-zero", "fps-too-slow-for-a-gif", "manifest-fps-too-slow-for-a-gif"],
)
def test_a_frame_rate_no_output_can_hold_is_refused_before_any_worker(
    shots, tmp_path, no_workers, extra, fields, fragments
):
    manifest = write_manifest(tmp_path / "film.json", [good(shots, **fields)])
    line = refused(batch(manifest, tmp_path / "out", *extra))
    assert all(fragment in line for fragment in fragments), line
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------- C: options before slow setups


def _truth(shots: Path, tmp_path: Path) -> Path:
    truth = tmp_path / "gt.json"
    truth.write_text(json.dumps([{"name": "good", "gt": str(shots / "good")}]))
    return truth


@pytest.mark.parametrize(
    ("extra", "fragment"), [(["--dtype", "fp61"], "--dtype 'fp61'"), (["--vae-dtype", "int8"], "--vae-dtype 'int8'")]
)
def test_a_bad_dtype_is_refused_before_the_metric_networks_load(
    shots, tmp_path, no_workers, no_metric_networks, extra, fragment
):
    manifest = write_manifest(tmp_path / "film.json", [good(shots)])
    line = refused(batch(manifest, tmp_path / "out", "--evaluate", str(_truth(shots, tmp_path)), *extra))
    assert fragment in line, line
    assert not (tmp_path / "out").exists()


def test_a_metric_weights_file_not_there_is_said_before_any_network_loads(
    shots, tmp_path, no_workers, no_metric_networks
):
    manifest = write_manifest(tmp_path / "film.json", [good(shots)])
    missing = tmp_path / "nothere.pth"
    evaluate = ["--evaluate", str(_truth(shots, tmp_path)), "--metrics", "fid", "--inception-weights", str(missing)]
    line = refused(batch(manifest, tmp_path / "out", *evaluate))
    assert f"--inception-weights {missing} does not exist: give pt_inception-2015-12-05" in line, line
    assert not (tmp_path / "out").exists()


def test_a_missing_ray_cluster_is_said_before_the_metric_networks_load(
    shots, tmp_path, monkeypatch, no_workers, no_metric_networks
):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        pytest.skip("Ray is connected in this process already")

    def no_cluster(*args, **kwargs):  # what ray.init(address="auto") raises where no cluster runs
        raise ConnectionError("Could not find any running Ray instance.")

    monkeypatch.setattr(ray, "init", no_cluster)
    manifest = write_manifest(tmp_path / "film.json", [good(shots)])
    line = refused(batch(manifest, tmp_path / "out", "--ray", "--evaluate", str(_truth(shots, tmp_path))))
    assert "no Ray cluster at 'auto'" in line and "ray start --head" in line, line
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------- D: memory, before the pool starts


def test_a_size_too_large_for_this_machines_memory_is_refused_before_any_worker(
    shots, tmp_path, monkeypatch, no_workers
):
    """`--model demo --device cpu --size 4096x4096` ran for minutes; the check is the colorize one, at the largest
    size a shot of the batch plans. Here 128x128 on a machine with 100 MB available (the estimate at 4096x4096 alone
    takes seconds)."""
    monkeypatch.setattr("lvcd.cli.checks.available_ram", lambda: 100 * 10**6)
    entries = [good(shots), good(shots, "large", size="128x128")]
    line = refused(batch(write_manifest(tmp_path / "film.json", entries), tmp_path / "out"))
    assert "shot 'large': this shot needs at least" in line and "at 128x128 on the CPU" in line, line
    assert "0.1 GB available" in line and "smaller --size" in line, line
    assert not (tmp_path / "out").exists()


def test_cpu_workers_each_with_a_model_must_fit_together(shots, tmp_path, monkeypatch, no_workers):
    """Each worker process loads its own model: two need twice one's memory (the estimate stood in for: 1 GB)."""
    from lvcd.cli.checks import check_cpu_memory
    from lvcd.config import get_config

    monkeypatch.setattr("lvcd.cli.checks.available_ram", lambda: 1.5 * 10**9)
    monkeypatch.setattr("lvcd.memory_estimate.estimate_peak_bytes", lambda *args, **kwargs: 10**9)
    opts = {"device": "cpu", "dtype": None, "vae_dtype": None}
    check_cpu_memory(opts, get_config(None), (320, 576), workers=1)  # one fits
    entries = [good(shots, "large", size="128x128")]
    line = refused(batch(write_manifest(tmp_path / "film.json", entries), tmp_path / "out", "--workers", "2"))
    assert "shot 'large': 2 CPU workers need at least 2.0 GB of memory at 128x128" in line, line
    assert "use fewer --workers or a smaller --size" in line, line


def test_a_shot_too_large_for_the_gpu_is_refused_before_any_worker(shots, tmp_path, monkeypatch, no_workers):
    """No GPU here: CUDA's answers are stood in for (a GPU with 1 kB free), and the estimate (seconds) too."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1000, 80 * 10**9))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr("lvcd.memory_estimate.estimate_peak_bytes", lambda *args, **kwargs: 5 * 10**9)
    manifest = write_manifest(tmp_path / "film.json", [good(shots)])
    line = refused(batch(manifest, tmp_path / "out", "--device", "cuda"))
    assert "shot 'good': --device cuda:0: this shot needs at least 5.0 GB of GPU memory" in line, line
    assert not (tmp_path / "out").exists()
