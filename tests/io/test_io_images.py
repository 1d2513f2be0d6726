"""lvcd.io.frames: natural sort, folder listing, image decoding of every Pillow mode, to_rgb_uint8."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lvcd.errors import InputError
from lvcd.io.frames import FrameSource, list_image_files, load_image, natural_key, to_rgb_uint8


def test_natural_key_orders_numbers_by_value():
    names = ["frame10.png", "frame2.png", "Frame1.png", "frame2b.png", "frame02.png", "a.png", "10.png", "9.png"]
    assert sorted(names, key=natural_key) == [
        "9.png", "10.png", "a.png", "Frame1.png", "frame02.png", "frame2.png", "frame2b.png", "frame10.png",
    ]  # fmt: skip


def test_natural_key_never_compares_int_with_str():
    sorted(["1a", "a1", "", "a", "1", "a1b2", "_"], key=natural_key)  # must not raise TypeError


def test_list_image_files_sorts_naturally_and_skips_non_images(tmp_path):
    for name in ["f10.png", "f2.jpg", "f1.PNG", "notes.txt", ".hidden.png", "._f3.png"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "old").mkdir()
    (tmp_path / ".ipynb_checkpoints").mkdir()
    assert [p.name for p in list_image_files(tmp_path)] == ["f1.PNG", "f2.jpg", "f10.png"]


def test_list_image_files_errors_name_the_folder(tmp_path):
    with pytest.raises(InputError, match="missing_dir.*not found"):
        list_image_files(tmp_path / "missing_dir")
    with pytest.raises(InputError, match="no image files"):
        list_image_files(tmp_path)
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(InputError, match="found a file"):
        list_image_files(tmp_path / "a.png")


def _save(tmp_path, image: Image.Image, name: str, **params):
    path = tmp_path / name
    image.save(path, **params)
    return path


def test_load_rgb_and_rgba_over_white(tmp_path):
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[0, 0] = [255, 0, 0, 255]  # opaque red
    rgba[0, 1] = [0, 0, 0, 0]  # fully transparent black -> white
    rgba[0, 2] = [0, 0, 0, 128]  # half-transparent black -> mid gray
    out = load_image(_save(tmp_path, Image.fromarray(rgba), "a.png"))
    assert out.dtype == np.uint8 and out.shape == (2, 3, 3)
    assert out[0, 0].tolist() == [255, 0, 0]
    assert out[0, 1].tolist() == [255, 255, 255]
    assert out[0, 2].tolist() == [127, 127, 127]


def test_load_la_and_palette_with_transparency(tmp_path):
    la = Image.new("LA", (2, 1))
    la.putpixel((0, 0), (0, 0))
    la.putpixel((1, 0), (0, 255))
    assert load_image(_save(tmp_path, la, "la.png"))[0].tolist() == [[255, 255, 255], [0, 0, 0]]
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    palette.putpixel((0, 0), 0)
    palette.putpixel((1, 0), 1)
    path = _save(tmp_path, palette, "p.png", transparency=0)
    assert Image.open(path).mode == "P"
    assert load_image(path)[0].tolist() == [[255, 255, 255], [0, 255, 0]]


def test_load_palette_gray_and_bilevel(tmp_path):
    palette = Image.new("P", (1, 1))
    palette.putpalette([10, 20, 30] + [0] * 765)
    assert load_image(_save(tmp_path, palette, "p.png"))[0, 0].tolist() == [10, 20, 30]
    gray = Image.fromarray(np.array([[0, 77, 255]], np.uint8))
    assert load_image(_save(tmp_path, gray, "l.png"))[0].tolist() == [[0] * 3, [77] * 3, [255] * 3]
    bilevel = Image.new("1", (2, 1))
    bilevel.putpixel((1, 0), 1)
    path = _save(tmp_path, bilevel, "one.png")
    assert Image.open(path).mode == "1"
    assert load_image(path)[0].tolist() == [[0] * 3, [255] * 3]


def test_load_16bit_and_float_scaled_by_range(tmp_path):
    path16 = _save(tmp_path, Image.fromarray(np.array([[0, 32896, 65535]], np.uint16)), "g16.png")
    assert Image.open(path16).mode.startswith("I;16")
    assert load_image(path16)[0, :, 0].tolist() == [0, 128, 255]
    path8in16 = _save(tmp_path, Image.fromarray(np.array([[0, 100, 255]], np.uint16)), "g8in16.png")
    assert Image.open(path8in16).mode.startswith("I;16")
    assert load_image(path8in16)[0, :, 0].tolist() == [0, 100, 255]  # 8-bit values in a 16-bit file, as for I
    path_f = _save(tmp_path, Image.fromarray(np.array([[0.0, 0.5, 1.0]], np.float32)), "f.tif")
    assert Image.open(path_f).mode == "F"
    assert load_image(path_f)[0, :, 0].tolist() == [0, 128, 255]
    path_i = _save(tmp_path, Image.fromarray(np.array([[0, 100, 255]], np.int32)), "i.tif")
    assert Image.open(path_i).mode == "I"
    assert load_image(path_i)[0, :, 0].tolist() == [0, 100, 255]  # 8-bit values stored as 32-bit stay


def test_load_cmyk_and_exif_orientation(tmp_path):
    cmyk = Image.new("CMYK", (2, 2), (0, 255, 255, 0))  # pure red in CMYK
    assert load_image(_save(tmp_path, cmyk, "c.tif"))[0, 0].tolist() == [255, 0, 0]
    image = Image.new("RGB", (4, 2), (0, 0, 255))
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    assert load_image(_save(tmp_path, image, "o.jpg", exif=exif)).shape == (4, 2, 3)
    with Image.open(tmp_path / "o.jpg") as opened:  # the same file opened by the caller: turned upright too
        assert to_rgb_uint8(opened).shape == (4, 2, 3)


def test_unreadable_files_raise_input_error_naming_them(tmp_path):
    text = tmp_path / "reference.png"
    text.write_text("this is not an image")
    with pytest.raises(InputError, match="reference.png.*not a readable image"):
        load_image(text)
    with pytest.raises(InputError, match="missing.png.*not found"):
        load_image(tmp_path / "missing.png")
    good = _save(tmp_path, Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)), "g.png")
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:400])
    with pytest.raises(InputError, match="truncated.png"):
        load_image(truncated)
    with pytest.raises(InputError, match="found a folder"):
        load_image(tmp_path)


def test_to_rgb_uint8_arrays():
    gray = np.array([[0, 128]], np.uint8)
    assert to_rgb_uint8(gray).tolist() == [[[0] * 3, [128] * 3]]
    assert to_rgb_uint8(gray[..., None]).shape == (1, 2, 3)
    assert to_rgb_uint8(np.array([[[0, 0, 0, 0]]], np.uint8)).tolist() == [[[255, 255, 255]]]
    assert to_rgb_uint8(np.array([[65535, 0]], np.uint16))[0, :, 0].tolist() == [255, 0]
    assert to_rgb_uint8(np.array([[0.0, 0.5, 1.0]], np.float32))[0, :, 0].tolist() == [0, 128, 255]
    assert to_rgb_uint8(np.array([[True, False]]))[0, :, 0].tolist() == [255, 0]
    assert to_rgb_uint8(np.array([[0, 200]]))[0, :, 0].tolist() == [0, 200]  # plain int64 in 0..255
    rgb = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    assert np.array_equal(to_rgb_uint8(rgb), rgb)
    assert np.array_equal(to_rgb_uint8(Image.fromarray(rgb)), rgb)


def test_to_rgb_uint8_rejects_wrong_ranges_and_shapes():
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_rgb_uint8(np.array([[-1.0, 1.0]], np.float32))  # model space [-1, 1]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_rgb_uint8(np.array([[0.0, 255.0]], np.float32))
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        to_rgb_uint8(np.array([[0, 1000]]))
    with pytest.raises(ValueError, match="NaN or infinite"):  # was read as black
        to_rgb_uint8(np.full((2, 2, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="shape"):
        to_rgb_uint8(np.zeros((2, 2, 2), np.uint8))


def test_to_rgb_uint8_torch_tensors():
    chw = torch.zeros(3, 2, 4)
    chw[0] = 1.0
    out = to_rgb_uint8(chw)
    assert out.shape == (2, 4, 3) and out[0, 0].tolist() == [255, 0, 0]
    assert to_rgb_uint8(torch.full((1, 2, 4), 0.5)).tolist()[0][0] == [128, 128, 128]
    assert to_rgb_uint8(torch.ones(2, 4, dtype=torch.bfloat16)).shape == (2, 4, 3)
    assert to_rgb_uint8(torch.zeros(3, 2, 2, requires_grad=True)).sum() == 0
    with pytest.raises(ValueError):
        to_rgb_uint8(torch.zeros(2, 3, 4, 5))


def test_a_broken_link_among_the_frames_is_refused_not_dropped(tmp_path):
    """A frame whose link points nowhere is a missing frame: without it the shot would be one frame shorter and every
    later frame one slot early. Sub-folders (also linked ones) not named like frames are still skipped; a working
    link is a frame."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for name in ["0.png", "1.png", "3.png"]:
        Image.new("L", (8, 6), 255).save(frames / name)
    (tmp_path / "elsewhere").mkdir()
    (frames / "sub").mkdir()
    (frames / "linked_folder").symlink_to(tmp_path / "elsewhere")
    (frames / "4.png").symlink_to(frames / "3.png")
    assert [path.name for path in list_image_files(frames)] == ["0.png", "1.png", "3.png", "4.png"]
    (frames / "2.png").symlink_to(tmp_path / "gone.png")
    with pytest.raises(InputError, match=r"frames/2\.png: a frame that is a broken link \(its target .*gone\.png"):
        list_image_files(frames)
    with pytest.raises(InputError, match=r"2\.png: a frame that is a broken link"):
        FrameSource.open(frames)


def test_a_pipe_named_as_a_frame_is_refused_not_read(tmp_path):
    """Opening a FIFO would block for ever: it is named, not skipped and not read."""
    Image.new("L", (8, 6), 255).save(tmp_path / "0.png")
    os.mkfifo(tmp_path / "1.png")
    with pytest.raises(InputError, match=r"1\.png: a frame that is not a regular file"):
        list_image_files(tmp_path)


def test_a_folder_or_a_link_to_one_named_like_a_frame_is_refused_not_skipped(tmp_path):
    """``0002.png/`` (a folder, or a link to one, among the frames) was skipped as a sub-folder: the shot lost that
    frame and every later frame moved one slot early. It is named in one line; ordinary sub-folders stay skipped."""
    frames = tmp_path / "frames"
    frames.mkdir()
    for name in ["0001.png", "0003.png"]:
        Image.new("L", (8, 6), 255).save(frames / name)
    (frames / "old").mkdir()
    (frames / ".ipynb_checkpoints").mkdir()
    (tmp_path / "frame_two").mkdir()
    (frames / "0002.png").symlink_to(tmp_path / "frame_two")
    link = rf"frames/0002\.png \(a link to {tmp_path}/frame_two\): named like a frame but is a folder"
    for open_frames in (list_image_files, FrameSource.open):
        with pytest.raises(InputError, match=link) as caught:
            open_frames(frames)
        assert len(str(caught.value).splitlines()) == 1
    (frames / "0002.png").unlink()
    (frames / "0002.png").mkdir()
    with pytest.raises(InputError, match=r"frames/0002\.png: named like a frame but is a folder, not an image file"):
        list_image_files(frames)
    (frames / "0002.png").rmdir()
    assert [path.name for path in list_image_files(frames)] == ["0001.png", "0003.png"]


def _error_without_root(action) -> str | None:
    """The message of the InputError ``action()`` raises where permissions apply: in this process, or (as root, who
    may read everything) in a child process running as the user nobody; None when it raised none."""
    if os.geteuid() != 0:
        try:
            action()
        except InputError as err:
            return str(err)
        return None
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read)
            os.setgid(65534)
            os.setuid(65534)
            try:
                action()
                message = "no error"
            except InputError as err:
                message = f"InputError: {err}"
            except BaseException as err:  # noqa: BLE001 - reported to the parent, which fails the test
                message = f"{type(err).__name__}: {err}"
            os.write(write, message.encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        message = pipe.read().decode()
    os.waitpid(pid, 0)
    assert message.startswith("InputError: ") or message == "no error", message
    return message.removeprefix("InputError: ") if message != "no error" else None


def test_a_frame_lvcd_may_not_read_is_one_input_error_line(tmp_path):
    """A frame linked into a folder lvcd may not enter (or a file it may not read) was a PermissionError from Python
    and a bare 'Permission denied' line from the CLI: now lvcd's InputError, naming the frame, its link, what to do."""
    root = Path(tempfile.mkdtemp(prefix="lvcd-permissions-")) if os.geteuid() == 0 else tmp_path
    root.chmod(0o755)  # as root, the child running as nobody must reach the frames
    frames, private = root / "frames", root / "private"
    frames.mkdir(mode=0o755)
    private.mkdir()
    try:
        Image.new("L", (8, 6), 255).save(frames / "0.png")
        Image.new("L", (8, 6), 255).save(private / "1.png")
        (frames / "1.png").symlink_to(private / "1.png")
        private.chmod(0o000)  # its files cannot be reached
        message = _error_without_root(lambda: list_image_files(frames))
        assert message == (
            f"{frames / '1.png'} (a link to {private / '1.png'}): lvcd may not read this frame (permission denied); "
            "make it readable, or copy it to a folder you can read."
        )
        private.chmod(0o755)
        (private / "1.png").chmod(0o000)  # reached, but not readable
        message = _error_without_root(lambda: list_image_files(frames))
        assert message is not None and "1.png" in message and "may not read this frame (permission denied)" in message
        assert _error_without_root(lambda: load_image(private / "1.png")) == (
            f"{private / '1.png'}: lvcd may not read this file (permission denied); make it readable, or copy it to "
            "a folder you can read."
        )
    finally:
        private.chmod(0o755)
        if root != tmp_path:
            shutil.rmtree(root)
