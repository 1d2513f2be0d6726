"""Single images: file listing, natural sort, decoding any Pillow mode to ``HxWx3 uint8 RGB``.

Public names are re-exported by :mod:`lvcd.io.frames`; import them from there.
"""

from __future__ import annotations

import os
import re
import stat
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from lvcd.errors import InputError

IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".bmp", ".tif", ".tiff", ".tga"}
)
VIDEO_SUFFIXES: frozenset[str] = frozenset({".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v"})
# A frame in a folder may also be a GIF (its first frame); a GIF given as --lineart is a whole shot.
FRAME_SUFFIXES: frozenset[str] = IMAGE_SUFFIXES | {".gif"}
# Picture formats lvcd does not read as frames (beyond Pillow's other ones): a file of one of these named like the
# shot's frames is a frame the shot would silently lose.
_OTHER_PICTURE_SUFFIXES = frozenset(
    {".exr", ".dpx", ".cin", ".hdr", ".psd", ".psb", ".kra", ".xcf", ".ora", ".clip", ".heic", ".heif", ".avif",
     ".jp2", ".j2k", ".jxl", ".svg", ".ico", ".pcx", ".ppm", ".pgm", ".pbm", ".sgi", ".rgb", ".dds", ".qoi"}
)  # fmt: skip

_PIL_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError)
_DIGITS = re.compile(r"([0-9]+)")


def natural_key(name: str) -> tuple:
    """Sort key that orders embedded numbers by value: ``"frame2" < "frame10"``, case-insensitive.

    Text and numbers alternate at fixed positions in the key, so any two keys compare without
    TypeError; the original name breaks ties (``"01"`` vs ``"1"``) so the order is total.

    >>> sorted(["f10.png", "f2.png", "F1.png"], key=natural_key)
    ['F1.png', 'f2.png', 'f10.png']
    """
    return (number_chunks(name.casefold()), name)


def number_chunks(text: str) -> tuple:
    """``text`` as alternating text and numbers by value: ``"f010a"`` -> ``("f", 10, "a")``."""
    return tuple(int(part) if index % 2 else part for index, part in enumerate(_DIGITS.split(text)))


def list_image_files(folder: str | Path) -> list[Path]:
    """The image files directly inside ``folder``, in natural order.

    Hidden entries (``.DS_Store``, macOS ``._frame.png`` resource forks, ``.ipynb_checkpoints/``) and entries without
    an image extension (``old/``, ``notes.txt``) are skipped. Every other entry is a frame: one that is no readable
    image file (a folder or a link to one named like a frame, a broken link, a pipe, a file lvcd may not read) raises
    InputError naming it, rather than the shot silently losing that frame. Raises InputError if the folder is
    missing, is not a folder, cannot be read, or holds no image.
    """
    folder = Path(folder)
    if _status(folder, "folder") is None:
        raise InputError(f"{folder}: folder not found. Check the path.")
    if not folder.is_dir():
        raise InputError(f"{folder}: expected a folder of images, found a file.")
    try:
        names = os.listdir(folder)
    except PermissionError:
        raise InputError(
            f"{folder}: lvcd may not list this folder (permission denied); make it readable, or copy the frames to a "
            "folder you can read."
        ) from None
    visible = [name for name in names if not name.startswith(".")]
    files = [folder / name for name in visible if Path(name).suffix.lower() in FRAME_SUFFIXES]
    files.sort(key=lambda path: natural_key(path.name))
    for path in files:
        _check_frame_entry(path)
    if not files:
        raise InputError(
            f"{folder}: no image files found (looked for {', '.join(sorted(FRAME_SUFFIXES))}). "
            "Put the frames directly in this folder."
        )
    _refuse_unread_frames(folder, files, visible)
    return files


def _numbered_pattern(name: str) -> tuple[str, ...] | None:
    """The text around the numbers of a file's stem (``frame_0012.png`` -> ``("frame_", "")``), None without one."""
    parts = _DIGITS.split(Path(name).stem.casefold())
    return tuple(parts[0::2]) if len(parts) > 1 else None


def _refuse_unread_frames(folder: Path, files: list[Path], names: list[str]) -> None:
    """InputError naming a picture file lvcd does not read (``0012.exr``, ``0012.psd``) that is named like the frames
    it reads (the same text around a number): the shot would lose that frame and every later one would shift one
    slot early. Other files (``notes.txt``, ``frame_0012.json``, ``layout.psd``) stay ignored."""
    patterns = {_numbered_pattern(path.name) for path in files} - {None}
    picture_suffixes = _OTHER_PICTURE_SUFFIXES | _pillow_suffixes()
    unread = sorted(
        (
            name
            for name in names
            if Path(name).suffix.lower() in picture_suffixes - FRAME_SUFFIXES and _numbered_pattern(name) in patterns
        ),
        key=natural_key,
    )
    if unread:
        shown = ", ".join(unread[:3]) + (f" and {len(unread) - 3} more" if len(unread) > 3 else "")
        raise InputError(
            f"{folder}: {shown} {'is' if len(unread) == 1 else 'are'} named like this shot's frames, but lvcd reads "
            f"frames only as {', '.join(sorted(FRAME_SUFFIXES))}: convert {'it' if len(unread) == 1 else 'them'} to "
            "PNG (or move them out of the folder if they are not frames)."
        )


def _pillow_suffixes() -> frozenset[str]:
    Image.init()
    return frozenset(Image.registered_extensions())


def _status(path: Path, what: str = "file") -> os.stat_result | None:
    """``path``'s status, a link's target's (None when there is none: missing, a broken link or a link loop); a
    status lvcd may not look at (permission denied on a folder on the way) is InputError naming the path."""
    try:
        return path.stat()
    except PermissionError:
        raise _unreadable(path, what) from None
    except OSError:  # ENOENT, ENOTDIR, ELOOP
        return None


def _unreadable(path: Path, what: str) -> InputError:
    return InputError(
        f"{path}{_link_target(path)}: lvcd may not read this {what} (permission denied); make it readable, or copy it "
        "to a folder you can read."
    )


def _link_target(path: Path) -> str:
    """`` (a link to TARGET)`` for a link, else ''."""
    if not path.is_symlink():
        return ""
    try:
        return f" (a link to {path.readlink()})"
    except OSError:
        return " (a link)"


def _check_frame_entry(path: Path) -> None:
    """Refuse (InputError) a frame entry that is not a readable image file: a folder or a link to one (named like a
    frame, it would otherwise be skipped and every later frame shift one slot early), a link to nothing, a pipe,
    socket or device (reading one could block), or a file lvcd may not read."""
    status = _status(path, "frame")
    if status is None:
        if not path.is_symlink():
            raise InputError(
                f"{path}: the frame was removed while its folder was read; check the folder and run again."
            )
        try:
            target = str(path.readlink())
        except OSError:
            target = "?"
        raise InputError(
            f"{path}: a frame that is a broken link (its target {target} does not exist); "
            "restore the target or remove the link."
        )
    if stat.S_ISDIR(status.st_mode):
        raise InputError(
            f"{path}{_link_target(path)}: named like a frame but is a folder, not an image file; replace it with "
            "the frame's image file, or rename it without the image extension (sub-folders are skipped)."
        )
    if not stat.S_ISREG(status.st_mode):
        raise InputError(
            f"{path}: a frame that is not a regular file (a pipe, socket or device); remove it or replace it."
        )
    if not os.access(path, os.R_OK):
        raise _unreadable(path, "frame")


# --------------------------------------------------------------------------------------------------
# Pixel conversion
# --------------------------------------------------------------------------------------------------


def _composite_over_white(rgba: np.ndarray) -> np.ndarray:
    """HxWx4 uint8 (straight alpha) -> HxWx3 uint8 over a white background.

    White, because line art drawn on a transparent layer has dark lines; over black they would vanish.
    """
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    rgb = rgba[..., :3].astype(np.float32)
    return np.round(rgb * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)


def _high_depth_to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    """Single-channel 16-bit / 32-bit / float samples -> uint8 by their nominal range.

    - ``I;16*`` and ``I`` (32-bit int; Pillow opens a 16-bit PNG as one or the other depending on its version): 0..255
      kept (8-bit values written to a 16-bit file: by the 16-bit range they would read as black), else 0..65535
      (``v / 257``), else (``I`` only) min-max.
    - ``F``: [0, 1] -> x255, [0, 255] kept, anything else stretched min-max.
    Stretching by the actual min-max is the last resort only: it would change the tones of normal art.
    """
    values = values.astype(np.float64)
    if not values.size:
        return values.astype(np.uint8)
    low, high = float(values.min()), float(values.max())
    if mode == "F" and low >= 0.0 and high <= 1.0:
        scaled = values * 255.0
    elif low >= 0.0 and high <= 255.0:
        scaled = values
    elif mode.startswith("I;16") or (mode != "F" and low >= 0.0 and high <= 65535.0):
        scaled = values / 257.0
    else:
        scaled = (values - low) / (high - low) * 255.0 if high > low else np.zeros_like(values)
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    """Any Pillow image -> HxWx3 uint8 RGB (transparency composited over white)."""
    mode = image.mode
    if mode == "RGB":
        return np.asarray(image, dtype=np.uint8).copy()
    if mode in ("I", "F") or mode.startswith("I;16"):
        gray = _high_depth_to_uint8(np.asarray(image), mode)
        return np.repeat(gray[..., None], 3, axis=2)
    # A colour-key transparency counts only for palette/gray images: Pillow keeps a stale GIF key in
    # ``info`` after seeking to frames it already rendered to RGB.
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode in ("P", "L", "1") and "transparency" in image.info)
    if has_alpha:
        return _composite_over_white(np.asarray(image.convert("RGBA"), dtype=np.uint8))
    # L, 1, P, CMYK, YCbCr, LAB, HSV, RGBX: Pillow's own conversions.
    return np.asarray(image.convert("RGB"), dtype=np.uint8).copy()


def _open_pil(path: Path) -> Image.Image:
    """Open (lazily, header only) with a user-facing error; the caller closes the image."""
    status = _status(path)
    if status is None:
        raise InputError(f"{path}: file not found. Check the path.")
    if stat.S_ISDIR(status.st_mode):
        raise InputError(f"{path}: expected an image file, found a folder.")
    try:
        return Image.open(path)
    except PermissionError:
        raise _unreadable(path, "file") from None
    except Image.DecompressionBombError as err:
        raise InputError(f"{path}: the image is too large to process ({err}). Downscale it first.") from err
    except _PIL_ERRORS as err:
        raise InputError(
            f"{path}: not a readable image ({type(err).__name__}: {err}). "
            f"Use PNG, JPEG, WebP, BMP or TIFF, or re-export the file."
        ) from err


def _oriented_size_hw(image: Image.Image) -> tuple[int, int]:
    """Height and width after the EXIF orientation is applied (read from the header only)."""
    width, height = image.size
    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception:  # a broken EXIF block must not make the image unusable
        orientation = 1
    return (width, height) if orientation in (5, 6, 7, 8) else (height, width)


def image_size_hw(path: str | Path) -> tuple[int, int]:
    """An image file's height and width after its EXIF orientation, read from its header only; InputError naming
    the file if it is missing or not an image."""
    with _open_pil(Path(path)) as image:
        return _oriented_size_hw(image)


def load_image(path: str | Path) -> np.ndarray:
    """Read one image file as ``HxWx3 uint8 RGB``; the EXIF orientation is applied.

    Modes: RGB; RGBA / LA / PA / P-with-transparency composited over **white**; L, 1, P, CMYK via Pillow;
    16-bit and float (I;16, I, F) scaled to 8 bit by their nominal range. The first frame of an animated
    file is returned. Raises InputError naming the file if it is missing or not a decodable image.

    >>> load_image("reference.png").shape   # doctest: +SKIP
    (320, 576, 3)
    """
    path = Path(path)
    image = _open_pil(path)
    try:
        with image:
            return _pil_to_rgb(ImageOps.exif_transpose(image))
    except _PIL_ERRORS as err:
        raise InputError(
            f"{path}: the image data cannot be decoded ({type(err).__name__}: {err}). "
            "The file may be truncated or corrupt; re-export it."
        ) from err


IMAGE_CHANNELS: tuple[int, ...] = (1, 3, 4)  # gray, RGB, RGBA


def is_channel_first(shape: tuple[int, ...]) -> bool:
    """Whether an image array of this shape can only be (C, H, W): C is 1, 3 or 4 and the last dimension is not."""
    return len(shape) == 3 and shape[0] in IMAGE_CHANNELS and shape[-1] not in IMAGE_CHANNELS


def channels_last(array: np.ndarray) -> np.ndarray:
    """An image array as HxW or HxWxC: a (C, H, W) one (torch's layout, see :func:`is_channel_first`) transposed.

    >>> channels_last(np.zeros((3, 8, 5))).shape
    (8, 5, 3)
    """
    return np.moveaxis(array, 0, -1) if is_channel_first(array.shape) else array


def to_rgb_uint8(image: Any) -> np.ndarray:
    """Convert an image-like object to ``HxWx3 uint8 RGB``.

    Accepts a PIL image; a numpy array HxW, HxWx1, HxWx3 or HxWx4 (alpha composited over white; CxHxW too where
    it cannot be HxWxC, see :func:`channels_last`) of dtype bool, uint8, uint16 (full 16-bit range) or float in
    [0, 1]; or a torch tensor (3,H,W), (1,H,W) or (H,W)
    in [0, 1]. Floats are clipped to [0, 1] after a small tolerance; values far outside (e.g. [-1, 1] model
    space or [0, 255]) raise ValueError rather than silently producing a wrong image.

    >>> to_rgb_uint8(np.zeros((4, 5), dtype=np.float32)).shape
    (4, 5, 3)
    """
    if isinstance(image, Image.Image):  # turned upright by its EXIF orientation, as an image read from its path is
        return _pil_to_rgb(ImageOps.exif_transpose(image))
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(image, torch.Tensor):
        tensor = image.detach().cpu()
        if tensor.ndim == 3 and tensor.shape[0] in (1, 3):
            tensor = tensor.permute(1, 2, 0)  # (C, H, W) -> (H, W, C)
        elif tensor.ndim != 2:
            raise ValueError(f"expected a tensor of shape (3,H,W), (1,H,W) or (H,W), got {tuple(image.shape)}")
        if tensor.dtype == torch.uint8:
            array = tensor.numpy()
        else:
            array = tensor.float().numpy()
        return to_rgb_uint8(array)
    array = channels_last(np.asarray(image))
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ValueError(f"expected an array of shape HxW, HxWx1, HxWx3 or HxWx4, got {array.shape}")
    if not array.size:
        raise ValueError(f"the image is empty (shape {array.shape}): it has no pixels")
    array = _to_uint8_values(array)
    if array.ndim == 2:
        return np.repeat(array[..., None], 3, axis=2)
    if array.shape[2] == 4:
        return _composite_over_white(array)
    return np.ascontiguousarray(array)


def _to_uint8_values(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    if array.dtype == np.uint16:
        return np.round(array / 257.0).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        if array.size and (array.min() < 0 or array.max() > 255):
            raise ValueError(
                f"integer image values must be in [0, 255] (or use uint16), got [{array.min()}, {array.max()}]"
            )
        return array.astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        if array.size and not np.isfinite(array).all():
            raise ValueError("float image values must be in [0, 1], got NaN or infinite values")
        if array.size and (array.min() < -0.05 or array.max() > 1.05):
            raise ValueError(f"float image values must be in [0, 1], got [{array.min():.3g}, {array.max():.3g}]")
        return np.round(array.clip(0.0, 1.0) * 255.0).astype(np.uint8)
    raise ValueError(f"unsupported image dtype {array.dtype}; use uint8, uint16, bool or float in [0, 1]")


# Frames are read whole before they are brought to the processing size (about 320x576): refuse sizes whose few
# float copies on the way would take gigabytes. 8K UHD (7680x4320) is inside the limit.
MAX_FRAME_PIXELS = 40_000_000


def check_image(path: Path, option: str) -> None:
    """``path`` is an image file Pillow can read, decoded through (one picture: milliseconds), so a damaged reference
    or keyframe is said before the weights load."""
    named = f"{option}{'' if option.endswith('=') else ' '}{path}"
    if Path(path).is_dir():
        raise InputError(f"{named} is a folder; give one image file.")
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_FRAME_PIXELS:  # the line art's limit: it is brought to the line art's size anyway
                raise InputError(
                    f"{named} is {width}x{height}, over the limit of {MAX_FRAME_PIXELS / 1e6:.0f} megapixels (8K UHD "
                    "fits); downscale it first, e.g. to 3840 pixels wide."
                )
            frames = getattr(image, "n_frames", 1)
            if frames > 1 and image.format in ("GIF", "PNG", "WEBP", "TIFF"):  # not a camera's MPO JPEG (2 pictures)
                warnings.warn(f"{named} holds {frames} frames (or pages); its first one is used.", stacklevel=2)
            image.load()
    except InputError:
        raise
    except Image.DecompressionBombError as err:
        raise InputError(f"{named} is too large to read safely ({err}); give a smaller image.") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise InputError(f"{named} is not a readable image ({type(err).__name__}); give a PNG or JPEG.") from None
