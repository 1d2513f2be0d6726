"""On-disk layout of an LVCD training set (the official ``Animation_video`` layout) and its index.

One root holds, for a training height ``H`` (320 for the official data)::

    ROOT/
      train_clips_hist.json          {clip: [frame names]}, names relative to img_H/ without extension
      img_H/<video>/<frame>.png      RGB frames at the training size
      draw_H/<video>/<frame>.png     line art, dark lines on white (what the official sketches are)
      lat_H/<video>/<frame>.safetensors   ours: {"latent": (4, H/8, W/8) float32}, SCALED (x 0.18215)
      lat_H/<video>/<frame>.pt       official: torch.save of a (1, 4, H/8, W/8) scaled latent (read only)
      label_H/<video>/<frame>.png    ours, synthetic roots only: 16-bit region label maps (`lvcd data synth`)
      lvcd_data.json                 ours: how the root was prepared (size, seed, line art, scene split)
      scenes/<video>.json            ours: the cached scene split of each video
      index/<shard>.json             ours: the clips each shard finished, merged into train_clips_hist.json

Our frames are named ``<video>/<NNNNNN>`` (source frame index, 6+ digits) and clips
``<video>/<first>-<last>`` (inclusive source frame indices), flat per video like the official data, so the
official reader works on our roots and ours on the official one.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from lvcd.errors import InputError, first_line
from lvcd.io.atomic import atomic_output, write_bytes_atomic, write_json_atomic
from lvcd.safe_pickle import weights_only_load

INDEX_NAME = "train_clips_hist"
META_NAME = "lvcd_data.json"
META_FORMAT = "lvcd-data/1"
LATENT_KEY = "latent"

# ---------------------------------------------------------------------------------------------- names


def sanitize_video_name(name: str) -> str:
    """A folder-safe video name: letters, digits, '.', '_' and '-' kept, anything else becomes '_'."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return cleaned or "video"


def frame_name(video: str, index: int) -> str:
    return f"{video}/{index:06d}"


def clip_key(video: str, start: int, stop: int) -> str:
    """Key of the clip made of source frames [start, stop)."""
    return f"{video}/{start:06d}-{stop - 1:06d}"


# ------------------------------------------------------------------------------------- atomic writes


def write_json(path: Path, document: Any) -> None:
    write_json_atomic(path, document, indent=1)


def write_png(path: Path, image: np.ndarray) -> None:
    """HxWx3 (RGB) or HxW (grayscale) uint8 array, or HxW uint16 (16-bit grayscale), to a PNG, atomically."""
    with atomic_output(path) as temporary:
        Image.fromarray(image).save(temporary, format="PNG")


def write_latent(path: Path, latent: torch.Tensor, metadata: Mapping[str, str] | None = None) -> None:
    """A (4, h, w) scaled latent to a safetensors file under the key ``latent``, atomically."""
    from safetensors.torch import save

    tensor = latent.detach().to("cpu", torch.float32).contiguous()
    write_bytes_atomic(path, save({LATENT_KEY: tensor}, metadata=dict(metadata or {})))


# -------------------------------------------------------------------------------------------- layout


class DatasetLayout:
    """Paths and readers of one training root at one training height.

    >>> layout = DatasetLayout("Animation_video", height=320)     # doctest: +SKIP
    >>> layout.image_path("Ponyo/000123")                          # doctest: +SKIP
    PosixPath('Animation_video/img_320/Ponyo/000123.png')
    """

    def __init__(self, root: str | Path, height: int = 320) -> None:
        self.root = Path(root)
        self.height = int(height)
        self.image_dir = self.root / f"img_{self.height}"
        self.sketch_dir = self.root / f"draw_{self.height}"
        self.latent_dir = self.root / f"lat_{self.height}"
        self.label_dir = self.root / f"label_{self.height}"
        self.scenes_dir = self.root / "scenes"
        self.shard_index_dir = self.root / "index"
        self.meta_path = self.root / META_NAME

    # paths
    def image_path(self, name: str) -> Path:
        return self.image_dir / f"{name}.png"

    def sketch_path(self, name: str) -> Path:
        return self.sketch_dir / f"{name}.png"

    def label_path(self, name: str) -> Path:
        """A synthetic frame's region label map (16-bit PNG)."""
        return self.label_dir / f"{name}.png"

    def latent_path(self, name: str) -> Path:
        """Where we write a latent (safetensors)."""
        return self.latent_dir / f"{name}.safetensors"

    def official_latent_path(self, name: str) -> Path:
        return self.latent_dir / f"{name}.pt"

    def index_path(self, index_name: str = INDEX_NAME) -> Path:
        return self.root / f"{index_name}.json"

    def scenes_path(self, video: str) -> Path:
        return self.scenes_dir / f"{video}.json"

    def shard_index_path(self, shard: int, num_shards: int) -> Path:
        return self.shard_index_dir / f"{INDEX_NAME}.shard-{shard:04d}-of-{num_shards:04d}.json"

    def frame_complete(self, name: str) -> bool:
        """All three outputs of a frame exist (they are written atomically, so existing means complete)."""
        return self.image_path(name).is_file() and self.sketch_path(name).is_file() and self.latent_path(name).is_file()

    def first_missing(
        self, names: list[str], kinds: tuple[str, ...] = ("image", "sketch", "latent")
    ) -> tuple[str, int]:
        """The first of ``names`` (frames) lacking a file of ``kinds`` ("image", "sketch", "latent": ours or the
        official .pt), and how many do: ("", 0) when none does. Lists each video's folders once (no stat per file)."""
        listed: dict[Path, set[str]] = {}

        def present(path: Path) -> bool:
            if path.parent not in listed:
                try:
                    listed[path.parent] = {entry.name for entry in os.scandir(path.parent)}
                except OSError:
                    listed[path.parent] = set()
            return path.name in listed[path.parent]

        first, count = "", 0
        for name in names:
            complete = all(
                present(self.latent_path(name)) or present(self.official_latent_path(name))
                if kind == "latent"
                else present(self.image_path(name) if kind == "image" else self.sketch_path(name))
                for kind in kinds
            )
            if not complete:
                first, count = first or name, count + 1
        return first, count

    # readers
    def read_index(self, index_name: str = INDEX_NAME) -> dict[str, list[str]]:
        path = self.index_path(index_name)
        if not path.is_file():
            raise InputError(
                f"No clip index {path}: prepare the root with `lvcd data prepare` (or `lvcd data index` after "
                "sharded runs), or put the official train_clips_hist.json there."
            )
        return read_clip_index(path)

    def load_latent(self, name: str) -> torch.Tensor:
        """The scaled latent of a frame, (4, h, w) float32, from our safetensors or the official .pt."""
        path = self.latent_path(name)
        if path.is_file():
            from safetensors.torch import load_file

            try:
                latent = load_file(str(path))[LATENT_KEY]
            except Exception as err:  # noqa: BLE001 - safetensors raises its own error types
                reason = f"no '{LATENT_KEY}' tensor" if isinstance(err, KeyError) else first_line(err)
                raise InputError(f"Latent file {path} is unreadable ({reason}); {self.remake_hint(name)}.") from None
        else:
            path = self.official_latent_path(name)
            if not path.is_file():
                raise InputError(
                    f"No latent for frame {name!r}: neither {self.latent_path(name)} nor {path} exists; "
                    f"{self.remake_hint(name, missing=True)}."
                )
            try:
                latent = weights_only_load(path)
            except Exception as err:  # noqa: BLE001 - a refused pickle, a damaged archive: the file is unusable
                raise InputError(
                    f"Latent file {path} is unreadable ({first_line(err)}); {self.remake_hint(name)}."
                ) from None
        if not isinstance(latent, torch.Tensor) or not latent.is_floating_point():
            raise InputError(f"Latent file {path} holds no float tensor; {self.remake_hint(name)}.")
        if latent.ndim == 4 and latent.shape[0] == 1:
            latent = latent[0]
        if latent.ndim != 3:
            raise InputError(
                f"Latent of frame {name!r} has shape {tuple(latent.shape)}; expected (4, h, w) or (1, 4, h, w)."
            )
        return latent.float()  # after the shape check: a copy of what the file holds

    def read_rgb(self, path: Path, size_wh: tuple[int, int]) -> np.ndarray:
        """A frame or line-art PNG of the root as an (H, W, 3) uint8 array at ``size_wh`` (bilinear when stored at
        another size); a missing or damaged file is one InputError line that says how to make it again."""
        name = self._frame_name(path)
        if not path.is_file():
            raise InputError(
                f"Missing {path}: the index lists a frame that is not on disk; {self.remake_hint(name, missing=True)}."
            )
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
                if image.size != tuple(size_wh):
                    image = image.resize(tuple(size_wh), Image.BILINEAR)
                return np.array(image)
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:  # PIL's decoding errors
            raise InputError(f"Image {path} is unreadable ({first_line(err)}); {self.remake_hint(name)}.") from None

    def remake_hint(self, name: str, missing: bool = False) -> str:
        """What to do about a damaged (or, ``missing``, absent) file of frame ``name``: the command that made the root
        writes only what is missing, so deleting the file and running it again remakes it."""
        video = name.split("/")[0]
        try:
            meta = read_meta(self.root)
        except InputError:
            meta = None
        first = "" if missing else "delete it, then "
        if meta is None:  # the official Animation_video root (lvcd writes lvcd_data.json into its own)
            return (
                f"{first}restore it from the dataset's download, or drop the clips of video {video!r} from "
                f"{self.index_path().name}"
            )
        if "synthetic" in meta:
            return (
                f"{first}run `lvcd data synth {self.root}` again with the options that made the root (and --vae "
                "with the VAE of its latents): it rewrites only what is missing"
            )
        return (
            f"{first}run the `lvcd data prepare ... --output {self.root}` command that made the root again (the same "
            f"inputs, video {video!r} among them, and options): it redoes only the frames with missing files"
        )

    def _frame_name(self, path: Path) -> str:
        """The frame name (``video/000123``) of a file under one of the root's folders."""
        try:
            parts = path.relative_to(self.root).with_suffix("").parts
        except ValueError:
            return path.stem
        return "/".join(parts[1:]) or path.stem


def read_clip_index(path: Path) -> dict[str, list[str]]:
    """Read a ``{clip: [frame names]}`` JSON and check its shape."""
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"Clip index {path} is not readable JSON ({err}).") from err
    if not isinstance(document, dict) or not all(
        isinstance(frames, list) and all(isinstance(name, str) for name in frames) for frames in document.values()
    ):
        raise InputError(f"Clip index {path} must map each clip name to a list of frame names.")
    return document


def available_heights(root: str | Path) -> list[int]:
    """Training heights present in a root (from its ``img_<H>`` folders)."""
    heights = []
    for entry in Path(root).glob("img_*"):
        suffix = entry.name[4:]
        if entry.is_dir() and suffix.isdigit():
            heights.append(int(suffix))
    return sorted(heights)


# -------------------------------------------------------------------------------------- meta + index


def read_meta(root: str | Path) -> dict[str, Any] | None:
    path = Path(root) / META_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{path} is not valid JSON ({err}); delete it only if the root holds nothing else.") from err


def check_or_write_meta(root: Path, meta: dict[str, Any]) -> None:
    """Record how a root is prepared; refuse to mix different settings in one root."""
    existing = read_meta(root)
    if existing is None:
        write_json(root / META_NAME, meta)
        return
    differences = [key for key in meta if key != "videos" and existing.get(key) != meta[key]]
    if differences:
        details = "; ".join(f"{key}: root has {existing.get(key)!r}, this run {meta[key]!r}" for key in differences)
        raise InputError(
            f"Root {root} was prepared with other settings ({details}). Use the same options to resume, or a new "
            "output folder."
        )


def merge_shard_indexes(root: str | Path, allow_partial: bool = False) -> tuple[dict[str, list[str]], list[str]]:
    """Union of the shard indexes, ordered by clip key, and the clips expected but not yet prepared.

    The expected clips are those of every cached scene split (``scenes/*.json``) in the root.
    """
    root = Path(root)
    layout = DatasetLayout(root)
    merged: dict[str, list[str]] = {}
    for path in sorted(layout.shard_index_dir.glob(f"{INDEX_NAME}.shard-*.json")):
        for clip, frames in read_clip_index(path).items():
            if clip in merged and merged[clip] != frames:
                raise InputError(
                    f"Shard indexes disagree on clip {clip!r} ({path}); re-run `lvcd data prepare` on that shard."
                )
            merged[clip] = frames
    expected: set[str] = set()
    for path in sorted(layout.scenes_dir.glob("*.json")):
        scan = json.loads(path.read_text())
        expected.update(clip_key(scan["video"], start, stop) for start, stop in scan["clips"])
    missing = sorted(expected - merged.keys())
    if missing and not allow_partial:
        return {}, missing
    return {clip: merged[clip] for clip in sorted(merged)}, missing
