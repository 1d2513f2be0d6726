"""What ``lvcd data prepare`` reads: video files, frame folders and folders of videos, each named in the root."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lvcd.data.layout import sanitize_video_name
from lvcd.errors import InputError


@dataclass(frozen=True)
class VideoInput:
    """One source of frames (video file, GIF or folder of frames) and the name it gets in the root."""

    name: str
    path: Path

    def fingerprint(self) -> dict[str, Any]:
        """Cheap identity of the source, to refuse a different video under a name already in the root."""
        if self.path.is_dir():
            from lvcd.io.images import IMAGE_SUFFIXES

            return {
                "kind": "folder",
                "files": sum(1 for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
            }
        return {"kind": "file", "bytes": self.path.stat().st_size}

    def check_opens(self) -> None:
        """Open the source as its scan will (a video's container and first frame, a folder's file list, an image's
        header): an InputError names an input that cannot be read, in milliseconds rather than after a long scan."""
        from lvcd.io.frames import FrameSource

        FrameSource.open(self.path)  # a video's container is closed again once its first frame is decoded


def collect_inputs(inputs: Iterable[str | Path]) -> list[VideoInput]:
    """Expand the command-line inputs: video files, frame folders, and folders of video files.

    A folder holding image files is one frame folder; a folder holding none is a folder of videos (and GIFs).
    """
    from lvcd.io.images import IMAGE_SUFFIXES, VIDEO_SUFFIXES

    videos: list[VideoInput] = []
    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            raise InputError(f"Input {path} does not exist: pass video files or folders of frames.")
        if path.is_file():
            videos.append(VideoInput(sanitize_video_name(path.stem), path))
            continue
        entries = sorted(p for p in path.iterdir() if p.is_file())
        if any(p.suffix.lower() in IMAGE_SUFFIXES for p in entries):
            videos.append(VideoInput(sanitize_video_name(path.name), path))
            continue
        inner = [p for p in entries if p.suffix.lower() in VIDEO_SUFFIXES | {".gif"}]
        if not inner:
            raise InputError(f"Folder {path} holds neither frames ({', '.join(sorted(IMAGE_SUFFIXES))}) nor videos.")
        videos.extend(VideoInput(sanitize_video_name(p.stem), p) for p in inner)
    if not videos:
        raise InputError("No inputs: pass at least one video file or folder of frames.")
    seen: dict[str, Path] = {}
    for video in videos:
        if video.name in seen:
            raise InputError(
                f"Inputs {seen[video.name]} and {video.path} would both be named {video.name!r} in the root; rename one."
            )
        seen[video.name] = video.path
    return sorted(videos, key=lambda v: v.name)
