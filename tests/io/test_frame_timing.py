"""Per-frame timing (lvcd.io.timing): a GIF's held drawings and a variable frame rate are read from the line art and
kept in what lvcd writes (the writers, `lvcd lineart`, `lvcd colorize`, ``result.save``); one rate stays one rate."""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from lvcd.cli import app
from lvcd.errors import InputError
from lvcd.io.frames import FrameSource
from lvcd.io.sizing import plan_size
from lvcd.io.timing import FrameClock, output_timing
from lvcd.io.writers import open_writer
from lvcd.result import ColorizeResult

HELD_MS = [100, 100, 300, 100, 500, 100]  # a drawing held 0.3 s, another 0.5 s; the last shorter than the one before
HELD = tuple(ms / 1000 for ms in HELD_MS)


def _drawings(count: int = 6, size: int = 32) -> list[np.ndarray]:
    """Dark-lines drawings, each its own (Pillow merges equal frames of a GIF into one)."""
    frames = []
    for index in range(count):
        frame = np.full((size, size, 3), 255, np.uint8)
        frame[4 + 4 * index : 6 + 4 * index, 4:-4] = 0
        frame[4:-4, 4 + 4 * index : 6 + 4 * index] = 0
        frames.append(frame)
    return frames


def _animation(path, durations_ms, frames=None):
    images = [Image.fromarray(frame) for frame in frames or _drawings(len(durations_ms))]
    images[0].save(path, save_all=True, append_images=images[1:], duration=list(durations_ms), loop=0)
    return path


def _gif_delays_ms(path) -> list[int]:
    with Image.open(path) as image:
        delays = []
        for index in range(image.n_frames):
            image.seek(index)
            delays.append(image.info["duration"])
        return delays


def _video_times(path) -> tuple[list[float], float]:
    """Each frame's start (seconds, display order) and the video's length as the file states it."""
    with av.open(str(path)) as container:
        starts = [float(frame.time) for frame in container.decode(video=0)]
        return starts, container.duration / 1_000_000


def _starts(durations) -> list[float]:
    return [round(sum(durations[:index]), 6) for index in range(len(durations))]


@pytest.mark.parametrize("suffix", [".gif", ".webp", ".png"])
def test_an_animations_frame_delays_are_read_when_they_vary(tmp_path, suffix):
    held = FrameSource.open(_animation(tmp_path / f"held{suffix}", HELD_MS))
    assert held.frame_durations == pytest.approx(HELD)
    assert FrameSource.open(_animation(tmp_path / f"even{suffix}", [80] * 6)).frame_durations is None


def test_one_rate_rounded_to_a_gifs_hundredths_is_one_rate(tmp_path):
    """15 fps in whole hundredths of a second is 7, 7, 6: read as one rate, written as before."""
    assert FrameSource.open(_animation(tmp_path / "a.gif", [70, 70, 60, 70, 70, 60])).frame_durations is None
    assert FrameSource.open(tmp_path / "a.gif").fps == pytest.approx(1000 / 70)


def _pyav_video(path, starts_ms, end_ms):
    """A Matroska video written with PyAV alone: frames at ``starts_ms`` (a 1/1000 s time base), ending at ``end_ms``."""
    durations = dict(zip(starts_ms, np.diff([*starts_ms, end_ms]).tolist(), strict=True))
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width = stream.height = 32
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for start, frame in zip(starts_ms, _drawings(len(starts_ms)), strict=True):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p")
            video_frame.pts, video_frame.time_base = start, Fraction(1, 1000)
            for packet in stream.encode(video_frame):
                packet.duration = durations[packet.pts]
                container.mux(packet)
        for packet in stream.encode():
            packet.duration = durations[packet.pts]
            container.mux(packet)
    return path


def test_a_variable_frame_rate_video_is_read_by_its_timestamps(tmp_path):
    vfr = FrameSource.open(_pyav_video(tmp_path / "vfr.mkv", [0, 100, 200, 500, 600, 1100], 1200))
    assert len(vfr) == 6 and vfr.frame_durations == pytest.approx(HELD)
    # 24 fps in whole milliseconds (41 or 42 ms a frame) is one rate
    steady = [round(index * 1000 / 24) for index in range(8)]
    assert FrameSource.open(_pyav_video(tmp_path / "cfr.mkv", steady, round(8000 / 24))).frame_durations is None
    folder = tmp_path / "frames"
    folder.mkdir()
    Image.fromarray(_drawings(1)[0]).save(folder / "0.png")
    Image.fromarray(_drawings(2)[1]).save(folder / "1.png")
    assert FrameSource.open(folder).frame_durations is None


@pytest.mark.parametrize("name", ["out.mp4", "out.mkv", "out.webm"])
def test_timed_frames_are_written_at_their_own_times(tmp_path, name):
    noise = np.random.default_rng(0).integers(0, 255, (6, 32, 32, 3), dtype=np.uint8)  # x264 ends on a P-frame here
    with open_writer(tmp_path / name, fps=10, durations=HELD) as writer:
        for frame in noise:
            writer.write(frame)
    starts, length = _video_times(tmp_path / name)
    assert starts == pytest.approx(_starts(HELD), abs=1e-3)
    assert length == pytest.approx(sum(HELD), abs=1e-3)  # the last frames are not cut off (MP4 with B-frames)
    assert FrameSource.open(tmp_path / name).frame_durations == pytest.approx(HELD, abs=1e-3)


def test_a_gif_keeps_its_delays_in_hundredths(tmp_path):
    with open_writer(tmp_path / "out.gif", fps=10, durations=HELD) as writer:
        for frame in _drawings():
            writer.write(frame)
    assert _gif_delays_ms(tmp_path / "out.gif") == HELD_MS  # the last one too: not the one before it
    # 1/24 s a frame, held for 2, 3 and 1 frames: rounded from the elapsed time, never accumulating
    clock = FrameClock([2 / 24, 3 / 24, 1 / 24, 2 / 24], Fraction(1, 100))
    assert clock.starts == [0, 8, 21, 25] and clock.end == 33


def test_durations_an_output_cannot_hold(tmp_path):
    with pytest.raises(InputError, match=r"out\.gif: a GIF frame lasts at most 655\.35 s") as caught:
        open_writer(tmp_path / "out.gif", durations=[0.1, 700.0])
    assert "\n" not in str(caught.value)
    with pytest.raises(InputError, match="positive number of seconds"):
        open_writer(tmp_path / "out.mp4", durations=[0.1, 0.0])
    assert list(tmp_path.iterdir()) == []
    with pytest.warns(UserWarning, match="AVI holds one frame rate"):
        writer = open_writer(tmp_path / "out.avi", fps=10, durations=HELD)
    with writer:
        for frame in _drawings():
            writer.write(frame)
    avi = FrameSource.open(tmp_path / "out.avi")
    assert len(avi) == 6 and avi.frame_durations is None
    writer = open_writer(tmp_path / "frames", durations=HELD)  # a folder of PNGs keeps no timing
    writer.write(_drawings(1)[0])
    writer.close()
    with pytest.warns(UserWarning, match="GIF frames as short as 0.005 s"):
        with open_writer(tmp_path / "fast.gif", durations=[0.005, 0.1]) as writer:
            writer.write(_drawings(1)[0])
            writer.write(_drawings(2)[1])


def test_an_fps_given_means_one_rate(tmp_path):
    source = FrameSource.open(_animation(tmp_path / "held.gif", HELD_MS))
    assert output_timing(24, source) == (24, None)
    assert output_timing(None, source) == (pytest.approx(10.0), pytest.approx(HELD))


def test_lineart_cli_keeps_a_gifs_holds(tmp_path):
    shot = _animation(tmp_path / "shot.gif", HELD_MS)
    for name in ("lines.gif", "lines.mp4"):
        result = CliRunner().invoke(app, ["lineart", str(shot), "-o", str(tmp_path / name), "--method", "levels"])
        assert result.exit_code == 0, result.output
    assert _gif_delays_ms(tmp_path / "lines.gif") == HELD_MS
    assert _video_times(tmp_path / "lines.mp4")[0] == pytest.approx(_starts(HELD), abs=1e-3)


def test_result_save_keeps_the_durations_unless_given_an_fps(tmp_path):
    frames = torch.from_numpy(np.stack(_drawings())).permute(0, 3, 1, 2).float() / 255
    plan = plan_size((32, 32), multiple=16, forced_hw=(32, 32))
    result = ColorizeResult(frames, torch.zeros(6, 4, 4, 4), plan, 0, "dark-lines", fps=10.0, frame_durations=HELD)
    assert _gif_delays_ms(result.save(tmp_path / "held.gif")) == HELD_MS
    assert _gif_delays_ms(result.save(tmp_path / "even.gif", fps=20)) == [50] * 6


def test_colorize_keeps_a_gifs_holds(tmp_path):
    shot = _animation(tmp_path / "shot.gif", HELD_MS)
    reference = tmp_path / "reference.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(reference)
    common = ["colorize", "--model", "demo", "--quiet", "--steps", "1", "--seed", "1", "-r", str(reference)]
    result = CliRunner().invoke(app, [*common, "-l", str(shot), "-o", str(tmp_path / "out.gif")])
    assert result.exit_code == 0, result.output
    assert _gif_delays_ms(tmp_path / "out.gif") == HELD_MS


def test_the_python_apis_result_keeps_a_gifs_holds_when_saved(tmp_path):
    from lvcd import LVCDPipeline

    shot = _animation(tmp_path / "shot.gif", HELD_MS)
    reference = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    result = LVCDPipeline.from_pretrained("demo")(reference, shot, num_steps=1, seed=1, progress=False)
    assert result.frame_durations == pytest.approx(HELD)
    assert _gif_delays_ms(result.save(tmp_path / "saved.gif")) == HELD_MS
