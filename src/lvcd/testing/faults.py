"""Faults for tests of lvcd's refusals and recoveries (no test data needed): a truncated video, as a copy cut short
leaves it; a folder replacement killed part-way, as a killed ``--overwrite`` or checkpoint save leaves it.

>>> truncated_mp4("cut.mp4", frames=40, keep=0.4)   # doctest: +SKIP
>>> killed_replacing(lambda: publish(staging, final), at="between")   # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np


def truncated_mp4(path: str | os.PathLike, frames: int = 40, keep: float = 0.4, size: int = 64) -> Path:
    """A faststart H.264 MP4 whose header states ``frames`` frames, cut to the first ``keep`` of its bytes."""
    path = Path(path)
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as container:
        stream = container.add_stream("libx264", rate=20)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        for _ in range(frames):
            image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def killed_replacing(replace_folder: Callable[[], object], at: str) -> None:
    """Run ``replace_folder`` (a call that replaces an existing folder through :func:`lvcd.io.atomic.commit_path`) in
    a child process SIGKILLed ``at`` ``"between"`` the two moves (the old folder moved aside, the new one not yet moved
    in) or ``"after"`` them (the old one not yet deleted). POSIX only (fork)."""
    from lvcd.io import atomic

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            replace, rmtree = os.replace, shutil.rmtree

            def dying_replace(source, destination):
                if at == "between" and ".replaced-" in Path(destination).name:
                    replace(source, destination)  # the old one moved aside, then killed
                    os.kill(os.getpid(), signal.SIGKILL)
                return replace(source, destination)

            def dying_rmtree(path, *args, **kwargs):
                if at == "after" and ".replaced-" in Path(path).name:
                    os.kill(os.getpid(), signal.SIGKILL)
                return rmtree(path, *args, **kwargs)

            atomic.os.replace, atomic.shutil.rmtree = dying_replace, dying_rmtree
            replace_folder()
        finally:
            os._exit(1)  # not killed: the caller fails on the exit status
    _, status = os.waitpid(pid, 0)
    if not (os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL):
        raise AssertionError(f"the replacement was not killed {at} its moves (status {status})")
