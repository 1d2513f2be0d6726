"""lvcd.io.writers: formats round-trip through FrameSource; writes are atomic and never clobber."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import av
import numpy as np
import pytest
from PIL import Image

from lvcd.errors import InputError
from lvcd.io.frames import FrameSource
from lvcd.io.writers import open_writer, output_kind


def _frame(index: int, height: int = 48, width: int = 64) -> np.ndarray:
    frame = np.zeros((height, width, 3), np.uint8)
    frame[:, : width // 2] = [200, 40, 40]
    frame[:, width // 2 :] = [30, 160, 90]
    frame[(4 * index) % (height - 4) : (4 * index) % (height - 4) + 4, 8:40] = 250
    return frame


def _leftovers(folder) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


def test_output_kind_by_suffix():
    assert output_kind("a.mp4") == output_kind("a.MOV") == output_kind("a.mkv") == "mp4"
    assert output_kind("a.webm") == "webm" and output_kind("a.gif") == "gif"
    assert output_kind("frames") == output_kind("shot.v2") == "png"
    with pytest.raises(InputError, match="folder name"):
        output_kind("out.png")


@pytest.mark.parametrize(
    ("name", "size_hw", "max_error"),
    [
        ("even.mp4", (48, 64), 6.0),
        ("odd.mp4", (47, 63), 6.0),
        ("clip.webm", (47, 63), 6.0),
        ("anim.gif", (47, 63), 0.0),
        ("frames", (47, 63), 0.0),
    ],
)
def test_formats_round_trip(tmp_path, name, size_hw, max_error):
    frames = [_frame(index, *size_hw) for index in range(7)]
    with open_writer(tmp_path / name, fps=20) as writer:
        for frame in frames:
            writer.write(frame)
    assert writer.frames_written == 7 and writer.path == tmp_path / name
    assert _leftovers(tmp_path) == []
    source = FrameSource.open(tmp_path / name)
    assert len(source) == 7 and source.size_hw == size_hw
    decoded = list(source)
    assert len(decoded) == 7
    for got, expected in zip(decoded, frames, strict=True):
        assert got.shape == expected.shape
        assert np.abs(got.astype(int) - expected).mean() <= max_error
    if name.endswith((".mp4", ".gif", ".webm")):
        assert source.fps == pytest.approx(20.0)
    if name == "frames":
        assert source.names == [f"{i:05d}" for i in range(7)]


def test_mp4_pixel_format_depends_on_parity(tmp_path):
    """Odd sizes are H.264 4:4:4, which QuickTime, Safari and many editors cannot play: said when it is written."""
    import warnings

    for name, size_hw, pix_fmt in [("even.mp4", (48, 64), "yuv420p"), ("odd.mp4", (48, 63), "yuv444p")]:
        with warnings.catch_warnings(record=True) as caught, open_writer(tmp_path / name) as writer:
            warnings.simplefilter("always")
            writer.write(_frame(0, *size_hw))
        said = [str(warning.message) for warning in caught]
        if pix_fmt == "yuv444p":
            assert len(said) == 1 and "63x48 frames have an odd side" in said[0] and "write .webm" in said[0]
        else:
            assert said == []
        with av.open(str(tmp_path / name)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == pix_fmt
            assert (stream.codec_context.height, stream.codec_context.width) == size_hw


def test_png_names_and_invalid_names(tmp_path):
    with open_writer(tmp_path / "out") as writer:
        writer.write(_frame(0), name="frame_a")
        writer.write(_frame(1), name="frame_b")
        with pytest.raises(ValueError, match="repeated"):
            writer.write(_frame(2), name="frame_a")
        with pytest.raises(ValueError, match="repeated"):  # one file on case-insensitive file systems
            writer.write(_frame(2), name="Frame_A")
        with pytest.raises(ValueError, match="invalid"):
            writer.write(_frame(2), name="../escape")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["frame_a.png", "frame_b.png"]


def test_output_appears_only_when_closed(tmp_path):
    for name in ("clip.mp4", "frames"):
        writer = open_writer(tmp_path / name)
        writer.write(_frame(0))
        writer.write(_frame(1))
        assert not (tmp_path / name).exists()
        # only a hidden temporary next to the target (the encoder may not have created its file yet)
        assert all(left.startswith(f".{name}.partial-") for left in _leftovers(tmp_path))
        assert writer.close() == tmp_path / name
        assert (tmp_path / name).exists() and _leftovers(tmp_path) == []


def test_abort_and_exception_leave_nothing(tmp_path):
    writer = open_writer(tmp_path / "a.mp4")
    writer.write(_frame(0))
    writer.abort()
    with pytest.raises(RuntimeError, match="abort"):
        writer.close()
    with pytest.raises(KeyError), open_writer(tmp_path / "b.webm") as writer:
        writer.write(_frame(0))
        raise KeyError("crash mid-shot")
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_the_old_output(tmp_path):
    with open_writer(tmp_path / "out.gif") as writer:
        writer.write(_frame(0))
    before = (tmp_path / "out.gif").read_bytes()
    with pytest.raises(KeyError), open_writer(tmp_path / "out.gif", overwrite=True) as writer:
        writer.write(_frame(3))
        raise KeyError("crash")
    assert (tmp_path / "out.gif").read_bytes() == before and _leftovers(tmp_path) == []


def test_killed_process_leaves_no_partial_output(tmp_path):
    script = textwrap.dedent(
        f"""
        import os, numpy as np
        from lvcd.io.writers import open_writer
        writer = open_writer({str(tmp_path / "killed.mp4")!r})
        for index in range(80):  # enough for the encoder to flush packets to the temporary file
            writer.write(np.random.default_rng(index).integers(0, 255, (64, 64, 3), dtype=np.uint8))
        os._exit(9)  # dies like a killed process: no close, no cleanup
        """
    )
    assert subprocess.run([sys.executable, "-c", script], timeout=60).returncode == 9
    assert not (tmp_path / "killed.mp4").exists()
    (partial,) = _leftovers(tmp_path)
    assert partial.startswith(".killed.mp4.partial-") and (tmp_path / partial).stat().st_size > 0


def test_refuses_to_overwrite_without_flag(tmp_path):
    (tmp_path / "out.mp4").write_bytes(b"precious")
    with pytest.raises(InputError, match="already exists.*--overwrite"):
        open_writer(tmp_path / "out.mp4")
    assert (tmp_path / "out.mp4").read_bytes() == b"precious"
    with open_writer(tmp_path / "out.mp4", overwrite=True) as writer:
        writer.write(_frame(0))
    assert len(FrameSource.open(tmp_path / "out.mp4")) == 1


def test_overwrite_replaces_a_folder_entirely(tmp_path):
    old = tmp_path / "frames"
    old.mkdir()
    (old / "stale.png").write_bytes(b"old")
    with pytest.raises(InputError, match="already exists"):
        open_writer(old)
    with open_writer(old, overwrite=True) as writer:
        writer.write(_frame(0))
    assert sorted(p.name for p in old.iterdir()) == ["00000.png"] and _leftovers(tmp_path) == []


def test_refuses_to_write_onto_inputs(tmp_path):
    lineart = tmp_path / "lineart"
    lineart.mkdir()
    Image.fromarray(_frame(0)).save(lineart / "0.png")
    reference = tmp_path / "ref.png"
    Image.fromarray(_frame(0)).save(reference)
    inputs = [lineart, reference]
    with pytest.raises(InputError, match="onto or into the input"):
        open_writer(reference, overwrite=True, inputs=inputs)
    with pytest.raises(InputError, match="onto or into the input"):
        open_writer(lineart / "colored.mp4", inputs=inputs)
    with pytest.raises(InputError, match="holds the input"):
        open_writer(tmp_path, overwrite=True, inputs=inputs)
    video = tmp_path / "in.mp4"
    video.write_bytes(b"x")
    with pytest.raises(InputError, match="onto or into the input"):
        open_writer(tmp_path / "sub" / ".." / "in.mp4", overwrite=True, inputs=[video])
    assert (lineart / "0.png").exists() and reference.exists() and video.read_bytes() == b"x"


def test_misuse_errors(tmp_path):
    with pytest.raises(InputError, match="fps"):
        open_writer(tmp_path / "a.mp4", fps=0)
    writer = open_writer(tmp_path / "nested" / "dir" / "a.mp4")  # missing parents are created
    writer.write(_frame(0))
    with pytest.raises(ValueError, match="size"):
        writer.write(_frame(0, 32, 32))
    writer.abort()
    empty = open_writer(tmp_path / "empty.gif")
    with pytest.raises(ValueError, match="no frames"):
        empty.close()
    assert not (tmp_path / "empty.gif").exists() and _leftovers(tmp_path) == []


def test_output_created_meanwhile_is_not_clobbered_and_result_is_kept(tmp_path):
    writer = open_writer(tmp_path / "race.gif")
    writer.write(_frame(0))
    (tmp_path / "race.gif").write_bytes(b"someone else's file")
    with pytest.raises(InputError, match="appeared while writing.*kept at"):
        writer.close()
    del writer
    assert (tmp_path / "race.gif").read_bytes() == b"someone else's file"
    assert _leftovers(tmp_path) == []  # kept under a visible name, which no clean-up of temporaries ever takes
    (kept,) = tmp_path.glob("race.lvcd-*.gif")
    assert len(FrameSource.open(kept)) == 1


@pytest.mark.parametrize("suffix", [".mp4", ".webm", ".mkv"])
def test_the_same_frames_give_the_same_file_byte_for_byte(tmp_path, suffix):
    """One encoder thread, bit-exact muxing: no random ids or dates (WebM's segment id differed on every run)."""
    frames = [_frame(i, 96, 128) for i in range(12)]
    written = []
    for attempt in range(2):
        with open_writer(tmp_path / f"run{attempt}{suffix}", fps=20) as writer:
            for frame in frames:
                writer.write(frame)
        written.append((tmp_path / f"run{attempt}{suffix}").read_bytes())
    assert written[0] == written[1]


_ENCODE_WITH_HEAP_JUNK = """
import hashlib, sys
import numpy as np
from lvcd.data.synthetic import synth_shot
from lvcd.io.writers import open_writer

rng = np.random.default_rng(int(sys.argv[2]))
shot = synth_shot(7, 12, (320, 576))
with open_writer(sys.argv[1], fps=20) as writer:
    for index, frame in enumerate(shot.frames):  # flat colours and a little noise, as a colorized shot
        noisy = np.asarray(frame, np.float32) + np.random.default_rng(index).normal(0, 3, np.shape(frame))
        junk = [rng.integers(0, 255, int(rng.integers(1000, 400000)), np.uint8).tobytes() for _ in range(20)]
        del junk  # the heap now holds different bytes in each process
        writer.write(np.clip(noisy, 0, 255).astype(np.uint8))
print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())
"""


def test_an_h264_file_depends_on_the_frames_only_not_on_the_memory_the_encoder_finds(tmp_path):
    """x264's macroblock-tree rate control read uninitialised memory on flat-colour content: the same frames gave a
    different .mp4 in each process (4 of 4 differed here). With it off, three processes with different heaps agree."""
    digests = {
        subprocess.run(
            [sys.executable, "-c", _ENCODE_WITH_HEAP_JUNK, str(tmp_path / f"run{seed}.mp4"), str(seed)],
            capture_output=True, text=True, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"},
        ).stdout.strip()
        for seed in (1, 2, 3)
    }  # fmt: skip
    assert len(digests) == 1, digests


def test_overwrite_replaces_a_folder_of_frames_never_a_folder_of_other_work(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for name in ("00000.png", "old_9.PNG", ".DS_Store"):
        (frames / name).write_bytes(b"x")
    with open_writer(frames, overwrite=True) as writer:
        writer.write(_frame(0))
    assert sorted(p.name for p in frames.iterdir()) == ["00000.png"]

    renders = tmp_path / "renders"
    (renders / "subproject").mkdir(parents=True)
    (renders / "notes.txt").write_text("mine")
    (renders / "a.png").write_bytes(b"x")
    with pytest.raises(
        InputError,
        match=r"renders: holds more than PNG frames \(notes.txt, subproject/\); --overwrite \(overwrite=True\)",
    ):
        open_writer(renders, overwrite=True)
    assert sorted(p.name for p in renders.iterdir()) == ["a.png", "notes.txt", "subproject"]


def test_a_folder_filled_with_other_files_while_writing_is_kept_and_the_result_too(tmp_path):
    target = tmp_path / "out"
    writer = open_writer(target, overwrite=True)
    writer.write(_frame(0))
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match=r"holds more than PNG frames \(notes.txt\).*; the result is kept at"):
        writer.close()
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    (kept,) = [p for p in tmp_path.iterdir() if p.name.startswith("out.lvcd-")]
    assert [p.name for p in kept.iterdir()] == ["00000.png"]


@pytest.mark.parametrize("fps", [0.0001, 0.0, -24.0, 5000.0, float("nan"), float("inf")])
def test_a_frame_rate_a_video_cannot_hold_is_refused_before_any_frame(tmp_path, fps):
    """fps under 1/1000 became a time base of 1/0 and failed after the whole shot was computed (ZeroDivisionError)."""
    with pytest.raises(InputError, match=r"from 0\.001 to 1000"):
        open_writer(tmp_path / "shot.mp4", fps=fps)
    assert list(tmp_path.iterdir()) == []


def test_a_gif_faster_than_browsers_play_is_said_and_slow_ones_write(tmp_path):
    import warnings

    with warnings.catch_warnings(record=True) as caught, open_writer(tmp_path / "fast.gif", fps=60) as writer:
        warnings.simplefilter("always")
        writer.write(_frame(0))
    assert len(caught) == 1 and "browsers play frames shorter than 0.02 s" in str(caught[0].message)
    with open_writer(tmp_path / "slow.gif", fps=0.002) as writer:  # 500 s a frame: a GIF delay holds it
        writer.write(_frame(0))
        writer.write(_frame(1))
    with Image.open(tmp_path / "slow.gif") as gif:
        assert gif.info["duration"] == 500_000
    # a GIF delay is 16 bits of 1/100 s: 1000 s a frame wrapped around (655.35 s, then 344.64 s); refused
    with pytest.raises(InputError, match=r"a GIF frame lasts at most 655\.35 s"):
        open_writer(tmp_path / "slower.gif", fps=0.001)
    with open_writer(tmp_path / "slow.mp4", fps=0.001) as writer:  # a video's time base holds 1/1000
        writer.write(_frame(0))
