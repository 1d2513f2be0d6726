"""A batch refuses what it can before its slow steps: a batch already running on OUTDIR before any frame is opened,
Ray reached or a metric network loaded (and OUTDIR stays locked, and is let go, on every way out); the planning of
every caller, the Python API's too, fails a shot whose frame rate its output cannot hold or whose video changes size
in the pass planning decodes anyway; a Ray cluster too small for --workers before the metric networks load.

No model runs: the CLI uses the packaged demo model's config and is stopped before any worker starts; the library
tests use the fake pool.
"""

from __future__ import annotations

import io
import json
import os
import signal
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from lvcd.batch import BatchLayout, BatchOptions, claim_outdir, run_batch
from lvcd.batch.layout import lock_outdir
from lvcd.cli import app
from lvcd.errors import InputError
from lvcd.io.frames import FrameSource
from lvcd.io.locks import lock_path

from .conftest import read_report, shot_entries, write_manifest, write_shot
from .fake_pool import FakePool, fake_shots


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """A good shot of 2 frames: ``good/`` and ``good_ref.png``."""
    folder = tmp_path_factory.mktemp("refusals")
    write_shot(folder / "good", 2, seed=0)
    return folder


def _manifest_and_truth(root: Path, tmp_path: Path) -> tuple[Path, Path]:
    entry = {"name": "good", "reference": str(root / "good_ref.png"), "lineart": str(root / "good")}
    truth = tmp_path / "gt.json"
    truth.write_text(json.dumps([{"name": "good", "gt": str(root / "good")}]))
    return write_manifest(tmp_path / "film.json", [entry]), truth


def _batch(manifest: Path, outdir: Path, *extra: str):
    args = ["batch", str(manifest), "-o", str(outdir), "--model", "demo", "--device", "cpu", "--format", "png"]
    return CliRunner().invoke(app, [*args, "--steps", "1", "--quiet", *extra])


def _refused(result) -> str:
    """The one `error:` line of a command refused with exit code 2, without a traceback."""
    assert result.exit_code == 2 and "Traceback" not in result.output, (result.output, result.exception)
    (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]
    return line


def _locked(outdir: Path) -> bool:
    """Another open of OUTDIR's lock file cannot take it (a batch holds it)."""
    try:
        fd = lock_path(BatchLayout(outdir).lock_path, create=False)
    except OSError:  # no lock file (yet)
        return False
    if fd is None:
        return True
    os.close(fd)
    return False


@pytest.fixture
def slow_steps(monkeypatch) -> list[str]:
    """Records each slow step the CLI takes: opening line-art or ground-truth frames, making a pool, reaching Ray,
    starting workers, loading the metric networks (each then stops the command)."""
    calls: list[str] = []

    def recorder(step: str):
        def record(*args, **kwargs):
            calls.append(step)
            raise InputError(f"stopped at: {step}")

        return record

    monkeypatch.setattr(FrameSource, "open", classmethod(recorder("frames opened")))
    monkeypatch.setattr("lvcd.cli.batch._pool", recorder("pool made"))
    monkeypatch.setattr("lvcd.batch.ray_pool.RayPool.connect", recorder("Ray reached"))
    monkeypatch.setattr("lvcd.batch.local.InProcessPool.start", recorder("workers started"))
    monkeypatch.setattr("lvcd.metrics.build_tools", recorder("metric networks loaded"))
    return calls


# ------------------------------------------------------------------------------- a batch running on OUTDIR


@pytest.mark.parametrize("scheduler", ["local", "ray"])
def test_a_batch_running_on_outdir_refuses_a_second_before_any_slow_step(root, tmp_path, slow_steps, scheduler):
    extra = []
    if scheduler == "ray":
        pytest.importorskip("ray", reason="--ray needs the ray package")
        extra = ["--ray"]
    manifest, truth = _manifest_and_truth(root, tmp_path)
    outdir = tmp_path / "out"
    held = lock_outdir(BatchLayout(outdir))  # as the running batch holds it (another open: flock conflicts)
    try:
        line = _refused(_batch(manifest, outdir, "--evaluate", str(truth), *extra))
        assert _locked(outdir)  # the running batch's lock and folder left alone
    finally:
        os.close(held)
    assert line.startswith(f"error: -o {outdir}: another lvcd batch is running on this folder (pid {os.getpid()})")
    assert slow_steps == []
    assert sorted(p.name for p in (outdir / ".lvcd-batch").iterdir()) == ["batch.lock"]  # nothing of this batch


@pytest.mark.parametrize("stop_at", ["metric networks", "workers"])
def test_outdir_is_locked_from_before_the_metric_networks_through_the_run_and_let_go_on_an_error(
    root, tmp_path, monkeypatch, stop_at
):
    """Taken before the slow steps, the lock is the one run_batch runs under (not taken twice: flock would refuse
    it), held while the metric networks load and the workers start; an error at either releases it and removes the
    OUTDIR this batch made."""
    manifest, truth = _manifest_and_truth(root, tmp_path)
    outdir = tmp_path / "out"
    locked = {}

    def step(name: str):
        def run(*args, **kwargs):
            locked[name] = _locked(outdir)
            if name == stop_at:
                raise InputError(f"the {name} failed")

        return run

    monkeypatch.setattr("lvcd.metrics.build_tools", step("metric networks"))
    monkeypatch.setattr("lvcd.batch.local.InProcessPool.start", step("workers"))
    assert _refused(_batch(manifest, outdir, "--evaluate", str(truth))) == f"error: the {stop_at} failed"
    assert locked == {"metric networks": True, **({"workers": True} if stop_at == "workers" else {})}
    assert not outdir.exists()  # made by this batch, no shot ran: removed, and with it the lock


def test_sigterm_while_the_metric_networks_load_ends_the_command_and_removes_the_new_outdir(
    root, tmp_path, monkeypatch
):
    """Between the early claim and the batch, SIGTERM (a cluster's time limit) ends the command as Ctrl-C does (the
    CLI's guard): a new OUTDIR is not left behind holding only the lock."""
    manifest, truth = _manifest_and_truth(root, tmp_path)
    outdir = tmp_path / "out"

    def terminated(*args, **kwargs):
        handler = signal.getsignal(signal.SIGTERM)  # what a SIGTERM arriving now runs (called, not sent: a test
        assert callable(handler), handler  # process killed by the default action would take the test run with it)
        handler(signal.SIGTERM, None)

    monkeypatch.setattr("lvcd.metrics.build_tools", terminated)
    result = _batch(manifest, outdir, "--evaluate", str(truth))
    assert result.exit_code == 128 + signal.SIGTERM, (result.output, result.exception)
    assert not outdir.exists()


@pytest.mark.parametrize("error", [InputError("the metric weights do not load"), KeyboardInterrupt()])
def test_an_error_between_the_claim_and_run_batch_releases_outdir(tmp_path, error):
    """The library's claim: held inside the ``with`` (a second batch refused), released on every way out; an OUTDIR
    it made where no shot ran is removed, a folder that was there is kept."""
    layout = BatchLayout(tmp_path / "out", "gif")
    shots = fake_shots(tmp_path, 1)
    (tmp_path / "kept").mkdir()
    for outdir, made in ((layout.outdir, True), (tmp_path / "kept", False)):
        layout = BatchLayout(outdir, "gif")
        with pytest.raises(type(error)), claim_outdir(layout, shots, {"model": "fake"}):
            with pytest.raises(InputError, match="another lvcd batch is running on this folder"):
                lock_outdir(layout)
            raise error  # e.g. loading the metric networks failed, or Ctrl-C while reaching Ray
        assert outdir.exists() is not made
        os.close(lock_outdir(layout))  # free again
    claimed = claim_outdir(BatchLayout(tmp_path / "other", "gif"), shots, {"model": "fake"})
    with claimed as claim, pytest.raises(ValueError, match="not a held claim of"):  # a claim of another OUTDIR
        run_batch(shots, layout.outdir, FakePool(), {"model": "fake"}, BatchOptions("gif", progress=False), claim=claim)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--metrics", "psnr,nonsense"], "error: unknown metric(s) nonsense; choose from psnr,"),
        (["--eval-size", "big"], "error: --eval-size 'big' is not HEIGHTxWIDTH or one number"),
        (["--eval-size", "16"], "error: --eval-size 16x16 is too small: at least 32 pixels a side"),
        (["--eval-size", "5000"], "error: --eval-size 5000x5000: at most 4096 pixels a side"),
    ],
    ids=["metrics", "eval-size", "eval-size-too-small", "eval-size-too-large"],
)
def test_evaluation_options_are_refused_before_any_ground_truth_frame_opens(
    root, tmp_path, slow_steps, extra, fragment
):
    """They were checked after the ground truth's frames were opened; an evaluation size lvcd evaluate refuses (under
    32 or over 4096 pixels a side) was taken, and met only by the scoring after the whole batch."""
    manifest, truth = _manifest_and_truth(root, tmp_path)
    line = _refused(_batch(manifest, tmp_path / "out", "--evaluate", str(truth), *extra))
    assert line.startswith(fragment), line
    assert slow_steps == []
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------- planning, for every caller


def _library_batch(tmp_path: Path, shots, output_format: str = "gif"):
    pool = FakePool()
    options = BatchOptions(output_format=output_format, progress=False)
    report = run_batch(shots, tmp_path / "out", pool, {"model": "fake"}, options)
    return report, pool


def test_the_librarys_planning_fails_a_shot_whose_fps_its_output_cannot_hold(tmp_path):
    """The CLI refuses such a manifest; a Python caller of run_batch got it only from the worker's writer."""
    from dataclasses import replace

    good, slow = fake_shots(tmp_path, 2)
    slow = replace(slow, settings=replace(slow.settings, fps=0.001))  # a GIF frame lasts at most 655.35 s
    report, pool = _library_batch(tmp_path, [good, slow])
    assert pool.ran == [good.name]
    entry = report.shots[slow.name]
    assert entry["status"] == "failed" and "\n" not in entry["error"], entry
    assert entry["error"].startswith("fps 0.001: a GIF frame lasts at most 655.35 s"), entry["error"]
    assert shot_entries(read_report(tmp_path / "out"))[slow.name]["error"] == entry["error"]


def test_planning_fails_a_shot_whose_line_arts_own_rate_its_output_cannot_hold(tmp_path):
    """No fps in the entry: the output takes the line art's own rate (here a WebP animation of 700 s frames)."""
    from dataclasses import replace

    (good,) = fake_shots(tmp_path, 1)
    frames = [Image.new("RGB", (8, 8), (255, 255, 255)), Image.new("RGB", (8, 8), (250, 250, 250))]
    animation = tmp_path / "slow.webp"
    frames[0].save(animation, save_all=True, append_images=frames[1:], duration=700_000, lossless=True)
    if FrameSource.open(animation).fps is None:
        pytest.skip("this Pillow reads no frame duration from an animated WebP")
    slow = replace(good, name="slow", lineart=animation)
    report, pool = _library_batch(tmp_path, [good, slow])
    assert pool.ran == [good.name]
    error = report.shots["slow"]["error"]
    assert error.startswith("the line art's own frame rate, 0.001429 fps: a GIF frame lasts at most 655.35 s"), error
    assert error.endswith("; give the shot an fps (or another --format)"), error


def _mjpeg_video(path: Path, sizes: list[tuple[int, int]]) -> Path:
    """A Matroska video whose frames (JPEGs) have the given (width, height), written as a live stream: no duration
    and no frame count stated, so planning must decode it to count its frames."""
    av = pytest.importorskip("av")
    with av.open(str(path), "w", options={"live": "1"}) as container:
        stream = container.add_stream("mjpeg", rate=24)
        stream.width, stream.height, stream.pix_fmt = *sizes[0], "yuvj420p"
        for index, (width, height) in enumerate(sizes):
            data = io.BytesIO()
            Image.fromarray(np.full((height, width, 3), 255, np.uint8)).save(data, "JPEG")
            packet = av.Packet(data.getvalue())
            packet.stream, packet.pts, packet.dts, packet.time_base = stream, index, index, Fraction(1, 24)
            container.mux(packet)
    return path


def test_a_video_changing_size_is_failed_in_the_pass_planning_decodes_anyway(tmp_path):
    from dataclasses import replace

    (good,) = fake_shots(tmp_path, 1)
    mixed = _mjpeg_video(tmp_path / "mixed.mkv", [(64, 64)] * 3 + [(64, 32)] * 2)
    steady = _mjpeg_video(tmp_path / "steady.mkv", [(64, 64)] * 5)
    shots = [replace(good, name="mixed", lineart=mixed), replace(good, name="steady", lineart=steady)]
    report, pool = _library_batch(tmp_path, shots)
    assert pool.ran == ["steady"] and report.shots["steady"]["frames"] == 5
    error = report.shots["mixed"]["error"]
    assert report.shots["mixed"]["status"] == "failed" and "\n" not in error, error
    assert "mixed.mkv frame 3: size 64x32 differs from the first frame's 64x64" in error, error


# ------------------------------------------------------------------------------- Ray: a cluster too small


@pytest.fixture
def two_cpu_cluster(monkeypatch):
    """Ray answering as a connected 2-CPU cluster would, without one; the metric networks must not load."""
    ray = pytest.importorskip("ray", reason="--ray needs the ray package")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda *args, **kwargs: None)
    monkeypatch.setattr(ray, "shutdown", lambda: None)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})

    def loaded(*args, **kwargs):
        raise AssertionError("the metric networks loaded before the cluster was found unfit")

    monkeypatch.setattr("lvcd.metrics.build_tools", loaded)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--workers", "5"], "the Ray cluster has 2 CPUs, room for 2 workers, but 5 were asked for"),
        (["--cpus-per-worker", "0"], "--cpus-per-worker 0: a CPU worker needs CPUs"),
        (["--gpus-per-worker", "-1"], "--gpus-per-worker -1 is below 0"),
        (["--cpus-per-worker", "-2"], "--cpus-per-worker -2 is below 0"),
    ],
    ids=["more-workers-than-room", "cpu-workers-without-cpus", "negative-gpus", "negative-cpus"],
)
def test_ray_workers_the_cluster_cannot_place_are_refused_before_the_metric_networks_load(
    root, tmp_path, two_cpu_cluster, extra, fragment
):
    """Refused in start() only, after --evaluate's networks had loaded (or, without CPUs per CPU worker, a division
    by zero); now once the cluster is reached, and a negative share before anything."""
    manifest, truth = _manifest_and_truth(root, tmp_path)
    line = _refused(_batch(manifest, tmp_path / "out", "--ray", "--evaluate", str(truth), *extra))
    assert fragment in line, line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("scheduler", ["local", "ray"])
def test_weights_that_do_not_fit_are_refused_before_ray_and_the_metric_networks(root, tmp_path, monkeypatch, scheduler):
    """Another file given as --lvcd was found only when the workers loaded the weights, after Ray was reached and the
    metric networks had loaded; it is now read from its header first (as lvcd colorize does)."""
    from lvcd.demo import demo_weights_path

    if scheduler == "ray":
        pytest.importorskip("ray", reason="--ray needs the ray package")
    slow_steps = []
    for target in (
        "lvcd.batch.ray_pool.RayPool.connect",
        "lvcd.batch.local.InProcessPool.start",
        "lvcd.metrics.build_tools",
    ):
        monkeypatch.setattr(target, lambda *a, _step=target, **k: slow_steps.append(_step))
    manifest, truth = _manifest_and_truth(root, tmp_path)
    notes = tmp_path / "notes.safetensors"
    notes.write_text("not weights")
    args = ["batch", str(manifest), "-o", str(tmp_path / "out"), "--svd", str(demo_weights_path()), "--lvcd",
            str(notes), "--device", "cpu", "--format", "png", "--steps", "1", "--quiet", "--evaluate", str(truth)]  # fmt: skip
    line = _refused(CliRunner().invoke(app, [*args, *(["--ray"] if scheduler == "ray" else [])]))
    assert "notes.safetensors" in line, line
    assert slow_steps == []
    assert not (tmp_path / "out").exists()
