"""Line art of a whole shot as model hints (lines ~1 on 0, at the processing size), kept on disk, not in RAM.

Accepts a folder / video / GIF path, a ``FrameSource``, a list of images (file paths, PIL images, arrays HxWxC or
CxHxW, tensors), one array (N, H, W, C) / (N, C, H, W) / (N, H, W) or one tensor (N, C, H, W) / (N, H, W). Integer
images go through polarity detection (dark lines on white is usual); float inputs in [0, 1] are used at full
precision.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from lvcd.errors import InputError
from lvcd.hint_source import forget, hint_record, recorded, remember
from lvcd.io import FrameSource, SizePlan, detect_sequence_polarity, fit_hint, lineart_to_hint, load_image, to_rgb_uint8
from lvcd.io.atomic import atomic_output
from lvcd.io.images import IMAGE_CHANNELS, channels_last, image_size_hw
from lvcd.io.lineart_input import dark_lines_gray
from lvcd.io.paper import PaperLevels, check_levels, levelled_hint, shot_levels
from lvcd.io.writers import frame_names_problem


def _frame_array(frame, index: int, name: str) -> np.ndarray:
    """One frame of a list as HxW or HxWxC (C 1, 3 or 4): a path is read, a tensor or an array that can only be
    (C, H, W) is transposed; anything else is refused with an InputError naming the frame."""
    what = f"{name} frame {index}"
    if frame is None:
        raise InputError(f"{what} is None; give an image (a path, a PIL image, an array or a tensor) for every frame.")
    if isinstance(frame, (str, os.PathLike)):
        return load_image(frame)  # InputError naming the file when it is not an image
    if isinstance(frame, torch.Tensor):
        tensor = frame.detach().cpu()
        tensor = tensor.float() if tensor.dtype == torch.bfloat16 else tensor  # numpy has no bfloat16
        if tensor.ndim == 3 and tensor.shape[0] in IMAGE_CHANNELS:
            tensor = tensor.permute(1, 2, 0)  # a tensor is (C, H, W), as documented
        array = tensor.numpy()
    elif _is_pil(frame):
        array = to_rgb_uint8(frame)
    else:
        array = np.asarray(frame)
        if array.ndim == 3 and array.shape[0] in IMAGE_CHANNELS and array.shape[-1] in IMAGE_CHANNELS:
            raise InputError(
                f"{what} has shape {array.shape}: channels first or last? Give it as HxWxC or as a tensor (C, H, W)."
            )
        array = channels_last(array)
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_) or np.iscomplexobj(array):
        raise InputError(
            f"{what} is not an image ({type(frame).__name__}); give a path, a PIL image, an array or a tensor."
        )
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in IMAGE_CHANNELS) or not array.size:
        raise InputError(
            f"{what} has shape {tuple(array.shape)}; give HxW, HxWxC or CxHxW with C 1, 3 or 4 (gray, RGB, RGBA)."
        )
    if _is_float(array):
        _check_float_values(array, what)
    elif array.dtype not in (np.uint8, np.uint16, np.bool_) and (array.min() < 0 or array.max() > 255):
        raise InputError(
            f"{what} holds values {array.min()} to {array.max()}; give integer line art in 0..255 (or uint16)."
        )
    return array


def _shot_array_frames(array: np.ndarray, name: str) -> list[np.ndarray]:
    """A whole shot as one numpy array -> its frames: (N, H, W, C) or (N, C, H, W) (C 1, 3 or 4; each frame read as
    a list's array is), or (N, H, W) gray. A 3-D array that may be one image, HxWxC or CxHxW with C 3 or 4, is refused:
    it may not be a shot."""
    if array.ndim == 4:
        return list(array)
    if array.ndim == 3 and array.shape[-1] not in IMAGE_CHANNELS and array.shape[0] not in IMAGE_CHANNELS[1:]:
        return list(array[..., None])
    if array.ndim == 3:
        raise InputError(
            f"The {name} array has shape {array.shape}: one image or {array.shape[0]} gray frames? Give a shot as "
            "(N, H, W, C) (C 1 for gray), or one image as a list [image]."
        )
    raise InputError(
        f"The {name} array has shape {array.shape}; give a shot as (N, H, W, C), (N, C, H, W) or (N, H, W) gray."
    )


class ImageFiles:
    """Line-art frames given as a list of image file paths: the headers are read at once (a path that is not an
    image, or a frame of another size, is refused before any work), the pixels one frame at a time."""

    def __init__(self, paths: Sequence[str | os.PathLike], name: str = "line art"):
        self.paths = [Path(path) for path in paths]
        self.size_hw = image_size_hw(self.paths[0])
        for path in self.paths[1:]:
            height, width = image_size_hw(path)
            if (height, width) != self.size_hw:
                raise InputError(
                    f"{name} file {path} is {width}x{height}, {self.paths[0]} is {self.size_hw[1]}x{self.size_hw[0]}:"
                    " all frames must have one size."
                )
        self.names = [path.stem for path in self.paths]

    def __len__(self) -> int:
        return len(self.paths)

    def __iter__(self) -> Iterator[np.ndarray]:
        for path in self.paths:
            frame = load_image(path)
            if frame.shape[:2] != self.size_hw:  # the file changed since its header was read
                raise InputError(f"{path} changed size while the shot was read; keep its frames unchanged.")
            yield frame


class LineartFrames:
    """A sized, counted, re-iterable sequence of line-art frames (as arrays); ``fps``: the rate of a video or an
    animation (None for still frames)."""

    def __init__(self, lineart, name: str = "line art"):
        self.source: FrameSource | None = None
        self.fps: float | None = None
        from_files = isinstance(lineart, (str, os.PathLike)) or _is_path_list(lineart)
        if isinstance(lineart, (str, os.PathLike)):
            self.source = FrameSource.open(lineart)
        elif isinstance(lineart, FrameSource) or (hasattr(lineart, "size_hw") and hasattr(lineart, "__len__")):
            self.source = lineart  # a FrameSource, or any sized, re-iterable frame sequence with `size_hw`
        elif _is_path_list(lineart):
            self.source = ImageFiles(lineart, name)
        if self.source is not None:
            self._frames = None
            self.count = len(self.source)
            self.size_hw = tuple(self.source.size_hw)
            self.fps = getattr(self.source, "fps", None)
            paths = getattr(self.source, "paths", None) or (
                [self.source.path] if getattr(self.source, "path", None) else []
            )
            self.paths = [Path(p) for p in paths]
            # the files that wholly make the frames (lvcd reads them): their bytes identify the shot's hints
            files = getattr(self.source, "files", None) or self.paths  # a folder's frames, else the paths
            self.files: list[Path] | None = [Path(p) for p in files] if from_files and files else None
        else:
            if isinstance(lineart, torch.Tensor) and lineart.ndim in (3, 4):
                frames = list(lineart if lineart.ndim == 4 else lineart[:, None])
            elif isinstance(lineart, np.ndarray):
                frames = _shot_array_frames(lineart, name)
            elif isinstance(lineart, Sequence) and not isinstance(lineart, (str, bytes)):
                frames = list(lineart)
            else:
                raise InputError(
                    f"Unsupported {name} input {type(lineart).__name__}: give a folder, a video, a list of images, an "
                    "array (N, H, W, C) or a tensor (N, C, H, W)."
                )
            if not frames:
                raise InputError(f"The {name} is empty: give at least one frame.")
            # every frame checked now; a PIL image's RGB copy is made again when the frame is read, not held for the
            # whole job (a shot of PIL images doubled its memory: 0.55 GB per 1000 frames at 576x320)
            self._given, self._name = frames, name
            self._frames = []
            for index, frame in enumerate(frames):
                array = _frame_array(frame, index, name)
                self._frames.append(None if _is_pil(frame) else array)
                if index == 0:
                    self.size_hw = tuple(array.shape[:2])
                if tuple(array.shape[:2]) != self.size_hw:
                    raise InputError(
                        f"{name} frame {index} is {array.shape[1]}x{array.shape[0]}, frame 0 is "
                        f"{self.size_hw[1]}x{self.size_hw[0]}: all frames must have one size."
                    )
            self.count = len(self._frames)
            self.paths = []
            self.files = None

    def __len__(self) -> int:
        return self.count

    @property
    def names(self) -> list[str] | None:
        """The frames' names (a folder's file stems, a video's zero-padded indices), when the source has them, every
        one can name an output frame, and no two differ only in case (they could not be one folder's file names on
        macOS or Windows)."""
        return None if self.unnamed_because() is not None else [str(n) for n in self.source.names]

    def unnamed_because(self) -> str | None:
        """Why the frames' names cannot name output frames ("" when the source has none), or None when they can."""
        names = getattr(self.source, "names", None)
        if names is None or len(names) != self.count:
            return ""
        return frame_names_problem([str(n) for n in names])  # numbered instead: none can fail late

    def __iter__(self) -> Iterator[np.ndarray]:
        if self.source is not None:
            return iter(self.source)
        return (
            _frame_array(self._given[index], index, self._name) if array is None else array
            for index, array in enumerate(self._frames)
        )


def _is_pil(frame) -> bool:
    return hasattr(frame, "mode")  # a PIL image (arrays and tensors have no mode)


def _is_float(frame: np.ndarray) -> bool:
    return np.issubdtype(frame.dtype, np.floating)


def _is_path_list(lineart) -> bool:
    return isinstance(lineart, Sequence) and bool(lineart) and all(isinstance(p, (str, os.PathLike)) for p in lineart)


def _check_float_values(frame: np.ndarray, what: str = "A float line-art frame") -> None:
    # NaN compares False with everything: checked apart, or it passes the range test and the frames come out NaN
    if not np.isfinite(frame).all():
        raise InputError(f"{what} holds NaN or infinite values; give float line art with values in [0, 1].")
    if frame.min() < -1e-3 or frame.max() > 1 + 1e-3:
        raise InputError(f"{what} holds values {frame.min():g} to {frame.max():g}; float line art must be in [0, 1].")


def _float_gray(frame: np.ndarray) -> np.ndarray:
    frame = frame.astype(np.float32)
    _check_float_values(frame)
    if frame.ndim == 3 and frame.shape[-1] == 4:  # straight alpha over white, as integer RGBA (lvcd.io.images)
        alpha = np.clip(frame[..., 3:], 0, 1)
        frame = frame[..., :3] * alpha + (1 - alpha)
    if frame.ndim == 3:
        frame = (
            frame[..., 0]
            if frame.shape[-1] == 1 or np.array_equal(frame[..., 0], frame[..., -1])
            else frame[..., :3].mean(-1)
        )
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
    """(N, H, W) float32 hints at the processing size in a ``.npy`` file; ``get(indices)`` -> (k, 1, H, W).

    Written and read with plain file reads and writes, never a memory map: a memory-mapped store kept every page it
    had written or read in the process's resident memory (about 2.4 GB for a 3000-frame shot at 320x576, 7 GB at
    576x1024), where one window's hints are all that is needed at a time."""

    CHUNK_BYTES = 1 << 24  # reads of the whole store (the job fingerprint) go in pieces of this size

    def __init__(self, path: Path):
        self.path = Path(path)
        with open(self.path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = reader(handle)
            self.offset = handle.tell()
        if fortran or dtype != np.float32 or len(shape) != 3:
            raise InputError(
                f"{self.path} is not a hints file of lvcd; run without --resume (resume=False in Python) to start "
                "afresh."
            )
        self.shape = shape
        self.frame_bytes = shape[1] * shape[2] * 4

    @classmethod
    def build(
        cls,
        frames: LineartFrames,
        plan: SizePlan,
        polarity: str,
        path: Path,
        progress: bool = True,
        levels: bool = False,
        reusable: bool = True,
    ) -> HintStore:
        """The hints of ``frames`` in a new store at ``path``, or the store already there when it was made from the
        same line-art files with the same settings (:mod:`lvcd.hint_source`: a resumed job does not read every frame
        again). ``reusable=False``: a store no job will resume (a scratch folder), so its files are not hashed."""
        count, (height, width) = len(frames), plan.model_hw
        record = hint_record(frames.files, count, plan, polarity, levels, progress) if reusable else None
        if record is not None and recorded(path) == record:
            store = cls._whole(path, (count, height, width))
            if store is not None:
                return store
        forget(path)
        Path(path).unlink(missing_ok=True)  # a resume rebuilds it: no room needed for two copies of a long shot's
        with atomic_output(path) as temporary, open(temporary, "wb") as handle:
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False}
            np.lib.format.write_array_header_1_0(handle, {**header, "shape": (count, height, width)})
            if hasattr(os, "posix_fallocate"):  # the room for all of it now: a full disk is reported before the work
                os.posix_fallocate(handle.fileno(), 0, handle.tell() + count * height * width * 4)
            produced = 0
            for frame in tqdm(frames, total=count, desc="line art", unit="frame", disable=not progress):
                if produced >= count:
                    raise InputError(f"The line-art source yielded more frames than the {count} it announced.")
                hint = fit_hint(frame_to_hint(frame, polarity, levels), plan)
                handle.write(np.ascontiguousarray(hint, dtype=np.float32).tobytes())
                produced += 1
            if produced != count:
                raise InputError(
                    f"The line-art source yielded {produced} frames but announced {count}; it may be truncated."
                )
        remember(path, record)
        return cls(path)

    @classmethod
    def _whole(cls, path: Path, shape: tuple[int, int, int]) -> HintStore | None:
        """The store at ``path`` when it holds all of ``shape``, else None."""
        try:
            store = cls(path)
            size = Path(path).stat().st_size
        except (OSError, ValueError, InputError):
            return None
        whole = tuple(store.shape) == shape and size == store.offset + shape[0] * store.frame_bytes
        return store if whole else None

    def __len__(self) -> int:
        return self.shape[0]

    def get(self, indices: Iterable[int]) -> torch.Tensor:
        indices = list(indices)
        hints = np.empty((len(indices), *self.shape[1:]), dtype=np.float32)
        with open(self.path, "rb") as handle:
            for row, index in enumerate(indices):
                if not 0 <= index < self.shape[0]:
                    raise IndexError(f"hint {index} of a store of {self.shape[0]}")
                handle.seek(self.offset + index * self.frame_bytes)
                if handle.readinto(memoryview(hints[row]).cast("B")) != self.frame_bytes:
                    raise InputError(
                        f"{self.path} is cut short; run without --resume (resume=False in Python) to start afresh."
                    )
        return torch.from_numpy(hints)[:, None]

    def byte_chunks(self, start: int = 0, stop: int | None = None) -> Iterator[bytes]:
        """The bytes of hints ``start`` to ``stop`` (default: all) in order, a piece at a time (what the job
        fingerprint hashes)."""
        stop = self.shape[0] if stop is None else stop
        with open(self.path, "rb") as handle:
            handle.seek(self.offset + start * self.frame_bytes)
            left = (stop - start) * self.frame_bytes
            while left:
                chunk = handle.read(min(left, self.CHUNK_BYTES))
                if not chunk:
                    raise InputError(
                        f"{self.path} is cut short; run without --resume (resume=False in Python) to start afresh."
                    )
                left -= len(chunk)
                yield chunk


class HintView:
    """The hints of one pass of a shot coloured from a reference inside it (``LVCDPipeline.__call__(reference_frame=)``):
    pass frame ``i`` is shot frame ``origin + direction * i`` (direction 1: toward the end, -1: toward frame 0).
    ``byte_chunks`` are those of the pass's frames, in the shot's order (what the pass's fingerprint covers; its
    settings name the pass and its direction)."""

    def __init__(self, store: HintStore, origin: int, direction: int, count: int):
        last = origin + direction * (count - 1)
        if direction not in (1, -1) or not (0 <= origin < len(store) and 0 <= last < len(store)):
            raise ValueError(f"a pass of {count} frames from {origin} by {direction} is outside {len(store)} hints")
        self.store, self.origin, self.direction, self.count = store, origin, direction, count

    def __len__(self) -> int:
        return self.count

    def get(self, indices: Iterable[int]) -> torch.Tensor:
        indices = list(indices)
        if any(not 0 <= index < self.count for index in indices):
            raise IndexError(f"hints {indices} of a pass of {self.count}")
        return self.store.get(self.origin + self.direction * index for index in indices)

    def byte_chunks(self) -> Iterator[bytes]:
        last = self.origin + self.direction * (self.count - 1)
        return self.store.byte_chunks(min(self.origin, last), max(self.origin, last) + 1)
