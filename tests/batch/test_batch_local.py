"""`lvcd batch` on this machine (tiny model, CPU): parity with `lvcd colorize`, bad shots, restart, dead workers,
evaluation. Outputs are PNG folders compared byte for byte."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import TINY_CONFIG, cache_official_files
from lvcd.batch import BatchOptions, ModelSpec, ProcessPool, ShotSettings, model_identity, read_shots, run_batch
from lvcd.cli import app

from .conftest import (
    LENGTHS,
    assert_same_frames,
    batch_cli,
    in_thread,
    kill_worker_mid_shot,
    model_args,
    read_report,
    shot_entries,
    write_manifest,
    write_shot,
)


def test_local_batch_equals_single_shot_colorize(local_run, film, tiny_weights, tmp_path):
    report = read_report(local_run)
    assert report["scheduler"] == "local" and len(report["workers"]) == 1
    assert report["totals"] | {"frames_per_second": None, "shots_per_hour": None} == {
        "shots": 5, "done": 5, "skipped": 0, "failed": 0, "pending": 0, "frames": sum(LENGTHS),
        "frames_per_second": None, "shots_per_hour": None,
    }  # fmt: skip
    entries = shot_entries(report)
    for count in LENGTHS:
        name = f"shot{count}"
        entry = entries[name]
        assert (entry["status"], entry["frames"], entry["attempts"], entry["error"]) == ("done", count, 1, None)
        assert entry["windows_resumed"] == 0 and entry["worker"] == report["workers"][0]
        shot = film[name]
        single = tmp_path / name
        args = ["colorize", *model_args(tiny_weights), "--quiet", "--reference", shot["reference"]]
        args += ["--lineart", shot["lineart"], "-o", str(single), "--seed", str(shot["seed"])]
        args += ["--steps", str(shot.get("steps", 1))]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert_same_frames(local_run / name, single, count)
    assert not (local_run / ".lvcd-batch" / "work").exists()  # work directories removed after success, and their folder
    assert not [p for p in local_run.iterdir() if ".partial-" in p.name]


def test_bad_shots_are_reported_and_the_others_finish(local_run, film, tiny_weights, tmp_path):
    mixed = tmp_path / "mixed"
    reference = write_shot(mixed, 3, seed=0)
    Image.new("L", (64, 32), 255).save(mixed / "f002.png")  # one frame of another size
    good = film["shot2"]
    manifest = tmp_path / "film.csv"
    manifest.write_text(
        "name,reference,lineart,keyframes,seed\n"
        f"good,{good['reference']},{good['lineart']},,{good['seed']}\n"
        f"no_reference,missing_ref.png,{good['lineart']},,\n"
        f"mixed_sizes,{reference.name},mixed,,\n"
        f"bad_keyframe,{good['reference']},{good['lineart']},9=missing_ref.png,\n"
        f"late_keyframe,{good['reference']},{good['lineart']},5={good['reference']},\n"
    )
    result = batch_cli(tiny_weights, manifest, tmp_path / "out")
    assert result.exit_code == 1, result.output
    entries = shot_entries(read_report(tmp_path / "out"))
    assert entries["good"]["status"] == "done" and entries["good"]["frames"] == 2
    assert_same_frames(tmp_path / "out" / "good", local_run / "shot2", 2)
    errors = {name: entries[name]["error"] or "" for name in entries if name != "good"}
    assert all(entries[name]["status"] == "failed" for name in errors)
    assert "missing_ref.png" in errors["no_reference"] and "not found" in errors["no_reference"]
    assert "missing_ref.png" in errors["bad_keyframe"]
    assert "f002.png" in errors["mixed_sizes"] and "size" in errors["mixed_sizes"]
    assert "Keyframe index 5" in errors["late_keyframe"]
    assert all("\n" not in error for error in errors.values())
    for name in errors:
        assert not (tmp_path / "out" / name).exists()
        assert f"failed {name}:" in result.output


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # an exited orphan that nobody has reaped yet is gone too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def test_batch_killed_midway_restarts_without_redoing_finished_shots(local_run, film, tiny_weights, tmp_path):
    """`lvcd batch --workers 2` (two worker processes) is SIGKILLed once shot15 is done while shot60 runs; its
    workers end with it, and the re-run skips shot15 and resumes shot60 from its finished windows."""
    manifest = write_manifest(tmp_path / "film.json", [film["shot60"], film["shot15"], film["shot2"]])
    outdir = tmp_path / "out"
    command = [sys.executable, "-m", "lvcd.cli", "batch", str(manifest), "-o", str(outdir), *model_args(tiny_weights)]
    command += ["--steps", "1", "--format", "png", "--threads", "1", "--quiet", "--workers", "2", "--device", "cpu"]
    killed = subprocess.Popen(command, env={**os.environ, "OMP_NUM_THREADS": "1"}, stderr=subprocess.DEVNULL)
    records = outdir / ".lvcd-batch" / "shots"
    deadline = time.time() + 300
    while killed.poll() is None and time.time() < deadline:  # longest first: shot60 on one worker, shot15 on the other
        if (records / "shot15.json").exists() and json.loads((records / "shot15.json").read_text())["status"] == "done":
            break
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    at_kill = {name: json.loads((records / f"{name}.json").read_text()) for name in ("shot60", "shot15")}
    assert at_kill["shot15"]["status"] == "done" and at_kill["shot60"]["status"] == "running"
    windows_at_kill = len(list((outdir / ".lvcd-batch" / "work" / "shot60").glob("window_*.safetensors")))
    running = [json.loads(r.read_text()) for r in records.glob("*.json")]  # shot60, and shot2 if it had started
    workers = {record["pid"] for record in running if record["status"] == "running"}
    assert at_kill["shot60"]["pid"] in workers
    deadline = time.time() + 5  # on Linux the kernel kills them with the batch (PR_SET_PDEATHSIG), well within this
    while not all(_process_gone(pid) for pid in workers) and time.time() < deadline:
        time.sleep(0.05)
    assert all(_process_gone(pid) for pid in workers), "a worker outlived the killed batch (it would race the re-run)"
    finished = outdir / "shot15"
    stamps = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in finished.iterdir()}

    result = batch_cli(tiny_weights, manifest, outdir)
    assert result.exit_code == 0, result.output
    entries = shot_entries(read_report(outdir))
    assert entries["shot15"]["status"] == "skipped" and entries["shot15"]["frames"] == 15
    assert {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in finished.iterdir()} == stamps
    assert entries["shot60"]["status"] == "done" and entries["shot60"]["windows_resumed"] >= windows_at_kill
    assert entries["shot2"]["status"] in ("done", "skipped")
    for name, count in (("shot60", 60), ("shot15", 15), ("shot2", 2)):
        assert_same_frames(outdir / name, local_run / name, count)
    assert not [p for p in outdir.iterdir() if p.name.startswith(".shot")]  # no writer temporaries left


def test_dead_worker_process_has_its_shot_resumed_by_another(local_run, film, tiny_weights, tmp_path):
    """ProcessPool, 2 CPU worker processes: the one running shot33 is SIGKILLed after 2 of its 3 windows."""
    shots = read_shots(write_manifest(tmp_path / "film.json", [film["shot33"], film["shot1"]]), ShotSettings(steps=1))
    svd, lvcd = str(tiny_weights["svd"]), str(tiny_weights["lvcd"])
    model = ModelSpec(svd, lvcd, str(TINY_CONFIG), "cpu", None, threads=1)
    pool = ProcessPool(model, ["cpu", "cpu"], threads=1)
    outdir = tmp_path / "out"
    identity = model_identity(svd, lvcd, str(TINY_CONFIG), None)
    thread, box = in_thread(run_batch, shots, outdir, pool, identity, BatchOptions(output_format="png", progress=False))
    seen = kill_worker_mid_shot(outdir, "shot33", windows=2, batch=(thread, box))
    thread.join(timeout=300)
    assert "error" not in box, box
    entries = shot_entries(read_report(outdir))
    entry = entries["shot33"]
    assert entry["status"] == "done" and entry["attempts"] == 2 and len(entry["lost_workers"]) == 1
    assert entry["windows"] == 3 and entry["windows_resumed"] >= seen >= 2  # the early windows were kept
    assert_same_frames(outdir / "shot33", local_run / "shot33", 33)
    assert entries["shot1"]["status"] == "done"
    assert torch.get_num_threads() == 1


def test_evaluate_pools_fid_and_fvd_over_all_shots(local_run, film, tiny_weights, tmp_path):
    import warnings

    from metrics.synthetic import TinyImageFeatures, TinyVideoFeatures

    scripts = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        for name, network in (("inception", TinyImageFeatures()), ("i3d", TinyVideoFeatures())):
            scripts[name] = tmp_path / f"{name}.pt"
            torch.jit.save(torch.jit.script(network.eval()), str(scripts[name]))
    outdir = tmp_path / "out"
    shutil.copytree(local_run, outdir)  # a finished batch: re-running it only evaluates
    truth = tmp_path / "gt.json"
    truth.write_text(json.dumps([{"name": name, "gt": entry["lineart"]} for name, entry in film.items()]))
    manifest = write_manifest(tmp_path / "film.json", film.values())
    result = batch_cli(
        tiny_weights, manifest, outdir, "--evaluate", str(truth), "--metrics", "psnr,fid,fvd", "--eval-size", "64",
        "--inception-weights", str(scripts["inception"]), "--i3d-weights", str(scripts["i3d"]), "--allow-torchscript",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "5 skipped" in result.output and "ALL" in result.output
    evaluation = json.loads((outdir / "evaluation.json").read_text())
    assert [clip["name"] for clip in evaluation["clips"]] == [f"shot{n}" for n in LENGTHS]
    # FID pools every frame of every shot; FVD one 16-frame window per 16 frames (a shorter shot gives one, padded).
    assert evaluation["aggregate"]["samples"] == {"fid": sum(LENGTHS), "fvd": 1 + 1 + 1 + 2 + 3}
    assert evaluation["aggregate"]["metrics"]["fid"] is not None
    assert read_report(outdir)["evaluation"]["metrics"] == evaluation["aggregate"]["metrics"]


def test_the_vae_dtype_travels_to_the_workers_and_into_the_fingerprint(tiny_weights):
    """`lvcd batch --vae-dtype bf16`: every worker loads the VAE in bf16, and a shot finished with another VAE dtype
    is not taken as done; without the option the fingerprint is as before (earlier batches still resume)."""
    import torch

    svd, lvcd = str(tiny_weights["svd"]), str(tiny_weights["lvcd"])
    spec = ModelSpec(svd, lvcd, str(TINY_CONFIG), None, torch.float32, vae_dtype=torch.bfloat16).with_device("cpu", 1)
    assert spec.vae_dtype == torch.bfloat16 and spec.device == "cpu" and spec.threads == 1
    pipe = spec.load()
    assert next(pipe.model.first_stage_model.parameters()).dtype == torch.bfloat16
    assert next(pipe.model.unet.parameters()).dtype == torch.float32
    plain = model_identity(svd, lvcd, str(TINY_CONFIG), torch.float32)
    assert "vae_dtype" not in plain
    assert model_identity(svd, lvcd, str(TINY_CONFIG), torch.float32, torch.bfloat16) == {
        **plain,
        "vae_dtype": "torch.bfloat16",
    }


def test_a_shot_out_of_gpu_memory_says_what_needs_less_and_is_retried_by_the_next_run(film, tiny_weights, tmp_path):
    from lvcd.pipeline import LVCDPipeline

    manifest = write_manifest(tmp_path / "film.json", [film["shot2"]])
    real_call = LVCDPipeline.__call__

    def out_of_memory(self, *args, **kwargs):
        raise torch.OutOfMemoryError(
            "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of 7.63 GiB of which 1.12 GiB"
            " is free.\nOf the allocated memory 5.9 GiB is allocated by PyTorch"
        )

    LVCDPipeline.__call__ = out_of_memory
    try:
        failed = batch_cli(tiny_weights, manifest, tmp_path / "out")
    finally:
        LVCDPipeline.__call__ = real_call
    assert failed.exit_code == 1, failed.output
    error = shot_entries(read_report(tmp_path / "out"))["shot2"]["error"]
    assert error == (
        "the GPU ran out of memory (2.00 GiB more were needed, 1.12 GiB free); try --offload, --vae-dtype bf16 or a "
        "smaller --size; run the batch again to retry the shot."
    )
    again = batch_cli(tiny_weights, manifest, tmp_path / "out")
    assert again.exit_code == 0, again.output
    assert shot_entries(read_report(tmp_path / "out"))["shot2"]["status"] == "done"


def test_the_report_says_which_shots_had_their_scanned_paper_levelled(film, tiny_weights, tmp_path):
    import numpy as np

    scan = tmp_path / "scan2"
    shutil.copytree(film["shot2"]["lineart"], scan)
    for path in scan.iterdir():  # the same drawings on grey, grainy paper
        gray = np.asarray(Image.open(path).convert("L"), dtype=np.float32)
        noise = np.random.default_rng(0).normal(0, 4, gray.shape)
        Image.fromarray(np.clip(np.rint(30 + gray * 0.7 + noise), 0, 255).astype(np.uint8)).save(path)
    entries = [film["shot2"], {**film["shot2"], "name": "scan2", "lineart": str(scan)}]
    result = batch_cli(tiny_weights, write_manifest(tmp_path / "film.json", entries), tmp_path / "out")
    assert result.exit_code == 0, result.output
    report = shot_entries(read_report(tmp_path / "out"))
    assert report["shot2"]["lineart_levels"] is None
    assert report["scan2"]["lineart_levels"].startswith("scanned paper levelled: paper 208")


def test_windows_of_another_job_in_a_shots_work_dir_are_replaced_not_a_failure(local_run, film, tiny_weights, tmp_path):
    """A shot interrupted under an lvcd that read its inputs otherwise (same manifest entry, another job fingerprint):
    `lvcd batch` cannot be told `--resume` or not, so it starts the shot afresh and says why in the shot's warnings."""
    manifest = write_manifest(tmp_path / "film.json", [film["shot15"]])
    outdir = tmp_path / "out"
    assert batch_cli(tiny_weights, manifest, outdir, "--keep-work").exit_code == 0
    shutil.rmtree(outdir / "shot15")  # as if killed before the output was written
    settings = outdir / ".lvcd-batch" / "work" / "shot15" / "settings.json"
    settings.write_text(json.dumps({"fingerprint": "0" * 64, "seed": 0}))  # an older lvcd's job
    result = batch_cli(tiny_weights, manifest, outdir)
    assert result.exit_code == 0, result.output
    entry = shot_entries(read_report(outdir))["shot15"]
    assert entry["status"] == "done" and entry["windows_resumed"] == 0
    (warning,) = [w for w in entry["warnings"] if "started afresh" in w]
    assert warning.startswith("the windows an earlier attempt finished (1) belong to another job (this work directory")
    assert_same_frames(outdir / "shot15", local_run / "shot15", 15)


def test_a_batch_never_writes_or_replaces_its_inputs(film, tiny_weights, tmp_path):
    """A shot whose output folder would replace the folder holding its reference (even with --overwrite) fails and
    the others go on; an OUTDIR that is an input folder is refused before anything is written to it."""
    outdir = tmp_path / "out"
    (outdir / "s1").mkdir(parents=True)
    reference = outdir / "s1" / "ref.png"
    shutil.copy(film["shot2"]["reference"], reference)
    (outdir / "s1" / "notes.txt").write_text("mine")
    (outdir / "s3").mkdir()
    (outdir / "s3" / "scene.blend").write_bytes(b"other work")
    entries = [{**film["shot2"], "name": "s1", "reference": str(reference)}, {**film["shot2"], "name": "s2"}]
    entries.append({**film["shot2"], "name": "s3"})
    manifest = write_manifest(tmp_path / "film.json", entries)
    result = batch_cli(tiny_weights, manifest, outdir, "--overwrite")
    assert result.exit_code == 1, result.output
    report = shot_entries(read_report(outdir))
    assert report["s1"]["status"] == "failed" and "never deletes its inputs" in report["s1"]["error"]
    assert report["s3"]["status"] == "failed" and "holds more than PNG frames (scene.blend)" in report["s3"]["error"]
    assert [p.name for p in (outdir / "s3").iterdir()] == ["scene.blend"]
    assert report["s2"]["status"] == "done"
    assert sorted(p.name for p in (outdir / "s1").iterdir()) == ["notes.txt", "ref.png"]

    lineart = Path(film["shot2"]["lineart"])
    before = sorted(p.name for p in lineart.iterdir())
    refused = batch_cli(tiny_weights, write_manifest(tmp_path / "f2.json", [film["shot2"]]), lineart)
    assert refused.exit_code == 2 and "lvcd never writes its inputs" in refused.output, refused.output
    assert sorted(p.name for p in lineart.iterdir()) == before


def test_a_second_batch_on_the_same_outdir_is_refused_while_the_first_runs(film, tiny_weights, tmp_path):
    from lvcd.batch.layout import BatchLayout, lock_outdir

    outdir = tmp_path / "out"
    manifest = write_manifest(tmp_path / "film.json", [film["shot1"]])
    held = lock_outdir(BatchLayout(outdir))  # as a running batch holds it (a separate open: flock conflicts)
    try:
        refused = batch_cli(tiny_weights, manifest, outdir)
    finally:
        os.close(held)
    assert refused.exit_code == 2 and f"another lvcd batch is running on this folder (pid {os.getpid()})" in " ".join(
        refused.output.split()
    )
    assert not (outdir / "batch_report.json").exists()
    assert batch_cli(tiny_weights, manifest, outdir).exit_code == 0  # once the first one is gone


def test_a_shot_named_like_the_batchs_own_files_is_refused_before_any_work(film, tiny_weights, tmp_path):
    """It failed at run time, after the other shots ran; the manifest is refused now, in one line."""
    entries = [{**film["shot1"], "name": "batch_report.json"}, {**film["shot1"], "name": "fine"}]
    outdir = tmp_path / "out"
    result = batch_cli(tiny_weights, write_manifest(tmp_path / "film.json", entries), outdir, "--overwrite")
    assert result.exit_code == 2, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "is the name of the batch's own batch_report.json; rename the shot" in errors[0]
    assert not outdir.exists()


def test_a_batch_that_cannot_start_leaves_no_outdir_behind(film, tiny_weights, tmp_path):
    from lvcd.batch import InProcessPool

    class NoWorker(InProcessPool):
        def start(self):
            raise RuntimeError("no worker could load the model")

    shots = read_shots(write_manifest(tmp_path / "film.json", [film["shot1"]]), ShotSettings(steps=1))
    model = ModelSpec(str(tiny_weights["svd"]), str(tiny_weights["lvcd"]), str(TINY_CONFIG), "cpu", None, threads=1)
    identity = model_identity(model.svd, model.lvcd, model.config, None)
    with pytest.raises(RuntimeError, match="no worker"):
        run_batch(shots, tmp_path / "new", NoWorker(model), identity, BatchOptions(progress=False))
    assert not (tmp_path / "new").exists()
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "mine.txt").write_text("x")
    with pytest.raises(RuntimeError, match="no worker"):
        run_batch(shots, tmp_path / "used", NoWorker(model), identity, BatchOptions(progress=False))
    assert (tmp_path / "used" / "mine.txt").exists()  # a folder it did not create keeps its report for the record


def test_the_demo_model_colorizes_a_batch_without_weight_files(film, tmp_path):
    """`lvcd batch --model demo` as `lvcd colorize --model demo`: the packaged model, fp32; other names refused."""
    manifest = write_manifest(tmp_path / "film.json", [film["shot2"]])
    runner = CliRunner()
    common = ["batch", str(manifest), "-o", str(tmp_path / "out"), "--steps", "1", "--format", "png", "--quiet"]
    result = runner.invoke(app, [*common, "--model", "demo", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert shot_entries(read_report(tmp_path / "out"))["shot2"]["status"] == "done"
    assert len(list((tmp_path / "out" / "shot2").iterdir())) == 2
    for extra, phrase in ((["--model", "big"], "only packaged model is 'demo'"),
                          (["--model", "demo", "--svd", str(manifest)], "replaces --svd/--lvcd")):  # fmt: skip
        refused = runner.invoke(app, [*common[:3], str(tmp_path / "other"), *common[4:], *extra])
        assert refused.exit_code == 2 and phrase in refused.output, refused.output


def test_without_svd_a_batch_takes_cached_weights_with_no_request_and_missing_ones_stop_it(
    film, tiny_weights, tmp_path, monkeypatch
):
    """No --svd: the workers asked the Hugging Face hub even for cached files (about 23 s of retries on a machine
    without network, per worker). Cached files are now used with no request; missing ones stop the batch in one line,
    naming --svd/--lvcd, and it leaves nothing behind."""
    import socket

    import huggingface_hub.constants

    def no_network(*args, **kwargs):
        raise AssertionError("the batch asked the network")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # and in worker processes
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    manifest = write_manifest(tmp_path / "film.json", [film["shot2"]])
    command = ["batch", str(manifest), "--config", str(TINY_CONFIG), "--steps", "1", "--format", "png", "--quiet"]
    missing = CliRunner().invoke(app, [*command, "-o", str(tmp_path / "none"), "--workers", "2", "--threads", "1"])
    assert missing.exit_code != 0 and "Could not get svd.safetensors" in missing.output, missing.output
    assert "--svd/--lvcd" in missing.output and len(missing.output.strip().splitlines()) == 1
    assert not (tmp_path / "none").exists()
    cache_official_files(tmp_path / "cache", tiny_weights)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # online, but the files are cached
    monkeypatch.delenv("HF_HUB_OFFLINE")
    done = CliRunner().invoke(app, [*command, "-o", str(tmp_path / "out"), "--threads", "1"])
    assert done.exit_code == 0, done.output
    assert shot_entries(read_report(tmp_path / "out"))["shot2"]["status"] == "done"


def test_evaluate_checks_every_ground_truth_entry_before_any_shot_runs(film, tiny_weights, tmp_path):
    """A missing ground truth, one of the wrong length (knowable from a folder listing) or missing line art for EDMD
    was found only after the whole batch had run: now one line, exit 2, before OUTDIR is even made."""
    manifest = write_manifest(tmp_path / "film.json", [film["shot2"], film["shot15"]])
    short = tmp_path / "short"
    short.mkdir()
    for frame in sorted(Path(film["shot15"]["lineart"]).iterdir())[:14]:
        shutil.copy(frame, short / frame.name)
    good = {"name": "shot2", "gt": film["shot2"]["lineart"]}
    cases = [
        (
            {"name": "shot15", "gt": str(tmp_path / "nope")},
            "the ground truth " + str(tmp_path / "nope") + " is not there",
        ),
        ({"name": "shot15", "gt": str(short)}, "the ground truth has 14 frames but the shot's line art has 15"),
        (
            {"name": "shot15", "gt": film["shot15"]["lineart"], "lineart": str(short)},
            "the line art for EDMD has 14 frames",
        ),
        ({"name": "shot15", "gt": film["shot15"]["lineart"], "lineart": str(tmp_path / "no")}, "EDMD " + str(tmp_path)),
    ]
    for entry, phrase in cases:
        truth = tmp_path / "gt.json"
        truth.write_text(json.dumps([good, entry]))
        started = time.perf_counter()
        result = batch_cli(tiny_weights, manifest, tmp_path / "out", "--evaluate", str(truth), "--metrics", "psnr")
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: gt.json, shot 'shot15': ") and phrase in result.output, result.output
        assert len(result.output.strip().splitlines()) == 1
        assert not (tmp_path / "out").exists() and time.perf_counter() - started < 20  # no shot ran


def test_evaluate_leaves_out_a_clip_found_unusable_only_when_scored_and_scores_the_others(
    local_run, film, tiny_weights, tmp_path
):
    """A video's frame count is known only by decoding it, so a wrong-length ground-truth video passes the early
    check; after the batch it costs only its own clip (a note), not the scores of every other shot (exit 2)."""
    import numpy as np

    from lvcd.io import open_writer

    outdir = tmp_path / "out"
    shutil.copytree(local_run, outdir)  # a finished batch: re-running it only evaluates
    video = tmp_path / "gt15.mp4"
    with open_writer(video, fps=10) as writer:
        for _ in range(3):
            writer.write(np.zeros((64, 64, 3), np.uint8))
    truth = tmp_path / "gt.json"
    truth.write_text(
        json.dumps([{"name": "shot15", "gt": str(video)}, {"name": "shot2", "gt": film["shot2"]["lineart"]}])
    )
    manifest = write_manifest(tmp_path / "film.json", [film["shot2"], film["shot15"]])
    result = batch_cli(
        tiny_weights, manifest, outdir, "--evaluate", str(truth), "--metrics", "psnr", "--eval-size", "64"
    )
    assert result.exit_code == 0, result.output
    assert (
        "note: not evaluated: clip 'shot15': the prediction has 15 frames but the ground truth has 3" in result.output
    )
    evaluation = json.loads((outdir / "evaluation.json").read_text())
    assert [clip["name"] for clip in evaluation["clips"]] == ["shot2"]
    assert any("shot15" in note for note in read_report(outdir)["evaluation"]["notes"])


def test_evaluate_asked_for_region_is_refused_and_a_metric_set_leaves_it_out(film, tiny_weights, tmp_path, monkeypatch):
    """A batch has no region label maps: asked for by name, region is refused before any shot runs (its skip reason
    said to give --labels, an option batch does not have); a metric set (default, all) leaves it out."""
    from lvcd.errors import InputError

    manifest = write_manifest(tmp_path / "film.json", [film["shot2"]])
    truth = tmp_path / "gt.json"
    truth.write_text(json.dumps([{"name": "shot2", "gt": film["shot2"]["lineart"]}]))
    result = batch_cli(tiny_weights, manifest, tmp_path / "out", "--evaluate", str(truth), "--metrics", "psnr,region")
    assert result.exit_code == 2 and "--metrics region needs region label maps" in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
    seen = {}

    def stop(metrics, **_):
        seen["metrics"] = metrics
        raise InputError("stopped here")

    monkeypatch.setattr("lvcd.metrics.build_tools", stop)
    for chosen in ("default", "all"):
        batch_cli(tiny_weights, manifest, tmp_path / "out", "--evaluate", str(truth), "--metrics", chosen)
        assert "psnr" in seen["metrics"] and "region" not in seen.pop("metrics")
