"""Every command against bad input, one table: each case must exit with its code and ONE `error:` line naming the
offending option or file, print no traceback, leave no output (nor a hidden partial or work folder), and leave
every input byte-identical. Weights are never loaded for a case that input checks can refuse: loading them fails the
test (so every error arrives before the slow part)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
import torch
from typer.testing import CliRunner

from lvcd.cli import app

from .conftest import World, checksums

runner = CliRunner()


def colorize(w: World, *extra: str, drop: tuple[str, ...] = (), **options: str) -> list[str]:
    """`lvcd colorize` on the world's good inputs, with ``options`` ({"reference": path, ...}) replaced."""
    given = {
        "--svd": w.svd, "--lvcd": w.lvcd, "--config": w.config, "--reference": w.reference, "--lineart": w.lineart,
        "--output": w.out / "result.mp4", "--steps": "1", "--seed": "1",
    }  # fmt: skip
    for name, value in options.items():
        given["--" + name.replace("_", "-")] = value
    args = ["colorize", "--quiet"]
    for name, value in given.items():
        if name not in drop:
            args += [name, str(value)]
    return args + list(extra)


@dataclass(frozen=True)
class Case:
    id: str
    args: Callable[[World], list[str]]
    says: tuple[str, ...]  # fragments of the one error line (the option and/or the file)
    code: int = 2
    loads_weights: bool = False  # True only where the fault is inside the weights themselves
    needs: Callable[[], str | None] = field(default=lambda: None)  # a reason to skip, or None


def _no_cuda() -> str | None:
    return "this machine has CUDA" if torch.cuda.is_available() else None


CASES = [
    # ---------------------------------------------------------------- colorize: inputs
    Case("colorize-missing-reference", lambda w: colorize(w, reference=w.inputs / "nope.png"), ("--reference", "nope.png")),
    Case("colorize-reference-not-image", lambda w: colorize(w, reference=w.not_image), ("--reference", "notes.png")),
    Case("colorize-reference-folder", lambda w: colorize(w, reference=w.empty), ("--reference", "empty", "folder")),
    Case("colorize-missing-lineart", lambda w: colorize(w, lineart=w.inputs / "gone"), ("--lineart", "gone")),
    Case("colorize-empty-lineart", lambda w: colorize(w, lineart=w.empty), ("empty",)),
    Case("colorize-mixed-sizes", lambda w: colorize(w, lineart=w.mixed), ("f999.png",)),
    Case("colorize-huge-frames", lambda w: colorize(w, lineart=w.huge), ("--lineart", "huge", "7000x6000", "40 megapixels")),
    Case("lineart-huge-frames", lambda w: ["lineart", str(w.huge), "-o", str(w.out / "l"), "--method", "xdog"], ("huge", "40 megapixels")),
    Case("colorize-dangling-frame-link", lambda w: colorize(w, lineart=w.dangling), ("dangling", "2b.png", "broken link")),
    Case("colorize-truncated-video", lambda w: colorize(w, lineart=w.truncated), ("cut.mp4", "declares 40 frames")),
    Case("colorize-keyframe-syntax", lambda w: colorize(w, "--keyframe", "two=key.png"), ("--keyframe", "two=key.png")),
    Case("colorize-keyframe-range", lambda w: colorize(w, "--keyframe", f"9={w.keyframe}"), ("--keyframe 9=", "outside the shot's frames 0..3")),
    Case("colorize-keyframe-zero", lambda w: colorize(w, "--keyframe", f"0={w.keyframe}"), ("--keyframe 0=", "reference")),
    Case("colorize-keyframe-on-reference-frame", lambda w: colorize(w, "--reference-frame", "2", "--keyframe", f"2={w.keyframe}"), ("--keyframe 2=", "--reference-frame 2")),
    Case("colorize-reference-frame-range", lambda w: colorize(w, "--reference-frame", "4"), ("--reference-frame 4", "0..3")),
    Case("colorize-keyframe-missing", lambda w: colorize(w, "--keyframe", "2=nokey.png"), ("--keyframe 2=nokey.png",)),
    Case("colorize-keyframe-not-image", lambda w: colorize(w, "--keyframe", f"2={w.not_image}"), ("--keyframe 2=", "notes.png")),
    Case("colorize-lineart-method-without-from-color", lambda w: colorize(w, lineart_method="xdog"), ("--lineart-method xdog", "only with --from-color")),
    Case("colorize-lineart-weights-missing", lambda w: colorize(w, "--from-color", lineart_weights=w.inputs / "sk.pth"), ("--lineart-weights", "sk.pth")),
    # ---------------------------------------------------------------- colorize: options
    Case("colorize-size-syntax", lambda w: colorize(w, size="big"), ("--size", "big")),
    Case("colorize-size-multiple", lambda w: colorize(w, size="100x100"), ("--size", "100x100", "multiples")),
    Case("colorize-dtype", lambda w: colorize(w, dtype="fp8"), ("--dtype", "fp8")),
    Case("colorize-vae-dtype", lambda w: colorize(w, vae_dtype="int8"), ("--vae-dtype", "int8")),
    Case("colorize-fps-zero", lambda w: colorize(w, fps="0"), ("--fps 0", "from 0.001 to 1000")),
    Case("colorize-fps-negative", lambda w: colorize(w, fps="-5"), ("--fps -5",)),
    Case("colorize-fps-too-slow-for-a-gif", lambda w: colorize(w, fps="0.001", output=w.out / "slow.gif"), ("--fps 0.001", "655.35 s")),
    Case("colorize-fps-tiny", lambda w: colorize(w, fps="0.0001"), ("--fps 0.0001", "from 0.001 to 1000")),
    Case("colorize-polarity", lambda w: colorize(w, polarity="sideways"), ("--polarity", "sideways")),
    Case("colorize-lineart-levels", lambda w: colorize(w, lineart_levels="always"), ("--lineart-levels", "always")),
    Case("colorize-reference-mode", lambda w: colorize(w, reference_mode="last"), ("--reference-mode",)),
    Case("colorize-keyframe-previous-sample", lambda w: colorize(w, "--keyframe", f"2={w.keyframe}", reference_mode="previous-sample"), ("--keyframe", "--reference-mode")),
    Case("colorize-device-cuda", lambda w: colorize(w, device="cuda"), ("--device cuda", "--device cpu"), needs=_no_cuda),
    Case("colorize-device-unknown", lambda w: colorize(w, device="tpu"), ("--device 'tpu'", "not a device")),
    Case("colorize-seed-too-large", lambda w: colorize(w, seed=str(2**70)), ("--seed", "2**64-1")),
    Case("colorize-keyframe-twice", lambda w: colorize(w, "--keyframe", f"2={w.keyframe}", "--keyframe", f"2={w.keyframe}"), ("--keyframe 2", "twice")),
    Case("colorize-config-invalid-json", lambda w: colorize(w, config=w.bad_json), ("--config", "broken.json", "not valid JSON")),
    Case("colorize-config-missing", lambda w: colorize(w, config=w.inputs / "nothere.json"), ("--config", "nothere.json")),
    Case("colorize-config-unknown-preset", lambda w: colorize(w, config="svd-huge"), ("--config", "svd-huge")),
    Case("colorize-model-unknown", lambda w: colorize(w, drop=("--svd", "--lvcd", "--config"), model="big"), ("--model", "big")),
    Case("colorize-demo-size-multiple", lambda w: colorize(w, drop=("--svd", "--lvcd", "--config"), model="demo", size="100x100"), ("--size", "100x100", "multiples of 16")),
    Case("colorize-model-and-files", lambda w: colorize(w, drop=("--config",), model="demo"), ("--model demo", "--svd")),
    # ---------------------------------------------------------------- colorize: weights
    Case("colorize-svd-missing", lambda w: colorize(w, svd=w.inputs / "svd.safetensors"), ("svd.safetensors", "does not exist")),
    Case("colorize-both-weights-missing", lambda w: colorize(w, svd=w.inputs / "svd.safetensors", lvcd=w.inputs / "lvcd.ckpt"), ("--svd", "svd.safetensors", "--lvcd", "lvcd.ckpt")),
    Case("colorize-weights-swapped", lambda w: colorize(w, svd=w.lvcd, lvcd=w.svd), ("swapped",), loads_weights=True),
    Case("colorize-weights-not-weights", lambda w: colorize(w, lvcd=w.reference), ("reference.png",), loads_weights=True),
    # ---------------------------------------------------------------- colorize: outputs
    Case("colorize-output-image-name", lambda w: colorize(w, output=w.out / "frame.png"), ("frame.png", "not one image")),
    Case("colorize-output-is-reference", lambda w: colorize(w, "--overwrite", output=w.reference), ("--reference", "reference.png", "never writes")),
    Case("colorize-output-hardlink-of-reference", lambda w: colorize(w, "--overwrite", output=w.hardlink), ("--reference", "hardlink_to_reference.png")),
    Case("colorize-output-is-lineart-folder", lambda w: colorize(w, "--overwrite", output=w.lineart), ("--lineart", "lineart")),
    Case("colorize-output-inside-lineart", lambda w: colorize(w, output=w.lineart / "colour.mp4"), ("--lineart", "colour.mp4")),
    Case("colorize-output-holds-inputs", lambda w: colorize(w, "--overwrite", output=w.inputs), ("holds", "never deletes")),
    Case("colorize-output-is-lvcd-weights", lambda w: colorize(w, "--overwrite", output=w.lvcd), ("--lvcd", "tiny_lvcd.ckpt")),
    Case("colorize-output-is-svd-weights", lambda w: colorize(w, "--overwrite", output=w.svd), ("--svd", "tiny_svd.safetensors")),
    Case("colorize-output-is-config", lambda w: colorize(w, "--overwrite", output=w.config), ("--config", "tiny_config.json")),
    Case("colorize-output-is-keyframe", lambda w: colorize(w, "--overwrite", "--keyframe", f"2={w.keyframe}", output=w.keyframe), ("--keyframe 2=", "key.png")),
    Case("colorize-overwrite-folder-of-other-work", lambda w: colorize(w, "--overwrite", output=w.user_dir), ("project", "more than PNG frames")),
    Case("colorize-output-exists", lambda w: colorize(w, output=w.out / "existing.mp4"), ("existing.mp4", "--overwrite")),
    Case("colorize-output-dangling-link", lambda w: colorize(w, output=w.dangling_output), ("dangling_output", "is a link to", "does not exist")),
    Case("colorize-output-through-link-loop", lambda w: colorize(w, output=w.loop / "x.mp4"), ("loop", "link loop")),
    Case("lineart-output-through-link-loop", lambda w: ["lineart", str(w.lineart), "-o", str(w.loop / "x"), "--method", "xdog"], ("loop", "link loop")),
    Case("colorize-reference-damaged", lambda w: colorize(w, reference=w.cut_reference), ("--reference", "cut_reference.png", "not a readable image")),
    Case("colorize-keyframe-damaged", lambda w: colorize(w, "--keyframe", f"2={w.cut_reference}"), ("--keyframe 2=", "cut_reference.png")),
    Case("colorize-damaged-frame-read-as-drawn", lambda w: colorize(w, lineart=w.damaged, lineart_levels="off"), ("damaged", "export the frame again")),
    Case("colorize-resume-onto-a-finished-output", lambda w: colorize(w, "--resume", output=w.out / "existing.mp4"), ("existing.mp4", "--resume continues", "--overwrite")),
    Case("colorize-keyframe-negative", lambda w: colorize(w, f"--keyframe=-1={w.keyframe}"), ("--keyframe '-1=", "start at 0")),
    Case("colorize-reference-too-large", lambda w: colorize(w, reference=w.big_reference), ("--reference", "8000x6000", "40 megapixels")),
    Case("colorize-reference-bomb", lambda w: colorize(w, reference=w.bomb), ("--reference", "bomb.png", "too large")),
    Case("colorize-keyframe-bomb", lambda w: colorize(w, "--keyframe", f"2={w.bomb}"), ("--keyframe 2=", "bomb.png", "too large")),
    Case("colorize-output-parent-is-file", lambda w: colorize(w, output=w.a_file / "result.mp4"), ("a_file", "is a file")),
    Case("colorize-work-dir-of-user-files", lambda w: colorize(w, work_dir=w.user_dir), ("--work-dir", "project", "not an lvcd work directory")),
    Case("colorize-work-dir-is-file", lambda w: colorize(w, work_dir=w.a_file), ("--work-dir", "a_file")),
    Case("colorize-work-dir-is-input", lambda w: colorize(w, work_dir=w.lineart), ("--work-dir", "lineart")),
    Case("colorize-work-dir-inside-output", lambda w: colorize(w, "--overwrite", output=w.out / "frames", work_dir=w.out / "frames" / "w"), ("--work-dir", "overlap")),
    # ---------------------------------------------------------------- lineart
    Case("lineart-missing-input", lambda w: ["lineart", str(w.inputs / "none"), "-o", str(w.out / "l")], ("none",)),
    Case("lineart-output-is-input", lambda w: ["lineart", str(w.lineart), "-o", str(w.lineart), "--overwrite", "--method", "xdog"], ("INPUT", "lineart")),
    Case("lineart-output-inside-input", lambda w: ["lineart", str(w.lineart), "-o", str(w.lineart / "x"), "--method", "xdog"], ("INPUT", "lineart")),
    Case("lineart-weights-missing", lambda w: ["lineart", str(w.lineart), "-o", str(w.out / "l"), "--weights", str(w.inputs / "sk.pth")], ("--weights", "sk.pth")),
    Case("lineart-device-cuda", lambda w: ["lineart", str(w.lineart), "-o", str(w.out / "l"), "--device", "cuda", "--method", "xdog"], ("--device cuda",), needs=_no_cuda),
    Case("lineart-output-parent-is-file", lambda w: ["lineart", str(w.lineart), "-o", str(w.a_file / "l"), "--method", "xdog"], ("a_file", "is a file")),
    Case("lineart-dangling-frame-link", lambda w: ["lineart", str(w.dangling), "-o", str(w.out / "l"), "--method", "xdog"], ("dangling", "2b.png", "broken link")),
    Case("lineart-mixed-sizes", lambda w: ["lineart", str(w.mixed), "-o", str(w.out / "l"), "--method", "xdog"], ("f999.png", "differs from the first frame's")),
    Case("lineart-damaged-frame", lambda w: ["lineart", str(w.damaged), "-o", str(w.out / "l"), "--method", "xdog"], ("damaged", "damaged")),
    Case("lineart-truncated-video", lambda w: ["lineart", str(w.truncated), "-o", str(w.out / "l"), "--method", "xdog"], ("cut.mp4", "declares 40")),
    # ---------------------------------------------------------------- convert
    Case("convert-both-missing", lambda w: ["convert", "--svd", "s.safetensors", "--lvcd", "l.ckpt", "-o", str(w.out / "c.safetensors")], ("s.safetensors", "l.ckpt")),
    Case("convert-output-is-lvcd", lambda w: ["convert", "--svd", str(w.svd), "--lvcd", str(w.lvcd), "-o", str(w.lvcd), "--overwrite"], ("--lvcd", "tiny_lvcd.ckpt")),
    Case("convert-output-is-svd", lambda w: ["convert", "--svd", str(w.svd), "--lvcd", str(w.lvcd), "-o", str(w.svd), "--overwrite"], ("--svd", "tiny_svd.safetensors")),
    Case("convert-config-invalid-json", lambda w: ["convert", "--svd", str(w.svd), "--lvcd", str(w.lvcd), "-o", str(w.out / "c.safetensors"), "--config", str(w.bad_json)], ("--config", "broken.json")),
    Case("convert-output-parent-is-file", lambda w: ["convert", "--svd", str(w.svd), "--lvcd", str(w.lvcd), "-o", str(w.a_file / "c.safetensors")], ("a_file",)),
    Case("convert-output-is-folder", lambda w: ["convert", "--svd", str(w.svd), "--lvcd", str(w.lvcd), "-o", str(w.out)], ("is a folder",)),
    # ---------------------------------------------------------------- evaluate
    Case("evaluate-json-onto-prediction", lambda w: ["evaluate", "--pred", str(w.lineart), "--gt", str(w.lineart), "--json", str(w.lineart / "s.json"), "--no-progress"], ("--json", "lineart")),
    Case("evaluate-json-parent-is-file", lambda w: ["evaluate", "--pred", str(w.lineart), "--gt", str(w.lineart), "--json", str(w.a_file / "s.json"), "--no-progress"], ("--json", "a_file")),
    Case("evaluate-device-cuda", lambda w: ["evaluate", "--pred", str(w.lineart), "--gt", str(w.lineart), "--device", "cuda", "--no-progress"], ("--device cuda",), needs=_no_cuda),
    Case("evaluate-json-exists", lambda w: ["evaluate", "--pred", str(w.lineart), "--gt", str(w.lineart), "--json", str(w.out / "existing.mp4"), "--no-progress"], ("--json", "existing.mp4", "--overwrite")),
    Case("evaluate-json-is-a-folder", lambda w: ["evaluate", "--pred", str(w.lineart), "--gt", str(w.lineart), "--json", str(w.user_dir), "--overwrite", "--no-progress"], ("--json", "project", "is a folder")),
    Case("evaluate-size-huge", lambda w: ["evaluate", "--pred", str(w.lineart), "--gt", str(w.lineart), "--size", "30000", "--no-progress"], ("--size 30000x30000", "at most 4096")),
    Case("evaluate-size", lambda w: ["evaluate", "--pred", str(w.lineart), "--gt", str(w.lineart), "--size", "huge", "--no-progress"], ("--size", "huge")),
    Case("evaluate-neither-pred-nor-manifest", lambda w: ["evaluate", "--no-progress"], ("--pred", "--manifest")),
    Case("evaluate-raft-other-network", lambda w: ["evaluate", "--pred", str(w.lineart), "--gt", str(w.lineart), "--metrics", "tc", "--flow", "raft", "--raft-weights", str(w.lvcd), "--size", "128", "--no-progress"], ("lvcd.ckpt", "RAFT-large")),
    Case("evaluate-raft-size", lambda w: ["evaluate", "--pred", str(w.lineart), "--gt", str(w.lineart), "--metrics", "tc", "--flow", "raft", "--raft-weights", str(w.lvcd), "--size", "64", "--no-progress"], ("at least 128x128", "--size")),
    Case("evaluate-flow", lambda w: ["evaluate", "--pred", str(w.lineart), "--gt", str(w.lineart), "--flow", "farneback", "--no-progress"], ("farneback",)),
    # ---------------------------------------------------------------- data
    Case("data-synth-huge-size", lambda w: ["data", "synth", str(w.out / "synth"), "--shots", "1", "--frames", "15", "--size", "100000x100000"], ("--size 100000x100000", "at most 4096")),
    Case("data-missing-input", lambda w: ["data", "prepare", str(w.inputs / "no.mp4"), "-o", str(w.out / "root"), "--svd", str(w.svd)], ("no.mp4",)),
    Case("data-output-inside-input", lambda w: ["data", "prepare", str(w.lineart), "-o", str(w.lineart / "root"), "--svd", str(w.svd), "--lineart-method", "xdog"], ("INPUT", "lineart")),
    Case("data-svd-missing", lambda w: ["data", "prepare", str(w.lineart), "-o", str(w.out / "root"), "--svd", str(w.inputs / "s.safetensors")], ("--svd", "s.safetensors")),
    Case("data-no-clips", lambda w: ["data", "prepare", str(w.short_shot), "-o", str(w.out / "root"), "--svd", str(w.svd), "--config", str(w.config), "--size", "32x64", "--lineart-method", "xdog", "--quiet"], ("no clips", "short_shot: 10 frames")),
    Case("data-truncated-video", lambda w: ["data", "prepare", str(w.truncated), "-o", str(w.out / "root"), "--svd", str(w.svd), "--config", str(w.config), "--size", "32x64", "--lineart-method", "xdog", "--quiet"], ("cut.mp4", "declares 40")),
    Case("data-size", lambda w: ["data", "prepare", str(w.lineart), "-o", str(w.out / "root"), "--svd", str(w.svd), "--size", "30x64", "--lineart-method", "xdog"], ("multiples of 8",)),
    # ---------------------------------------------------------------- train, batch, demo
    Case("train-config-missing", lambda w: ["train", "--config", str(w.inputs / "train.json")], ("train.json",)),
    Case("train-config-invalid-toml", lambda w: ["train", "--config", str(w.toml)], ("train.toml",)),
    Case("batch-manifest-missing", lambda w: ["batch", str(w.inputs / "shots.csv"), "-o", str(w.out / "batch")], ("shots.csv",)),
    Case("batch-lineart-levels", lambda w: ["batch", str(w.inputs / "shots.csv"), "-o", str(w.out / "batch"), "--lineart-levels", "max"], ("--lineart-levels", "max")),
    Case("batch-config-unknown-preset", lambda w: ["batch", str(w.inputs / "shots.csv"), "-o", str(w.out / "batch"), "--config", "svd-huge"], ("--config", "svd-huge")),
    Case("batch-device-unknown", lambda w: ["batch", str(w.inputs / "shots.csv"), "-o", str(w.out / "batch"), "--device", "tpu"], ("--device 'tpu'", "not a device")),
    Case("demo-fps-zero", lambda w: ["demo", "-o", str(w.out / "demo.mp4"), "--fps", "0"], ("--fps 0",)),
    Case("demo-json-is-the-output", lambda w: ["demo", "-o", str(w.out / "demo.mp4"), "--json", str(w.out / "demo.mp4")], ("--json", "output video too")),
    Case("demo-json-exists", lambda w: ["demo", "-o", str(w.out / "demo.mp4"), "--json", str(w.out / "existing.mp4")], ("--json", "existing.mp4", "--overwrite")),
    Case("demo-json-is-a-folder", lambda w: ["demo", "-o", str(w.out / "demo.mp4"), "--json", str(w.user_dir), "--overwrite"], ("--json", "project", "is a folder")),
    Case("demo-output-parent-is-file", lambda w: ["demo", "-o", str(w.a_file / "demo.mp4")], ("a_file",)),
]  # fmt: skip


@pytest.fixture(scope="module")
def prepared(world):
    (world.out / "existing.mp4").write_bytes(b"an earlier result")
    import shutil

    # a frame linked to nothing (its target moved away): a missing frame, not a shorter shot
    world.paths["dangling"] = shutil.copytree(world.lineart, world.inputs / "dangling")
    (world.dangling / "2b.png").symlink_to(world.inputs / "moved_away.png")
    # a shot whose last frame is cut short: found before any frame is worked on
    world.paths["damaged"] = shutil.copytree(world.lineart, world.inputs / "damaged")
    last = sorted(world.damaged.iterdir())[-1]
    last.write_bytes(last.read_bytes()[:-40])
    whole = checksums(world.inputs, whole_below=0)
    yield world
    assert checksums(world.inputs, whole_below=0) == whole  # the weights too, hashed whole after all cases


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case: Case, prepared: World, monkeypatch):
    reason = case.needs()
    if reason:
        pytest.skip(reason)
    if not case.loads_weights:

        def no_weights(*args, **kwargs):
            raise AssertionError("weights were loaded before the inputs were checked")

        monkeypatch.setattr("lvcd.weights.PendingModel.load", no_weights)  # the tensors read
    inputs_before, outputs_before = checksums(prepared.inputs), checksums(prepared.out)
    result = runner.invoke(app, case.args(prepared))
    text = result.output
    assert result.exit_code == case.code, text
    assert "Traceback" not in text and not isinstance(result.exception, AssertionError), text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, text
    for fragment in case.says:
        assert fragment in errors[0], f"{fragment!r} not in {errors[0]!r}"
    assert checksums(prepared.out) == outputs_before  # no output, no hidden partial, no work folder
    assert checksums(prepared.inputs) == inputs_before  # every input byte-identical


def test_the_table_is_big_enough():
    assert len(CASES) >= 50
    prefixes = {case.id.split("-")[0] for case in CASES}
    assert prefixes >= {"colorize", "lineart", "convert", "evaluate", "data", "train", "batch", "demo"}


def test_a_shot_too_big_for_the_gpu_is_refused_before_the_weights_load(prepared: World, monkeypatch):
    """On CUDA the preflight compares the shot's estimated peak (lvcd.memory_estimate, a lower bound) with the GPU's
    free memory. No GPU here: CUDA's answers are stood in for (a GPU with 1 kB free)."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (1000, 80 * 10**9))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))  # an H100/H200

    def no_weights(*args, **kwargs):
        raise AssertionError("weights were loaded before the inputs were checked")

    monkeypatch.setattr("lvcd.weights.PendingModel.load", no_weights)  # the tensors read
    inputs_before = checksums(prepared.inputs)
    result = runner.invoke(app, colorize(prepared, device="cuda"))
    assert result.exit_code == 2 and not isinstance(result.exception, AssertionError), result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert "--device cuda" in line and "0.0 GB free" in line and "smaller --size" in line, line
    assert checksums(prepared.inputs) == inputs_before


def test_the_gpu_memory_advice_names_the_settings_that_fit(monkeypatch):
    """The official network at 320x576 (estimates: 6.7 GB by default, 6.2 with a bf16 VAE, 5.6 with --offload)."""
    import torch

    from lvcd.cli.checks import check_gpu_memory
    from lvcd.config import get_config
    from lvcd.errors import InputError

    opts = {"device": "cuda", "dtype": None, "vae_dtype": None, "offload": False}
    config = get_config("svd-lvcd")
    for free_gb, expected in ((6.0, "try --offload (about 5.6 GB)"), (4.0, "smaller --size")):
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None, f=free_gb: (int(f * 1e9), 80 * 10**9))
        with pytest.raises(InputError) as refused:
            check_gpu_memory(opts, config, (320, 576))
        assert "needs at least 6.7 GB" in str(refused.value) and expected in str(refused.value), str(refused.value)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (int(7.0e9), 80 * 10**9))
    check_gpu_memory(opts, config, (320, 576))  # fits: no error
    check_gpu_memory({**opts, "device": "cpu"}, config, (320, 576))  # no CUDA question on the CPU


def test_a_shot_too_big_for_this_machines_memory_is_refused_before_loading(monkeypatch):
    """The CPU has no out-of-memory error to catch: the system kills the process. The official network at 320x576
    needs about 12 GB in fp32; a machine with 8 GB available is told so, one with 64 GB goes ahead."""
    import lvcd.cli.checks as checks
    from lvcd.config import get_config
    from lvcd.errors import InputError

    opts = {"device": "cpu", "dtype": None, "vae_dtype": None, "offload": False}
    config = get_config("svd-lvcd")
    monkeypatch.setattr(checks, "available_ram", lambda: 8 * 10**9)
    with pytest.raises(InputError, match=r"needs at least 1\d\.\d GB of memory at 320x576 on the CPU .* 8.0 GB avail"):
        checks.check_cpu_memory(opts, config, (320, 576))
    monkeypatch.setattr(checks, "available_ram", lambda: 64 * 10**9)
    checks.check_cpu_memory(opts, config, (320, 576))  # fits
    monkeypatch.setattr(checks, "available_ram", lambda: 32 * 10**9)
    with pytest.raises(InputError, match=r"needs at least 48.6 GB of memory at 1280x2304"):  # 16x the trained area:
        checks.check_cpu_memory(opts, config, (1280, 2304))  # extended from a 16th and an 8th (a full trace: 48.6)
