"""`lvcd colorize` and LVCDPipeline on the tiny model: any length, any size, parity, resume, bad inputs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from conftest import TINY_CONFIG, assert_close_rel
from lvcd.cli import app
from lvcd.errors import InputError
from lvcd.io import FrameSource
from lvcd.pipeline import LVCDPipeline
from lvcd.testing.drawings import scanned
from lvcd.workdir import WorkDirMismatch

REAL_LINEART = Path(__file__).parent / "fixtures" / "io" / "lineart"


@pytest.fixture(scope="module")
def pipe(tiny_weights) -> LVCDPipeline:
    return LVCDPipeline.from_single_file(tiny_weights["svd"], tiny_weights["lvcd"], config=TINY_CONFIG, device="cpu")


def _shot(folder: Path, count: int, size_hw=(64, 128), seed: int = 0) -> tuple[Path, Path]:
    """A synthetic shot: dark-lines drawings of a moving circle, and a coloured frame 0."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    height, width = size_hw
    yy, xx = np.mgrid[:height, :width]
    for index in range(count):
        cx, cy = width * (0.3 + 0.4 * index / max(count, 1)), height / 2
        ring = np.abs(np.hypot(xx - cx, yy - cy) - height / 4) < 1.5
        Image.fromarray(np.where(ring, 0, 255).astype(np.uint8)).save(folder / f"f{index}.png")
    colour = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    reference = folder.parent / f"{folder.name}_ref.png"
    Image.fromarray(colour).save(reference)
    return folder, reference


def _cli(tiny_weights, *args: str):
    runner = CliRunner()
    base = [
        "colorize",
        "--svd",
        str(tiny_weights["svd"]),
        "--lvcd",
        str(tiny_weights["lvcd"]),
        "--config",
        str(TINY_CONFIG),
        "--quiet",
    ]
    return runner.invoke(app, base + list(args))


def test_cli_writes_one_frame_per_input_frame(tmp_path, tiny_weights):
    """Frame bookkeeping for every length is tested on the planners (test_longvideo); the CLI runs once: two windows,
    the second mostly held frames."""
    frames, reference = _shot(tmp_path / "lineart", 16)
    out = tmp_path / "out"
    result = _cli(
        tiny_weights,
        "--reference",
        str(reference),
        "--lineart",
        str(frames),
        "-o",
        str(out),
        "--steps",
        "1",
        "--seed",
        "3",
    )
    assert result.exit_code == 0, result.output
    written = sorted(out.iterdir())
    assert sorted(p.name for p in written) == sorted(f"f{i}.png" for i in range(16))  # named as the drawings
    assert Image.open(written[0]).size == (128, 64)
    assert not (tmp_path / ".out.lvcd-work").exists()  # work dir removed after success


def test_png_frames_are_named_after_the_line_art_files_or_numbered(pipe, tmp_path):
    """A compositor matches frames by name: a folder's file stems carry over (natural order kept); a video or a list
    of arrays has no names, so frames are numbered 00000, 00001, ..."""
    frames, reference = _shot(tmp_path / "l", 3)
    for index, name in enumerate(["sc01_0009", "sc01_0010", "sc01_0011"]):
        (frames / f"f{index}.png").rename(frames / f"{name}.png")
    pipe(reference, frames, num_steps=1, seed=0, output=tmp_path / "named", progress=False)
    assert sorted(p.name for p in (tmp_path / "named").iterdir()) == ["sc01_0009.png", "sc01_0010.png", "sc01_0011.png"]
    drawings = [np.asarray(Image.open(frames / f"sc01_00{i}.png")) for i in ("09", "10", "11")]
    pipe(reference, drawings, num_steps=1, seed=0, output=tmp_path / "numbered", progress=False)
    assert sorted(p.name for p in (tmp_path / "numbered").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    for named, numbered in (("sc01_0009", "00000"), ("sc01_0011", "00002")):  # the same frames either way
        pixels = [
            np.asarray(Image.open(tmp_path / kind / f"{n}.png"))
            for kind, n in (("named", named), ("numbered", numbered))
        ]
        assert np.array_equal(*pixels)


def test_cli_says_before_the_job_that_scanned_paper_is_levelled(tmp_path, tiny_weights):
    frames, reference = _shot(tmp_path / "scan", 3)
    noise = np.random.default_rng(0)
    for path in frames.iterdir():  # the drawings on grey, grainy paper
        gray = np.asarray(Image.open(path), dtype=np.float32)
        Image.fromarray(
            np.clip(np.rint(30 + gray * 0.7 + noise.normal(0, 4, gray.shape)), 0, 255).astype(np.uint8)
        ).save(path)
    common = ["--reference", str(reference), "--lineart", str(frames), "--steps", "1", "--seed", "3"]
    levelled = _cli(tiny_weights, *common, "-o", str(tmp_path / "a.mp4"))
    assert levelled.exit_code == 0, levelled.output
    (line,) = [line for line in levelled.stderr.splitlines() if line.startswith("line art:")]
    assert "scanned paper levelled: paper 208" in line and "--lineart-levels off" in line
    as_drawn = _cli(tiny_weights, *common, "-o", str(tmp_path / "b.mp4"), "--lineart-levels", "off")
    assert as_drawn.exit_code == 0 and "line art:" not in as_drawn.stderr
    clean_frames, _ = _shot(tmp_path / "clean", 3)
    clean = _cli(tiny_weights, "--reference", str(reference), "--lineart", str(clean_frames), "--steps", "1",
                 "-o", str(tmp_path / "c.mp4"))  # fmt: skip
    assert clean.exit_code == 0 and "line art:" not in clean.stderr


@pytest.mark.parametrize("count", [1, 2])
def test_shots_without_a_full_window(pipe, tmp_path, count):
    """One frame needs no sampling at all (the reference's VAE round trip); two frames fill a window with held frames."""
    frames, reference = _shot(tmp_path / "l", count)
    result = pipe(reference, frames, num_steps=1, seed=0, progress=False)
    assert result.latents.shape[0] == result.frames.shape[0] == count


def test_cli_odd_size_video_round_trip(tmp_path, tiny_weights):
    frames, reference = _shot(tmp_path / "lineart", 5, size_hw=(333, 500))
    out = tmp_path / "shot.mp4"
    result = _cli(
        tiny_weights,
        "--reference",
        str(reference),
        "--lineart",
        str(frames),
        "-o",
        str(out),
        "--steps",
        "1",
        "--seed",
        "1",
    )
    assert result.exit_code == 0, result.output
    video = FrameSource.open(out)
    assert len(video) == 5 and tuple(video.size_hw) == (333, 500)


def test_pipeline_matches_official_long_video_sampling(pipe, sample_n35):
    """Official notebook settings on the N=35 golden run: final latents and decoded frames."""
    result = pipe(
        (sample_n35["reference"][0] + 1) / 2,
        sample_n35["sketches_1ch"],
        polarity="bright-lines",
        initial_noise=sample_n35["x_T"],
        reference_noise=sample_n35["first_cond_eps"],
        progress=False,
    )
    assert_close_rel(result.latents, sample_n35["latents"], name="latents")
    assert_close_rel(result.frames * 2 - 1, sample_n35["frames"], name="frames")


def test_seed_reproduces_and_differs(pipe, tmp_path):
    frames, reference = _shot(tmp_path / "l", 3)
    runs = [pipe(reference, frames, num_steps=1, seed=s, progress=False).latents for s in (5, 5, 6)]
    assert torch.equal(runs[0], runs[1])
    assert not torch.equal(runs[0], runs[2])


def test_keyframe_changes_only_windows_after_it(pipe, tmp_path):
    frames, reference = _shot(tmp_path / "l", 30, size_hw=(64, 64))  # the smallest size: windows are what matters
    key = np.full((64, 64, 3), 200, np.uint8)
    plain = pipe(reference, frames, num_steps=1, seed=2, progress=False).latents
    keyed = pipe(reference, frames, num_steps=1, seed=2, keyframes={20: key}, progress=False).latents
    assert torch.equal(plain[:25], keyed[:25])  # windows 0-1 start before frame 20 (window 2 adds frames 25..)
    assert not torch.equal(plain[25:], keyed[25:])


def test_line_art_extracted_from_colour_frames_through_the_python_api(pipe, tmp_path):
    from lvcd.lineart import get_extractor

    colour = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(REAL_LINEART.glob("*.png"))]
    colour = [np.stack([frame[..., 0], frame[..., 1] // 2, frame[..., 2]], axis=-1) for frame in colour]
    xdog = get_extractor("xdog")
    with pytest.warns(UserWarning, match="outside LVCD's training distribution"):
        extracted = pipe(colour[0], colour, num_steps=1, seed=0, extract_lineart="xdog", progress=False)
    by_hand = pipe(colour[0], [xdog(frame) for frame in colour], num_steps=1, seed=0, progress=False)
    assert extracted.polarity == by_hand.polarity == "dark-lines"
    assert torch.equal(extracted.latents, by_hand.latents)
    with pytest.raises(InputError, match="contradicts"):
        pipe(colour[0], colour, extract_lineart=xdog, polarity="bright-lines", progress=False)


def test_polarity_detected_on_real_line_art(pipe, tmp_path):
    drawings = sorted(REAL_LINEART.glob("*.png"))
    assert len(drawings) >= 3
    reference = np.asarray(Image.open(drawings[0]).convert("RGB"))
    dark = pipe(reference, [np.asarray(Image.open(p)) for p in drawings], num_steps=1, seed=0, progress=False)
    bright = pipe(reference, [255 - np.asarray(Image.open(p)) for p in drawings], num_steps=1, seed=0, progress=False)
    assert dark.polarity == "dark-lines" and bright.polarity == "bright-lines"
    assert dark.frames.shape[-2:] == tuple(np.asarray(Image.open(drawings[0])).shape[:2])
    # Both polarities mean the same drawing, so the model sees the same hints.
    assert torch.allclose(dark.latents, bright.latents, atol=1e-5)


def test_killed_run_resumes_bit_identically(pipe, tmp_path, tiny_weights):
    """SIGKILL a `lvcd colorize` process after its second window; resuming in another process gives the bytes of an
    uninterrupted run."""
    frames, reference = _shot(tmp_path / "lineart", 35, size_hw=(64, 64))  # 3 windows at the smallest size

    work = tmp_path / "work"
    cmd = [
        sys.executable, "-m", "lvcd.cli", "colorize", "--svd", str(tiny_weights["svd"]), "--lvcd",
        str(tiny_weights["lvcd"]), "--config", str(TINY_CONFIG), "--quiet", "--reference", str(reference),
        "--lineart", str(frames), "--steps", "3", "--seed", "11", "-o", str(tmp_path / "resumed"),
        "--work-dir", str(work),
    ]  # fmt: skip
    killed = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stderr=subprocess.DEVNULL)
    # the uninterrupted run goes on in a thread (one CPU thread, as the process's) while this one watches the process
    with ThreadPoolExecutor(1) as executor:
        uninterrupted = executor.submit(
            pipe, reference, frames, num_steps=3, seed=11, output=tmp_path / "full", progress=False
        )
        deadline = time.time() + 300
        while not (work / "window_000001.safetensors").exists() and killed.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        killed.send_signal(signal.SIGKILL)
        killed.wait()
        uninterrupted.result()
    assert (work / "window_000000.safetensors").exists() and not (work / "window_000002.safetensors").exists()
    assert not (tmp_path / "resumed").exists()  # nothing partial at the target

    pipe(reference, frames, num_steps=3, seed=11, output=tmp_path / "resumed", work_dir=work, resume=True)
    full, resumed = sorted((tmp_path / "full").iterdir()), sorted((tmp_path / "resumed").iterdir())
    assert [p.name for p in full] == [p.name for p in resumed] and len(full) == 35
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(full, resumed, strict=True))


def test_resume_refuses_a_work_dir_of_another_job_saying_what_differs(pipe, tmp_path):
    frames, reference = _shot(tmp_path / "l", 16, size_hw=(64, 64))  # the smallest size: the job's identity counts
    pipe(reference, frames, num_steps=1, seed=1, work_dir=tmp_path / "w", progress=False)
    with pytest.raises(WorkDirMismatch, match=r"belongs to a job .*\(seed 1 then, 2 now; steps 1 then, 2 now\)"):
        pipe(reference, frames, num_steps=2, seed=2, work_dir=tmp_path / "w", resume=True, progress=False)
    Image.fromarray(np.full((64, 64), 255, np.uint8)).save(frames / "f3.png")  # a drawing redone
    with pytest.raises(WorkDirMismatch, match=r"\(the line art differs\); give the same inputs"):
        pipe(reference, frames, num_steps=1, seed=1, work_dir=tmp_path / "w", resume=True, progress=False)


def _scan(tmp_path: Path) -> tuple[Path, Path]:
    frames, reference = _shot(tmp_path / "scan", 16, size_hw=(64, 64))  # the smallest size
    for path in frames.iterdir():
        Image.fromarray(scanned(np.asarray(Image.open(path)), paper=200, ink=40, grain=4)).save(path)
    return frames, reference


def test_a_refused_resume_names_the_line_art_reading_that_matches(pipe, tmp_path):
    """A job on a scan read as drawn (or made before lvcd levelled scans) is resumed by --lineart-levels off; the
    refusal says so, for directories with the parts recorded and for those an older lvcd made (no parts)."""
    frames, reference = _scan(tmp_path)
    work = tmp_path / "w"
    pipe(reference, frames, num_steps=1, seed=1, lineart_levels="off", work_dir=work, progress=False)
    with pytest.raises(WorkDirMismatch, match=r"line art differs \(it was read as drawn then: --lineart-levels off "):
        pipe(reference, frames, num_steps=1, seed=1, work_dir=work, resume=True, progress=False)
    settings = json.loads((work / "settings.json").read_text())
    assert settings["parts"]["line-art levels"] == "as drawn"
    (work / "settings.json").write_text(json.dumps({k: settings[k] for k in ("fingerprint", "seed")}))
    with pytest.raises(WorkDirMismatch, match=r"older lvcd; if its line art is a scan .*--lineart-levels off reads"):
        pipe(reference, frames, num_steps=1, seed=1, work_dir=work, resume=True, progress=False)
    resumed = pipe(reference, frames, num_steps=1, seed=1, lineart_levels="off", work_dir=work, resume=True,
                   progress=False)  # fmt: skip
    assert resumed.lineart_levels is None and resumed.frames.shape[0] == 16


def test_the_job_fingerprint_is_the_hash_earlier_versions_recorded(tmp_path):
    """Work directories of earlier versions must stay resumable: the fingerprint is the settings + arrays hash it was
    (its parts are kept beside it, outside the hash), the hints read in pieces."""
    import hashlib

    from lvcd.hints import HintStore
    from lvcd.longvideo import plan_windows
    from lvcd.shot import ShotJob, job_identity

    hint_array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    np.save(tmp_path / "hints.npy", hint_array)
    hints = HintStore(tmp_path / "hints.npy")
    hints.CHUNK_BYTES = 20  # pieces that cut frames and values
    images = {0: torch.full((1, 3, 8, 8), 0.5), 5: torch.full((1, 3, 8, 8), -0.25)}
    plan = SimpleNamespace(input_hw=(30, 40), model_hw=(64, 64))
    noise = torch.ones(14, 4, 8, 8)
    job = ShotJob(windows=plan_windows(16, 4, 14), plan=plan, hints=hints, images=images, polarity="dark-lines",
                  num_steps=25, seed=None, initial_noise=noise, reference_noise=None, prev_attn_steps=None,
                  work=None, progress=False)  # fmt: skip
    config = SimpleNamespace(name="svd-lvcd")
    settings = {"steps": 25, "seed": 7, "overlap": 4, "prev_attn_steps": None, "plan": [(30, 40), (64, 64)],
                "polarity": "dark-lines", "config": "svd-lvcd", "dtype": "torch.float32", "keyframes": [0, 5],
                "prev_reference": True, "blending": True, "reference_mode": "first"}  # fmt: skip
    expected = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())  # the formula, spelt out
    for array in (hint_array, images[0].numpy(), images[5].numpy(), noise.numpy()):
        expected.update(array.tobytes())
    whole, parts = job_identity(job, 7, config, torch.float32)
    assert whole == expected.hexdigest()
    assert parts["seed"] == "7" and parts["polarity"] == "dark-lines" and parts["line-art levels"] == "as drawn"
    assert parts["line art"] == hashlib.sha256(b"{}" + hint_array.tobytes()).hexdigest()[:16]
    assert set(parts) >= {"reference", "keyframe images", "given noise"}


def _expect_error(result, *phrases):
    assert result.exit_code == 2, result.output
    for phrase in phrases:
        assert phrase in result.output


def test_bad_inputs_give_clear_errors_and_no_output(tmp_path, tiny_weights):
    frames, reference = _shot(tmp_path / "lineart", 4)
    out = tmp_path / "out.mp4"
    run = lambda *a: _cli(tiny_weights, "-o", str(out), "--steps", "1", *a)  # noqa: E731

    odd = tmp_path / "mixed"
    odd.mkdir()
    for i, size in enumerate([(128, 64), (128, 64), (100, 64)]):
        Image.new("L", size, 255).save(odd / f"{i}.png")
    _expect_error(run("--reference", str(reference), "--lineart", str(odd)), "2.png")

    broken = tmp_path / "broken"
    broken.mkdir()
    Image.new("L", (128, 64), 255).save(broken / "0.png")
    (broken / "1.png").write_text("not a png")
    _expect_error(run("--reference", str(reference), "--lineart", str(broken)), "1.png")

    empty = tmp_path / "empty"
    empty.mkdir()
    _expect_error(run("--reference", str(reference), "--lineart", str(empty)), "empty")

    not_image = tmp_path / "ref.png"
    not_image.write_text("hello")
    _expect_error(run("--reference", str(not_image), "--lineart", str(frames)), "ref.png")

    _expect_error(run("--reference", str(reference), "--lineart", str(frames), "--size", "100x100"), "64")
    _expect_error(run("--reference", str(reference), "--lineart", str(frames), "--dtype", "fp8"), "fp8")
    _expect_error(
        run("--reference", str(reference), "--lineart", str(frames), "--keyframe", "9=x.png"), "--keyframe 9=x.png"
    )
    assert not out.exists()
    assert not any(p.name.startswith(".out.mp4") and "partial" in p.name for p in tmp_path.iterdir())


@pytest.mark.parametrize("overlap", [2, 6])
def test_other_overlaps_keep_every_frame(pipe, tmp_path, overlap):
    # two windows, prev-reference attention with this overlap; 64x64, the smallest size: frames are counted
    frames, reference = _shot(tmp_path / "l", 20, size_hw=(64, 64))
    result = pipe(reference, frames, num_steps=1, seed=0, overlap=overlap, progress=False)
    assert result.latents.shape[0] == 20 and result.frames.shape[0] == 20


def test_resume_needs_a_work_dir_and_odd_reference_aspect_warns(pipe, tmp_path):
    frames, _ = _shot(tmp_path / "l", 2)
    wide = np.zeros((64, 256, 3), np.uint8)
    with pytest.raises(InputError, match="work_dir"):
        pipe(wide, frames, num_steps=1, seed=0, resume=True, progress=False)
    with pytest.warns(UserWarning, match="aspect ratio"):
        pipe(wide, frames, num_steps=1, seed=0, progress=False)


def test_a_source_that_yields_fewer_frames_than_announced_is_an_error(pipe, tmp_path):
    frames, reference = _shot(tmp_path / "l", 4)

    class ShortSource:
        size_hw = (64, 128)

        def __len__(self):
            return 4

        def __iter__(self):
            return (np.asarray(Image.open(p)) for p in sorted(frames.glob("*.png"))[:3])

    with pytest.raises(InputError, match="yielded 3 frames but announced 4"):
        pipe(reference, ShortSource(), num_steps=1, seed=0, progress=False)


def test_an_output_never_replaces_the_folder_of_a_reference_or_keyframe(pipe, tmp_path):
    frames, reference = _shot(tmp_path / "l", 3)
    renders = tmp_path / "renders"
    renders.mkdir()
    (renders / "ref.png").write_bytes(reference.read_bytes())
    (renders / "key.png").write_bytes(reference.read_bytes())
    for given in ({"reference": renders / "ref.png"}, {"keyframes": {2: renders / "key.png"}}):
        arguments = {"reference": reference, **given}
        with pytest.raises(InputError, match="would replace a folder that holds the input .*never deletes its inputs"):
            pipe(lineart=frames, num_steps=1, output=renders, overwrite=True, progress=False, **arguments)
    assert sorted(p.name for p in renders.iterdir()) == ["key.png", "ref.png"]


def test_keyframes_by_json_keys_twice_or_too_late_and_seeds_out_of_range(pipe, tmp_path):
    """Keyframe keys may be digit strings (as JSON gives them); one given twice is refused; one after the last
    window's start changes nothing and says so; a seed no generator takes is one line, not an overflow traceback."""
    frames, reference = _shot(tmp_path / "l", 20, size_hw=(64, 64))  # windows start at frames 1 and 15
    by_int = pipe(reference, frames, num_steps=1, seed=3, keyframes={5: reference}, progress=False)
    by_str = pipe(reference, frames, num_steps=1, seed=3, keyframes={"5": reference}, progress=False)
    assert torch.equal(by_int.frames, by_str.frames)
    with pytest.raises(InputError, match="Keyframe 5 is given twice"):
        pipe(reference, frames, num_steps=1, keyframes={5: reference, "5": reference}, progress=False)
    with pytest.raises(InputError, match="Keyframe key 'five' is not a frame index"):
        pipe(reference, frames, num_steps=1, keyframes={"five": reference}, progress=False)
    with pytest.warns(UserWarning, match=r"keyframe 17 changes nothing: .* the last one starts at frame 15"):
        late = pipe(reference, frames, num_steps=1, seed=3, keyframes={17: reference}, progress=False)
    plain = pipe(reference, frames, num_steps=1, seed=3, progress=False)
    assert torch.equal(late.frames, plain.frames)  # indeed nothing changed
    with pytest.raises(
        InputError, match=r"seed 1180591620717411303424 is not a whole number from -2\*\*63 to 2\*\*64-1"
    ):
        pipe(reference, frames, num_steps=1, seed=2**70, progress=False)
    negative = pipe(reference, frames, num_steps=1, seed=-1, progress=False)  # torch takes it; older jobs used it
    assert negative.seed == -1
    assert pipe(reference, frames, num_steps=1, seed=np.int64(3), progress=False).seed == 3  # numpy ints too


def test_a_reference_tensor_out_of_range_or_nan_is_refused(pipe, tmp_path):
    frames, _ = _shot(tmp_path / "l", 2)
    for tensor, phrase in (
        (torch.full((3, 64, 128), 5.0), "holds 5 to 5"),
        (torch.full((3, 64, 128), torch.nan), "NaN"),
    ):
        with pytest.raises(InputError, match=rf"reference tensor must hold values in \[0, 1\] .*{phrase}"):
            pipe(tensor, frames, num_steps=1, progress=False)


def test_frames_named_unusably_for_an_output_folder_are_numbered_instead(pipe, tmp_path):
    """A Linux file name may hold a backslash, which no output frame may: the frames are numbered (before any work)
    rather than failing in the decoder after the whole shot was sampled."""
    frames, reference = _shot(tmp_path / "l", 2)
    (frames / "f1.png").rename(frames / "a\\b.png")
    pipe(reference, frames, num_steps=1, seed=0, output=tmp_path / "out", progress=False)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["00000.png", "00001.png"]


def test_hints_are_stored_and_read_without_a_memory_map(tmp_path):
    """A memory-mapped hints store kept every page it wrote or read resident (RSS grew by the whole store: 2.4 GB
    for a 3000-frame shot at 320x576). The store is written and read with plain file I/O; what it gives back is
    what was written, by frame, and its bytes are hashed in pieces."""
    from lvcd.hints import HintStore, LineartFrames
    from lvcd.io import plan_size

    rng = np.random.default_rng(3)
    drawings = [rng.integers(0, 256, (40, 72), dtype=np.uint8) for _ in range(5)]
    plan = plan_size((40, 72), target_hw=(64, 128), multiple=64)
    store = HintStore.build(LineartFrames(drawings), plan, "dark-lines", tmp_path / "hints.npy", progress=False)
    stored = np.load(tmp_path / "hints.npy")  # a plain .npy file
    assert stored.shape == (5, *plan.model_hw) and stored.dtype == np.float32
    assert torch.equal(store.get([3, 1]), torch.from_numpy(stored[[3, 1]])[:, None])
    store.CHUNK_BYTES = 1000
    assert b"".join(store.byte_chunks()) == stored.tobytes()
    maps = Path("/proc/self/maps")
    if maps.exists():
        assert str(tmp_path / "hints.npy") not in maps.read_text()
    with pytest.raises(IndexError):
        store.get([5])
