"""Line art of a whole shot as model hints (lines ~1 on 0, at the processing size), kept on disk, not in RAM.

Accepts a folder / video / GIF path, a ``FrameSource``, a list of images (PIL, arrays, tensors) or one tensor
(N, C, H, W) / (N, H, W). Integer images go through polarity detection (dark lines on white is usual); float inputs
in [0, 1] are used at full precision.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from lvcd.errors import InputError
from lvcd.io import FrameSource, SizePlan, detect_sequence_polarity, fit_hint, lineart_to_hint, to_rgb_uint8
from lvcd.io.atomic import atomic_output
from lvcd.io.lineart_input import dark_lines_gray
from lvcd.io.paper import PaperLevels, check_levels, levelled_hint, shot_levels
from lvcd.io.writers import usable_frame_name


def _as_array(frame) -> np.ndarray:
    if isinstance(frame, torch.Tensor):
        frame = frame.detach().cpu()
        if frame.ndim == 3 and frame.shape[0] in (1, 3, 4):
            frame = frame.permute(1, 2, 0)
        return frame.numpy()
    if hasattr(frame, "mode"):  # PIL image
        return to_rgb_uint8(frame)
    return np.asarray(frame)


class LineartFrames:
    """A sized, counted, re-iterable sequence of line-art frames (as arrays)."""

    def __init__(self, lineart, name: str = "line art"):
        self.source: FrameSource | None = None
        if isinstance(lineart, (str, os.PathLike)):
            self.source = FrameSource.open(lineart)
        elif isinstance(lineart, FrameSource) or (hasattr(lineart, "size_hw") and hasattr(lineart, "__len__")):
            self.source = lineart  # a FrameSource, or any sized, re-iterable frame sequence with `size_hw`
        if self.source is not None:
            self._frames = None
            self.count = len(self.source)
            self.size_hw = tuple(self.source.size_hw)
            paths = getattr(self.source, "paths", None) or (
                [self.source.path] if getattr(self.source, "path", None) else []
            )
            self.paths = [Path(p) for p in paths]
        else:
            if isinstance(lineart, torch.Tensor) and lineart.ndim in (3, 4):
                frames = list(lineart if lineart.ndim == 4 else lineart[:, None])
            elif isinstance(lineart, Sequence) and not isinstance(lineart, (str, bytes)):
                frames = list(lineart)
            else:
                raise InputError(
                    f"Unsupported {name} input {type(lineart).__name__}: give a folder, a video, a list of images or a tensor (N, C, H, W)."
                )
            if not frames:
                raise InputError(f"The {name} is empty: give at least one frame.")
            self._frames = [_as_array(f) for f in frames]
            self.count = len(self._frames)
            self.size_hw = tuple(self._frames[0].shape[:2])
            for index, frame in enumerate(self._frames):
                if tuple(frame.shape[:2]) != self.size_hw:
                    raise InputError(
                        f"{name} frame {index} is {frame.shape[1]}x{frame.shape[0]}, frame 0 is {self.size_hw[1]}x{self.size_hw[0]}: all frames must have one size."
                    )
            self.paths = []

    def __len__(self) -> int:
        return self.count

    @property
    def names(self) -> list[str] | None:
        """The frames' names (a folder's file stems, a video's zero-padded indices), when the source has them, every
        one can name an output frame, and no two differ only in case (they could not be one folder's file names on
        macOS or Windows)."""
        names = getattr(self.source, "names", None)
        if names is None or len(names) != self.count or len({str(n).casefold() for n in names}) != self.count:
            return None
        names = [str(n) for n in names]
        return names if all(usable_frame_name(n) for n in names) else None  # else numbered: none can fail late

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.source) if self.source is not None else iter(self._frames)


def _is_float(frame: np.ndarray) -> bool:
    return np.issubdtype(frame.dtype, np.floating)


def _float_gray(frame: np.ndarray) -> np.ndarray:
    frame = frame.astype(np.float32)
    if frame.ndim == 3:
        frame = (
            frame[..., 0]
            if frame.shape[-1] == 1 or np.array_equal(frame[..., 0], frame[..., -1])
            else frame[..., :3].mean(-1)
        )
    if frame.min() < -1e-3 or frame.max() > 1 + 1e-3:
        raise InputError("Float line-art frames must hold values in [0, 1].")
    return frame


def _quantized(frame: np.ndarray) -> np.ndarray:
    return (np.clip(_float_gray(frame), 0, 1) * 255).round().astype(np.uint8) if _is_float(frame) else frame


def resolve_polarity(frames: LineartFrames, polarity: str) -> str:
    if polarity not in ("auto", "dark-lines", "bright-lines"):
        raise InputError(
            f"Unknown polarity {polarity!r}: use auto, dark-lines (dark lines on light paper) or bright-lines (light lines on black)."
        )
    if polarity != "auto":
        return polarity
    return detect_sequence_polarity(_quantized(f) for f in frames)


def _dark_gray(frame: np.ndarray, polarity: str) -> np.ndarray:
    """Dark-lines gray 0..255 (float32) of an integer or float frame."""
    if _is_float(frame):
        gray = _float_gray(frame) * np.float32(255.0)
        return np.float32(255.0) - gray if polarity == "bright-lines" else gray
    return dark_lines_gray(frame, polarity)


NOT_PAPER = 96  # a sheet this dark is no paper: auto never levels it (a forced polarity read art inverted)


def resolve_levels(frames: LineartFrames, polarity: str, mode: str = "auto") -> PaperLevels | None:
    """Whether a shot's line art is levelled (:mod:`lvcd.io.paper`): None for no, else the levels of its first frames
    (median), for the report. ``auto``: only grey or grainy paper; ``on``: always; ``off``: never."""
    if check_levels(mode) == "off":
        return None
    levels = shot_levels(_dark_gray(frame, polarity) for frame in frames)
    if mode == "auto" and levels.paper < NOT_PAPER:  # "paper" darker than ink: lines read with the wrong polarity
        return None
    return levels if mode == "on" or levels.needed else None


def frame_to_hint(frame: np.ndarray, polarity: str, levels: bool = False) -> np.ndarray:
    """One line-art frame -> HxW float32 hint in [0, 1], lines ~1; ``levels``: its paper to white, its ink to black."""
    if levels:
        return levelled_hint(_dark_gray(frame, polarity))
    if _is_float(frame):
        gray = _float_gray(frame)
        return gray if polarity == "bright-lines" else 1.0 - gray
    return lineart_to_hint(frame, polarity)


class HintStore:
    """(N, H, W) float32 hints at the processing size in a memory-mapped file; ``get(indices)`` -> (k, 1, H, W)."""

    def __init__(self, path: Path, count: int, size_hw: tuple[int, int], mode: str = "r"):
        self.path = Path(path)
        self.array = np.lib.format.open_memmap(
            self.path, mode=mode, dtype=np.float32, shape=(count, *size_hw) if mode == "w+" else None
        )
        if mode == "w+" and hasattr(os, "posix_fallocate"):
            # Reserve the blocks now: a memory map on a full disk would otherwise die of SIGBUS on first write,
            # where an OSError (ENOSPC) here is reported, and the job resumed once space is freed.
            with open(self.path, "r+b") as handle:
                os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)

    @classmethod
    def build(
        cls,
        frames: LineartFrames,
        plan: SizePlan,
        polarity: str,
        path: Path,
        progress: bool = True,
        levels: bool = False,
    ) -> HintStore:
        with atomic_output(path) as temporary:
            store = cls(temporary, len(frames), plan.model_hw, mode="w+")
            produced = 0
            for frame in tqdm(frames, total=len(frames), desc="line art", unit="frame", disable=not progress):
                if produced >= len(frames):
                    raise InputError(f"The line-art source yielded more frames than the {len(frames)} it announced.")
                store.array[produced] = fit_hint(frame_to_hint(frame, polarity, levels), plan)
                produced += 1
            if produced != len(frames):
                raise InputError(
                    f"The line-art source yielded {produced} frames but announced {len(frames)}; it may be truncated."
                )
            store.array.flush()
            del store
        return cls(path, len(frames), plan.model_hw)

    def __len__(self) -> int:
        return self.array.shape[0]

    def get(self, indices: Iterable[int]) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.array[list(indices)]))[:, None]
