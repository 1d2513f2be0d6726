"""PyAV is needed for video files only: the library, the CLI, image folders and training start without it (a bare
GPU machine has none), and asking for video there is one line saying how to get it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCK_AV = textwrap.dedent(
    """
    import importlib.abc, sys

    class NoAV(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] == "av":
                raise ImportError("no PyAV here")

    sys.meta_path.insert(0, NoAV())
    """
)


def _run(code: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_AV + textwrap.dedent(code)], capture_output=True, text=True, cwd=tmp_path
    )


def test_library_cli_and_images_work_without_pyav(tmp_path):
    done = _run(
        """
        import sys
        import numpy as np
        from PIL import Image
        import lvcd, lvcd.cli, lvcd.pipeline, lvcd.train.loop, lvcd.data.synth_set
        from lvcd.io import FrameSource, open_writer
        for i in range(2):
            Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(f"in_{i}.png")
        frames = list(FrameSource.open("."))
        with open_writer("out", overwrite=False) as writer:
            for frame in frames:
                writer.write(frame)
        assert "av" not in sys.modules
        print(len(frames))
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2"] and len(list((tmp_path / "out").glob("*.png"))) == 2


def test_video_without_pyav_is_one_line_saying_how_to_get_it(tmp_path):
    (tmp_path / "shot.mp4").write_bytes(b"\\0" * 64)
    done = _run(
        """
        from lvcd.errors import InputError
        from lvcd.io import FrameSource, open_writer
        for attempt in (lambda: len(FrameSource.open("shot.mp4")), lambda: open_writer("out.mp4", fps=24, overwrite=False)):
            try:
                attempt()
            except InputError as err:
                print(err)
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert (
        lines == ["Reading or writing video files needs PyAV: pip install av (folders of images work without it)."] * 2
    )
    assert not (tmp_path / "out.mp4").exists()
