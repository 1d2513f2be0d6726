"""lvcd.io.frames.FrameSource on folders, videos written here, GIF / WebP animations and single images."""

from __future__ import annotations

import av
import numpy as np
import pytest
from PIL import Image

from lvcd.errors import InputError
from lvcd.io.frames import FrameSource
from lvcd.io.writers import open_writer


def _frame(index: int, height: int = 48, width: int = 64) -> np.ndarray:
    """A frame with flat colour areas and a moving white bar, so frames differ and compress well."""
    frame = np.zeros((height, width, 3), np.uint8)
    frame[:, : width // 2] = [200, 40, 40]
    frame[:, width // 2 :] = [30, 160, 90]
    frame[(4 * index) % (height - 4) : (4 * index) % (height - 4) + 4, 8:40] = 250
    return frame


def _write_folder(folder, names, sizes=None):
    folder.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(names):
        height, width = sizes[index] if sizes else (48, 64)
        Image.fromarray(_frame(index, height, width)).save(folder / name)
    return folder


def test_folder_source_natural_order_names_and_frames(tmp_path):
    folder = _write_folder(tmp_path / "shot", ["10.png", "2.png", "1.jpg", "0.png"])
    source = FrameSource.open(folder)
    assert len(source) == 4
    assert source.names == ["0", "1", "2", "10"]
    assert source.size_hw == (48, 64)
    assert source.fps is None
    frames = list(source)
    assert len(frames) == 4 and all(f.shape == (48, 64, 3) and f.dtype == np.uint8 for f in frames)
    assert np.array_equal(frames[0], _frame(3))  # "0.png" was written fourth (index 3)
    source.check_uniform_size()


def test_folder_source_size_mismatch_names_the_file(tmp_path):
    folder = _write_folder(tmp_path / "shot", ["0.png", "1.png", "2.png"], sizes=[(48, 64), (48, 64), (50, 64)])
    source = FrameSource.open(folder)
    with pytest.raises(InputError, match=r"2\.png.*64x50"):
        source.check_uniform_size()
    with pytest.raises(InputError, match=r"2\.png"):
        list(source)


def test_folder_source_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty.*no image files"):
        FrameSource.open(tmp_path / "empty")
    with pytest.raises(InputError, match="nowhere.*not found"):
        FrameSource.open(tmp_path / "nowhere")
    folder = _write_folder(tmp_path / "shot", ["0.png", "1.png"])
    (folder / "2.png").write_text("not a png")
    source = FrameSource.open(folder)
    with pytest.raises(InputError, match=r"2\.png.*not a readable image"):
        source.check_uniform_size()
    with pytest.raises(InputError, match=r"2\.png"):
        list(source)
    duplicate = _write_folder(tmp_path / "dup", ["1.png", "1.jpg"])
    with pytest.raises(InputError, match="share the name '1'"):
        FrameSource.open(duplicate)


def test_folder_frames_in_any_format_lvcd_reads_keep_their_slots(tmp_path):
    """GIF and TGA frames (studio exports) were skipped without a word: the shot lost them and every later frame moved
    one slot early. Each is a frame now, in its place."""
    folder = _write_folder(tmp_path / "shot", ["0.png", "1.gif", "2.tga", "3.jfif", "4.png"])
    source = FrameSource.open(folder)
    assert source.names == ["0", "1", "2", "3", "4"]
    frames = list(source)
    assert np.array_equal(frames[2], _frame(2))  # TGA: lossless, oriented as written
    assert np.abs(frames[1].astype(int) - _frame(1)).max() < 48  # GIF: a 256-colour palette


def test_a_picture_lvcd_cannot_read_named_like_the_frames_is_refused(tmp_path):
    """An .exr or .psd named like the shot's frames is a frame the shot would silently lose: refused by name before
    any work. Other files in the folder (notes, sidecars, a layout picture not named like a frame) stay ignored."""
    folder = _write_folder(tmp_path / "shot", ["frame_0001.png", "frame_0003.png"])
    for name in ("frame_0002.exr", "frame_0002.json", "layout.psd", "frame_0001.png.xmp", "notes.txt"):
        (folder / name).write_bytes(b"")
    with pytest.raises(InputError, match=r"frame_0002\.exr is named like this shot's frames.*convert it to PNG") as err:
        FrameSource.open(folder)
    assert "json" not in str(err.value) and "layout" not in str(err.value) and "xmp" not in str(err.value)
    (folder / "frame_0002.exr").unlink()
    assert FrameSource.open(folder).names == ["frame_0001", "frame_0003"]
    (folder / "frame_0004.psd").write_bytes(b"")
    (folder / "frame_0005.PSD").write_bytes(b"")
    with pytest.raises(InputError, match=r"frame_0004\.psd, frame_0005\.PSD are named like.*convert them"):
        FrameSource.open(folder)


def test_two_names_of_one_frame_number_are_refused(tmp_path):
    """frame_10 and frame_010 (a mix of padded and unpadded exports) were both taken: the shot got a frame twice. One
    file per frame number."""
    folder = _write_folder(tmp_path / "padded", ["frame_9.png", "frame_10.png", "frame_010.png"])
    with pytest.raises(InputError, match=r"frame_010\.png and frame_10\.png are the same frame number"):
        FrameSource.open(folder)
    # names differing only in case stay two frames (a case-sensitive disk holds both; see the lineart CLI's test)
    assert len(FrameSource.open(_write_folder(tmp_path / "case", ["Frame_8.PNG", "frame_8.png", "frame_9.png"]))) == 3
    assert FrameSource.open(_write_folder(tmp_path / "fine", ["a1.png", "a10.png", "b1.png"])).names == [
        "a1",
        "a10",
        "b1",
    ]


def test_single_image_and_unknown_type(tmp_path):
    Image.fromarray(_frame(0)).save(tmp_path / "ref.png")
    source = FrameSource.open(tmp_path / "ref.png")
    assert len(source) == 1 and source.names == ["00000"] and source.size_hw == (48, 64)
    assert np.array_equal(next(iter(source)), _frame(0))
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="notes.txt.*unknown file type"):
        FrameSource.open(tmp_path / "notes.txt")
    (tmp_path / "fake.png").write_text("hello")
    with pytest.raises(InputError, match="fake.png.*not a readable image"):
        FrameSource.open(tmp_path / "fake.png")


@pytest.mark.parametrize("suffix", [".mp4", ".webm"])
def test_video_source_exact_count_and_streaming(tmp_path, suffix):
    path = tmp_path / f"shot{suffix}"
    with open_writer(path, fps=12) as writer:
        for index in range(9):
            writer.write(_frame(index))
    with av.open(str(path)) as container:
        header_count = container.streams.video[0].frames
    source = FrameSource.open(path)
    assert len(source) == 9  # WebM headers store no count (header_count 0): counted by decoding
    assert suffix != ".webm" or header_count == 0
    assert source.size_hw == (48, 64) and source.fps == pytest.approx(12.0)
    assert source.names[0] == "00000" and source.names[-1] == "00008"
    frames = iter(source)
    first = next(frames)  # a generator: one frame decoded at a time
    assert first.shape == (48, 64, 3) and first.dtype == np.uint8
    assert np.abs(first.astype(int) - _frame(0)).mean() < 6
    assert 1 + sum(1 for _ in frames) == 9
    source.check_uniform_size()


def test_video_errors(tmp_path):
    fake = tmp_path / "clip.mp4"
    fake.write_text("definitely not a video")
    with pytest.raises(InputError, match="clip.mp4"):
        FrameSource.open(fake)
    empty = tmp_path / "empty.avi"
    with av.open(str(empty), "w") as container:  # a valid container whose video stream has no frames
        stream = container.add_stream("libx264", rate=20)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        container.start_encoding()
    with pytest.raises(InputError, match="empty.avi.*no decodable frames"):
        FrameSource.open(empty)
    audio_only = tmp_path / "sound.mkv"
    with av.open(str(audio_only), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000, layout="mono")
        frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        frame.sample_rate, frame.pts = 8000, 0
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    with pytest.raises(InputError, match="sound.mkv.*no video stream"):
        FrameSource.open(audio_only)


def test_gif_source_with_transparency_and_fps(tmp_path):
    frames = []
    for index in range(5):
        rgba = np.zeros((32, 40, 4), np.uint8)
        rgba[..., :3] = _frame(index, 32, 40)
        rgba[..., 3] = 255
        rgba[:4, :4, 3] = 0  # transparent corner -> white
        frames.append(Image.fromarray(rgba))
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0, disposal=2)
    source = FrameSource.open(path)
    assert len(source) == 5 and source.fps == pytest.approx(20.0) and source.size_hw == (32, 40)
    decoded = list(source)
    assert len(decoded) == 5
    for index, frame in enumerate(decoded):
        assert frame[0, 0].tolist() == [255, 255, 255]
        assert np.array_equal(frame[8:, 8:], _frame(index, 32, 40)[8:, 8:])


def test_animated_webp_source(tmp_path):
    frames = [Image.fromarray(_frame(index)) for index in range(4)]
    path = tmp_path / "anim.webp"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, lossless=True)
    source = FrameSource.open(path)
    assert len(source) == 4 and source.fps == pytest.approx(10.0)
    decoded = list(source)
    assert len(decoded) == 4 and np.array_equal(decoded[2], _frame(2))


def test_video_display_rotation_is_applied(tmp_path):
    path = tmp_path / "phone.mp4"
    frame = np.zeros((32, 64, 3), np.uint8)
    frame[:8, :8] = 255  # white top-left corner
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_rotation(90)  # display rotated 90 degrees counter-clockwise
        for index in range(2):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            video_frame.pts = index
            for packet in [*stream.encode(video_frame), *(stream.encode() if index == 1 else [])]:
                container.mux(packet)
    source = FrameSource.open(path)
    assert source.size_hw == (64, 32) and len(source) == 2
    shown = next(iter(source))
    assert shown.shape == (64, 32, 3)
    assert shown[-4, 4].min() > 200 and shown[4, 4].max() < 50  # top-left went to bottom-left


def test_a_truncated_video_is_refused_not_read_short(tmp_path):
    """Threaded decoding of a faststart MP4 cut short ends quietly after 13 of its 40 frames."""
    from lvcd.testing.faults import truncated_mp4

    path = truncated_mp4(tmp_path / "cut.mp4", frames=40, keep=0.4)
    with pytest.raises(InputError, match=r"cut\.mp4: the container declares 40 frames but only \d+ decode"):
        len(FrameSource.open(path))
    with pytest.raises(InputError, match="declares 40 frames"):
        list(FrameSource.open(path))
    whole = truncated_mp4(tmp_path / "whole.mp4", frames=12, keep=1.0)
    assert len(FrameSource.open(whole)) == 12 and len(list(FrameSource.open(whole))) == 12


def _cut(path, keep: float):
    data = path.read_bytes()
    cut = path.with_name(f"cut_{path.name}")
    cut.write_bytes(data[: int(len(data) * keep)])
    return cut


@pytest.mark.parametrize("suffix", [".mkv", ".webm"])
def test_a_truncated_matroska_video_is_refused_by_its_duration(tmp_path, suffix):
    """Matroska / WebM state no frame count, only a duration (2 s here): cut in half, the frames decoded span about
    1 s of it, which is refused rather than read as a shorter shot."""
    whole = tmp_path / f"shot{suffix}"
    with open_writer(whole, fps=12) as writer:
        for index in range(24):
            writer.write(_frame(index))
    assert len(FrameSource.open(whole)) == 24 and len(list(FrameSource.open(whole))) == 24
    FrameSource.open(whole).check_uniform_size()
    cut = _cut(whole, keep=0.5)
    expected = rf"cut_shot{suffix}: the file states a duration of 2 s \(24 frames expected at 12 fps\) but only \d+ "
    with pytest.raises(InputError, match=expected + r"frames \([\d.]+ s\) decode; the file is truncated or damaged"):
        len(FrameSource.open(cut))
    with pytest.raises(InputError, match="export it again"):
        list(FrameSource.open(cut))
    with pytest.raises(InputError, match="truncated or damaged"):
        FrameSource.open(cut).check_uniform_size()


def _variable_rate_video(path, times_ms: list[int], codec: str) -> None:
    """A video whose frames come at the given times (milliseconds): a variable frame rate."""
    from fractions import Fraction

    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.time_base = stream.codec_context.time_base = Fraction(1, 1000)
        for index, time_ms in enumerate(times_ms):
            frame = av.VideoFrame.from_ndarray(_frame(index), format="rgb24")
            frame.pts, frame.time_base = time_ms, Fraction(1, 1000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


@pytest.mark.parametrize(("suffix", "codec"), [(".mkv", "libx264"), (".webm", "libvpx-vp9")])
def test_a_variable_frame_rate_matroska_video_is_read_whole(tmp_path, suffix, codec):
    """10 frames 33 ms apart, then 10 frames 500 ms apart: FFmpeg's average rate (30 fps, from the first frames) times
    the 4.9 s duration would expect some 146 frames; the 20 frames' timestamps span the whole duration, so it passes."""
    path = tmp_path / f"vfr{suffix}"
    _variable_rate_video(path, [33 * index for index in range(10)] + [330 + 500 * index for index in range(10)], codec)
    source = FrameSource.open(path)
    assert len(source) == 20 and source.fps == pytest.approx(30.0)
    assert len(list(FrameSource.open(path))) == 20
    FrameSource.open(path).check_uniform_size()
    slow_first = tmp_path / f"slow_first{suffix}"
    _variable_rate_video(slow_first, [500 * index for index in range(10)] + [5000 + 33 * i for i in range(10)], codec)
    assert len(FrameSource.open(slow_first)) == 20


@pytest.mark.parametrize(("suffix", "codec"), [(".mkv", "libx264"), (".webm", "libvpx-vp9")])
def test_a_matroska_video_whose_frames_start_late_is_read_whole(tmp_path, suffix, codec):
    """A cut that kept its timestamps (frames from 5 s to 7 s): the stated duration counts from 0, so the frames reach
    it though they span only 2 s of it (found by review: refused as truncated)."""
    path = tmp_path / f"late{suffix}"
    _variable_rate_video(path, [5000 + 100 * index for index in range(20)], codec)
    assert len(FrameSource.open(path)) == 20 and len(list(FrameSource.open(path))) == 20


def test_a_multi_page_tiff_with_a_page_of_another_size_is_found_by_the_size_check(tmp_path):
    """A multi-page TIFF's pages each have their own size (an animation's frames share a canvas): found by the
    header check before any work, not when that page's turn comes."""
    pages = [Image.fromarray(_frame(0)), Image.fromarray(_frame(1)), Image.fromarray(_frame(2, 50, 64))]
    pages[0].save(tmp_path / "shot.tif", save_all=True, append_images=pages[1:])
    source = FrameSource.open(tmp_path / "shot.tif")
    assert len(source) == 3 and source.size_hw == (48, 64)
    with pytest.raises(InputError, match=r"shot\.tif page 2: size 64x50 differs from the first frame's 64x48"):
        source.check_uniform_size()
    pages[2] = Image.fromarray(_frame(2))
    pages[0].save(tmp_path / "even.tif", save_all=True, append_images=pages[1:])
    FrameSource.open(tmp_path / "even.tif").check_uniform_size()
