"""``ColorizeResult``: what ``LVCDPipeline.__call__`` returns, with ways to keep it (images, a video, PNG frames)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from lvcd.errors import InputError
from lvcd.io import SizePlan, open_writer
from lvcd.io.paper import PaperLevels
from lvcd.io.writers import DEFAULT_FPS


@dataclass
class ColorizeResult:
    """What a colorization returns: the frames (unless they were streamed to ``output``), the latents, the plan.

    >>> result = pipe(reference, lineart, seed=7)          # doctest: +SKIP
    >>> result.images()[0].save("first.png")               # doctest: +SKIP
    >>> result.save("shot.mp4", fps=24)                    # doctest: +SKIP  (what output="shot.mp4" writes)
    """

    # (N, 3, H_in, W_in) float32 in [0, 1], stored channels-last (so .permute(0, 2, 3, 1) gives images without a
    # copy); None when streamed to `output`, or not decoded (decode=False)
    frames: torch.Tensor | None
    latents: torch.Tensor  # (N, 4, H/8, W/8) scaled latents at the processing size
    size_plan: SizePlan
    seed: int | None
    polarity: str
    output_path: Path | None = None
    lineart_levels: PaperLevels | None = None  # the shot's scanned-paper levels when its line art was levelled
    inputs: tuple = ()  # the shot's input paths (reference, keyframes, line-art files): save() never replaces them
    frame_names: list[str] | None = None  # the line-art files' names: save() names PNG frames as output= does
    fps: float = DEFAULT_FPS  # the shot's frame rate (given, else its line art's own, else 20): save()'s default
    # seconds, one per frame: the line art's own timing (a GIF's held drawings, a variable frame rate) when no fps was
    # given and its frames are not all shown for the same time; save() keeps it unless given an fps. None: one rate
    frame_durations: tuple[float, ...] | None = None

    def _kept_frames(self) -> torch.Tensor:
        if self.frames is None and self.output_path is None:
            raise InputError("The frames were not decoded (decode=False): only result.latents were kept.")
        if self.frames is None:
            raise InputError(
                f"The frames were written to {self.output_path} as they were decoded, not kept; read them from there."
            )
        return self.frames

    def _rgb_frames(self):
        """Each frame as HxWx3 uint8, rounded as the writers of ``output=`` round them."""
        for frame in self._kept_frames():
            yield (frame * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()

    def images(self) -> list:
        """The frames as 8-bit RGB PIL images."""
        from PIL import Image

        return [Image.fromarray(frame) for frame in self._rgb_frames()]

    def save(self, path: str | os.PathLike, fps: float | None = None, overwrite: bool = False) -> Path:
        """Write the frames as ``output=`` would have: a video (.mp4, .webm, .gif) at ``fps`` (default: the shot's,
        ``self.fps``, or its frames' own durations, ``self.frame_durations``, when it has them) or a folder of PNG
        frames named as the line-art files were, written atomically; an existing path is replaced only with
        ``overwrite``, and never one of the shot's inputs (nor a folder holding one). Returns the path written."""
        self._kept_frames()  # refused when there are none, before anything is opened
        durations = self.frame_durations if fps is None else None
        fps = self.fps if fps is None else fps
        writer = open_writer(path, fps=fps, overwrite=overwrite, inputs=self.inputs, durations=durations)
        names = self.frame_names
        try:
            for index, frame in enumerate(self._rgb_frames()):
                writer.write(frame, names[index] if names is not None else None)
        except BaseException:
            writer.abort()
            raise
        return writer.close()
