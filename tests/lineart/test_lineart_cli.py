"""`lvcd lineart` end to end through the typer app (in process, CliRunner)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from lvcd.cli import app
from lvcd.lineart import InformativeDrawingsGenerator

runner = CliRunner()


def _invoke(args: list[str]):
    """Run ``lvcd <args>`` on the real app. While ``lineart`` is the only registered command and the app has no
    callback, typer runs it as the app itself (no sub-command name), so the name is dropped then."""
    single_command = len(app.registered_commands) == 1 and app.registered_callback is None
    return runner.invoke(app, args[1:] if single_command and args[:1] == ["lineart"] else args)


def _write_frames(folder: Path, count: int = 3, size_hw: tuple[int, int] = (30, 42)) -> list[str]:
    folder.mkdir(parents=True)
    names = []
    for index in range(count):
        image = np.full((*size_hw, 3), 230, np.uint8)
        image[5 + index : 20 + index, 8:30] = (180, 30, 30)  # a moving red rectangle
        name = f"frame{index}.png"
        Image.fromarray(image).save(folder / name)
        names.append(name)
    return names


@pytest.fixture()
def no_default_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("LVCD_LINEART_WEIGHTS", raising=False)
    monkeypatch.setattr("lvcd.lineart.extractor._huggingface_cached", lambda filename: None)


def test_xdog_on_a_folder_writes_one_png_per_frame(tmp_path):
    names = _write_frames(tmp_path / "frames")
    result = _invoke(["lineart", str(tmp_path / "frames"), "-o", str(tmp_path / "lines"), "--method", "xdog"])
    assert result.exit_code == 0, result.output
    assert "outside LVCD's training distribution" in result.output  # the warning (stderr is mixed in)
    assert sorted(path.name for path in (tmp_path / "lines").iterdir()) == names
    for name in names:
        with Image.open(tmp_path / "lines" / name) as lines:
            assert lines.size == (42, 30)
            pixels = np.asarray(lines.convert("RGB"))
        assert (pixels == pixels[..., :1]).all()  # grey: R = G = B
        pixels = pixels[..., 0]
        assert np.median(pixels) == 255 and pixels.min() < 64  # dark lines on white
    # no staging folders are left behind
    assert sorted(path.name for path in tmp_path.iterdir()) == ["frames", "lines"]


def test_refuses_to_overwrite_without_flag(tmp_path):
    _write_frames(tmp_path / "frames")
    output = tmp_path / "lines"
    output.mkdir()
    (output / "keep.txt").write_text("precious")
    args = ["lineart", str(tmp_path / "frames"), "-o", str(output), "--method", "xdog"]
    result = _invoke(args)
    assert result.exit_code == 2
    assert "--overwrite" in result.output and "Traceback" not in result.output
    assert [path.name for path in output.iterdir()] == ["keep.txt"]
    result = _invoke([*args, "--overwrite"])  # a folder of other work is never replaced, even with --overwrite
    assert result.exit_code == 2 and "holds more than PNG frames (keep.txt)" in result.output
    assert [path.name for path in output.iterdir()] == ["keep.txt"]
    (output / "keep.txt").rename(output / "old_frame.png")  # a folder of frames is
    result = _invoke([*args, "--overwrite"])
    assert result.exit_code == 0, result.output
    assert sorted(path.name for path in output.iterdir()) == ["frame0.png", "frame1.png", "frame2.png"]


def test_refuses_to_replace_the_input(tmp_path):
    _write_frames(tmp_path / "frames")
    result = _invoke(["lineart", str(tmp_path / "frames"), "-o", str(tmp_path), "--method", "xdog", "--overwrite"])
    assert result.exit_code == 2 and "input" in result.output and "Traceback" not in result.output
    assert len(list((tmp_path / "frames").iterdir())) == 3


def test_missing_weights_for_informative_exit_2_with_help(tmp_path, no_default_weights):
    _write_frames(tmp_path / "frames", count=1)
    result = _invoke(["lineart", str(tmp_path / "frames"), "-o", str(tmp_path / "lines")])
    assert result.exit_code == 2
    assert "sk_model.pth" in result.output and "huggingface.co/lllyasviel/Annotators" in result.output
    assert "--method xdog" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "lines").exists()
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]  # no temporary left behind


def test_informative_with_weights_on_a_single_odd_sized_image(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "sk_model.pth"
    torch.save(InformativeDrawingsGenerator().state_dict(), weights)
    image = tmp_path / "shot.jpg"
    Image.fromarray(np.full((21, 35, 3), 200, np.uint8)).save(image)
    result = _invoke(["lineart", str(image), "-o", str(tmp_path / "out"), "--weights", str(weights)])
    assert result.exit_code == 0, result.output
    assert "warning" not in result.output
    with Image.open(tmp_path / "out" / "shot.png") as lines:
        assert lines.size == (35, 21)


def test_missing_input_exit_2(tmp_path):
    result = _invoke(["lineart", str(tmp_path / "nope"), "-o", str(tmp_path / "out"), "--method", "xdog"])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_levels_cleans_up_scans_as_colorize_reads_them(tmp_path):
    """--method levels: INPUT is line art on grey, grainy paper; OUT is the same drawings on white with black ink,
    the very hint lvcd colorize builds from them (1 - OUT/255, to within rounding)."""
    from lvcd.hints import frame_to_hint

    folder = tmp_path / "scans"
    folder.mkdir()
    rng = np.random.default_rng(0)
    clean = np.full((48, 64), 255, np.uint8)
    clean[10:12, 5:60] = 0
    clean[20:40, 30:32] = 0
    for index in range(2):
        scan = np.clip(np.rint(200 - 160 * (clean == 0) + rng.normal(0, 4, clean.shape)), 0, 255).astype(np.uint8)
        Image.fromarray(scan).save(folder / f"s{index}.png")
    result = _invoke(["lineart", str(folder), "-o", str(tmp_path / "clean"), "--method", "levels"])
    assert result.exit_code == 0, result.output
    assert "Wrote 2 levelled line-art frame(s)" in result.output
    for index in range(2):
        out = np.asarray(Image.open(tmp_path / "clean" / f"s{index}.png").convert("L"))
        assert (out[clean == 255] == 255).mean() > 0.99 and out[clean == 0].mean() < 20  # ink grain is kept
        hint = frame_to_hint(np.asarray(Image.open(folder / f"s{index}.png")), "dark-lines", levels=True)
        assert np.abs((1 - out / 255.0) - hint).max() <= 0.5 / 255 + 1e-6
    refused = _invoke(
        ["lineart", str(folder), "-o", str(tmp_path / "x"), "--method", "levels", "--weights", str(folder)]
    )
    assert refused.exit_code == 2 and "takes no --weights" in refused.output and not (tmp_path / "x").exists()


@pytest.fixture()
def extractions(monkeypatch):
    """Counts the frames the extractor is given: a bad input must be refused before the first one."""
    from lvcd import lineart as lineart_package

    real, calls = lineart_package.get_extractor, []

    def counting(*args, **kwargs):
        extractor = real(*args, **kwargs)

        class Counting:
            warning = extractor.warning

            def __call__(self, frame):
                calls.append(frame.shape)
                return extractor(frame)

        return Counting()

    monkeypatch.setattr(lineart_package, "get_extractor", counting)
    return calls


def _one_error_line(result) -> str:
    assert "Traceback" not in result.output and isinstance(result.exception, (SystemExit, type(None))), result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    return errors[0]


@pytest.mark.parametrize("fault", ["wrong-size", "truncated"])
def test_a_bad_frame_late_in_the_shot_is_refused_before_any_extraction(tmp_path, extractions, fault):
    """As lvcd colorize does, every frame's size and data are checked first: a bad last frame costs no work."""
    _write_frames(tmp_path / "frames", count=4)
    last = tmp_path / "frames" / "frame3.png"
    if fault == "wrong-size":
        Image.new("RGB", (20, 10), "white").save(last)
    else:
        last.write_bytes(last.read_bytes()[:-40])  # the end of the image data and the IEND chunk are cut
    result = _invoke(["lineart", str(tmp_path / "frames"), "-o", str(tmp_path / "lines"), "--method", "xdog"])
    assert result.exit_code == 2, result.output
    line = _one_error_line(result)
    assert "frame3.png" in line and ("20x10" in line if fault == "wrong-size" else "damaged" in line)
    assert extractions == []
    assert sorted(path.name for path in tmp_path.iterdir()) == ["frames"]  # nothing written, no hidden partial


def test_a_broken_link_among_the_frames_is_one_line_not_a_shorter_shot(tmp_path, extractions):
    _write_frames(tmp_path / "frames", count=3)
    (tmp_path / "frames" / "frame5.png").symlink_to(tmp_path / "gone.png")
    result = _invoke(["lineart", str(tmp_path / "frames"), "-o", str(tmp_path / "lines"), "--method", "xdog"])
    assert result.exit_code == 2, result.output
    assert "frame5.png: a frame that is a broken link" in _one_error_line(result)
    assert extractions == [] and not (tmp_path / "lines").exists()


def test_names_differing_only_in_case_are_numbered_with_a_warning_before_extraction(tmp_path, extractions):
    """f1.png and F1.png would be one file on macOS and Windows: as lvcd colorize does, the frames are numbered, and
    the warning says so before the work."""
    _write_frames(tmp_path / "frames", count=3)
    for old, new in [("frame0.png", "f1.png"), ("frame1.png", "F1.png"), ("frame2.png", "f2.png")]:
        (tmp_path / "frames" / old).rename(tmp_path / "frames" / new)
    result = _invoke(["lineart", str(tmp_path / "frames"), "-o", str(tmp_path / "lines"), "--method", "xdog"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    warnings = [line for line in result.output.splitlines() if "differ only in case" in line]
    assert warnings == [
        "warning: the frame names 'F1' and 'f1' differ only in case (one file on macOS and Windows); the output "
        "frames are numbered 00000.png, 00001.png, ... instead."
    ]
    assert sorted(path.name for path in (tmp_path / "lines").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    assert len(extractions) == 3
    result = _invoke(["lineart", str(tmp_path / "frames"), "-o", str(tmp_path / "lines.mp4"), "--method", "levels"])
    assert result.exit_code == 0 and "differ only in case" not in result.output  # a video has no frame names


def test_a_writer_fault_is_one_line_not_a_traceback(tmp_path, monkeypatch):
    """Whatever a writer raises that is not a user error (a ValueError, a RuntimeError) ends as one error line."""
    from lvcd.io import writers

    _write_frames(tmp_path / "frames", count=2)

    def failing(self, frame, name):
        raise ValueError("the encoder said no")

    monkeypatch.setattr(writers._PngFolderWriter, "_write", failing)
    result = _invoke(["lineart", str(tmp_path / "frames"), "-o", str(tmp_path / "lines"), "--method", "xdog"])
    assert result.exit_code == 2, result.output
    line = _one_error_line(result)
    assert "lines: writing the output failed (ValueError: the encoder said no)" in line
    assert sorted(path.name for path in tmp_path.iterdir()) == ["frames"]
    monkeypatch.undo()
    monkeypatch.setattr(writers._PngFolderWriter, "_finish", _raise_runtime_error)
    result = _invoke(["lineart", str(tmp_path / "frames"), "-o", str(tmp_path / "lines"), "--method", "levels"])
    assert result.exit_code == 2 and "writing the output failed (RuntimeError: flush failed)" in _one_error_line(result)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["frames"]


def _raise_runtime_error(self) -> None:
    raise RuntimeError("flush failed")
