"""The LVCD training dataset: the official ``AnimeVideoDataset`` sampling on our roots and the official one.

Index (exactly the official order): for every clip of ``train_clips_hist.json`` (file order) whose length
``L`` is within ``nframe_range``, and for ``i = L - num_frames`` down to ``0``, one sample with

* targets ``frames[i + 1 .. i + num_frames - 1]`` (14 consecutive frames for ``num_frames = 15``),
* reference candidates ``frames[0 .. i]``, the frames **before** the targets,

i.e. ``L - num_frames + 1`` samples per clip (``L - 14``). The reference is drawn uniformly from the first
``max(1, int(0.25 * (i + 1)))`` candidates. The official code uses Python's global ``random``; here the draw
of sample ``n`` in epoch ``e`` comes from a generator seeded with (``seed``, ``e``, ``n``), so it is
reproducible and the same in every DataLoader worker. Call :meth:`LVCDClipDataset.set_epoch` to get new
references each epoch.

An item (``F = num_frames``, reference first, then the targets):

* ``latents`` (F, 4, H/8, W/8) float32: the stored latents, already SCALED by 0.18215;
* ``control_hint`` (F, 3, H, W) float32: line art as ``1 - pixel / 255`` (lines ~ 1 on 0), reference included;
* ``reference`` (3, H, W) float32 in [-1, 1]: the reference colour frame (the official ``cond_frames``);
* ``fps_id``, ``motion_bucket_id`` (F,) int64; ``cond_aug`` (F,) float32 (zeros, as ``cond_aug: False``);
* ``image_only_indicator`` (F,) zeros, ``num_video_frames`` F; ``clip`` (str), ``reference_index`` and
  ``target_start`` (positions in the clip).

Images and sketches stored at another size are resized to ``size`` (bilinear, antialiased; exact HxW as the
official ``Resize``); latents must already match ``size / 8``.

    >>> dataset = LVCDClipDataset("Animation_video", seed=0)      # doctest: +SKIP
    >>> item = dataset[0]; item["latents"].shape                     # doctest: +SKIP
    torch.Size([15, 4, 40, 72])
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from lvcd.data.layout import INDEX_NAME, DatasetLayout, available_heights, read_meta
from lvcd.errors import InputError

REFERENCE_PREFIX = 0.25  # the reference comes from the first quarter of the frames before the targets


@dataclass(frozen=True)
class Sample:
    clip: str
    last_candidate: int  # i: candidates are frames[0..i], targets frames[i+1 .. i+num_frames-1]

    @property
    def num_candidates(self) -> int:
        return self.last_candidate + 1

    @property
    def num_allowed_references(self) -> int:
        return max(1, int(REFERENCE_PREFIX * self.num_candidates))


def build_samples(
    clips: dict[str, list[str]], num_frames: int = 15, nframe_range: tuple[int, int] = (15, 200)
) -> list[Sample]:
    """The official sample list: per clip in range, i = L - num_frames down to 0."""
    low, high = nframe_range
    samples = []
    for clip, frames in clips.items():
        length = len(frames)
        if not low <= length <= high or length < num_frames:
            continue
        samples.extend(Sample(clip, i) for i in range(length - num_frames, -1, -1))
    return samples


def _mix_seed(*values: int) -> int:
    return int(np.random.SeedSequence([int(v) % (1 << 64) for v in values]).generate_state(1, dtype=np.uint64)[0])


def open_root(root: Path, size: tuple[int, int]) -> DatasetLayout:
    """The layout of a training root for training size ``size`` (H, W), refused in one line when the root has no
    frames, none at that height, or was prepared at another size."""
    layout = DatasetLayout(root, size[0])
    if not available_heights(root):
        raise InputError(
            f"Training root {root} holds no frames (no img_<H>/ folder): make one with `lvcd data prepare` "
            "(videos) or `lvcd data synth` (synthetic shots), or point data.root at one."
        )
    if not layout.image_dir.is_dir():
        present = ", ".join(f"img_{h}" for h in available_heights(root))
        raise InputError(
            f"{root} has no {layout.image_dir.name}/ for training height {size[0]} (present: {present}); pass the "
            "size the root was prepared at."
        )
    meta = read_meta(root)
    if meta is not None and tuple(meta.get("size_hw", size)) != tuple(size):
        stored = meta["size_hw"]
        raise InputError(
            f"{root} was prepared at {stored[0]}x{stored[1]}, not {size[0]}x{size[1]}; pass size={tuple(stored)}."
        )
    return layout


def check_files(layout: DatasetLayout, clips: dict[str, list[str]], kinds: tuple[str, ...], index: Path) -> None:
    """Every frame of ``clips`` has its files of ``kinds`` on disk (see ``DatasetLayout.first_missing``): said before
    training starts, not when a batch first needs the frame (hours in, on a large root)."""
    names = sorted({name for frames in clips.values() for name in frames})
    first, count = layout.first_missing(names, kinds)
    if not count:
        return
    paths = {"image": [layout.image_path(first)], "sketch": [layout.sketch_path(first)]}
    paths["latent"] = [layout.latent_path(first), layout.official_latent_path(first)]
    missing = next(paths[kind][0] for kind in kinds if not any(path.is_file() for path in paths[kind]))
    raise InputError(
        f"{count} of the {len(names)} frames {index.name} lists lack files on disk ({missing} is missing, the "
        f"first); {layout.remake_hint(first, missing=True)}."
    )


class LVCDClipDataset(Dataset):
    """Training samples of an LVCD root (ours from ``lvcd data prepare`` or the official ``Animation_video``).

    size: training (H, W); the root's ``img_<H>``, ``draw_<H>``, ``lat_<H>`` folders are read.
    num_frames: frames per item, the reference included (15 officially: 1 reference + 14 targets).
    nframe_range: clip lengths used (official 15..200).
    seed: base seed of the reference draws; None takes ``torch.initial_seed()`` at construction.
    """

    def __init__(
        self,
        root: str | Path,
        size: tuple[int, int] = (320, 576),
        num_frames: int = 15,
        nframe_range: tuple[int, int] = (15, 200),
        seed: int | None = None,
        index_name: str = INDEX_NAME,
        fps_id: int = 6,
        motion_bucket_id: int = 160,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise InputError(f"Training root {self.root} is not a folder: prepare one with `lvcd data prepare`.")
        self.size = (int(size[0]), int(size[1]))
        if self.size[0] % 8 or self.size[1] % 8:
            raise InputError(f"Training size {self.size[0]}x{self.size[1]} must be multiples of 8.")
        if num_frames < 2:
            raise InputError(f"num_frames must be at least 2 (a reference and a target), got {num_frames}.")
        self.num_frames = num_frames
        self.fps_id = fps_id
        self.motion_bucket_id = motion_bucket_id
        self.seed = _mix_seed(torch.initial_seed()) if seed is None else int(seed)
        self.epoch = 0
        self.layout = open_root(self.root, self.size)
        self.clips = self.layout.read_index(index_name)
        self.samples = build_samples(self.clips, num_frames, nframe_range)
        if not self.samples:
            raise InputError(
                f"{self.layout.index_path(index_name)} has no clip of {max(nframe_range[0], num_frames)}.."
                f"{nframe_range[1]} frames, so there is nothing to train on."
            )
        if not self.layout.latent_dir.is_dir():
            raise InputError(
                f"{self.root} has no latents ({self.layout.latent_dir.name}/): a root of `lvcd data synth` gets them "
                "when the command runs again with --vae (the VAE's base file); `lvcd data prepare` writes them itself."
            )
        used = {sample.clip: self.clips[sample.clip] for sample in self.samples}
        check_files(self.layout, used, ("image", "sketch", "latent"), self.layout.index_path(index_name))

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Draw different references in each epoch (still reproducible from ``seed``)."""
        self.epoch = int(epoch)

    def reference_position(self, index: int) -> int:
        """Position in the clip of the reference of sample ``index`` (this epoch)."""
        sample = self.samples[index]
        generator = torch.Generator().manual_seed(_mix_seed(self.seed, self.epoch, index))
        return int(torch.randint(sample.num_allowed_references, (1,), generator=generator))

    def frame_names(self, index: int, reference_position: int | None = None) -> list[str]:
        """[reference] + targets of sample ``index``."""
        sample = self.samples[index]
        frames = self.clips[sample.clip]
        if reference_position is None:
            reference_position = self.reference_position(index)
        start = sample.last_candidate + 1
        return [frames[reference_position], *frames[start : start + self.num_frames - 1]]

    def _load_rgb(self, path: Path) -> np.ndarray:
        return self.layout.read_rgb(path, (self.size[1], self.size[0]))

    def _load_latent(self, name: str) -> torch.Tensor:
        latent = self.layout.load_latent(name)
        expected = (self.size[0] // 8, self.size[1] // 8)
        if tuple(latent.shape[-2:]) != expected:
            raise InputError(
                f"Latent of {name!r} is {tuple(latent.shape[-2:])}, not {expected} for size "
                f"{self.size[0]}x{self.size[1]}; the latents were encoded at another size."
            )
        return latent

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        reference_position = self.reference_position(index)
        names = self.frame_names(index, reference_position)
        reference = torch.from_numpy(self._load_rgb(self.layout.image_path(names[0]))).permute(2, 0, 1).float()
        sketches = np.stack([self._load_rgb(self.layout.sketch_path(name)) for name in names])
        control_hint = 1.0 - torch.from_numpy(sketches).permute(0, 3, 1, 2).float() / 255.0  # (F, 3, H, W), lines ~ 1
        latents = torch.stack([self._load_latent(name) for name in names])  # (F, 4, H/8, W/8), scaled
        frames = self.num_frames
        return {
            "latents": latents,
            "control_hint": control_hint,
            "reference": reference / 127.5 - 1.0,
            "fps_id": torch.full((frames,), self.fps_id, dtype=torch.int64),
            "motion_bucket_id": torch.full((frames,), self.motion_bucket_id, dtype=torch.int64),
            "cond_aug": torch.zeros(frames),
            "image_only_indicator": torch.zeros(frames),
            "num_video_frames": frames,
            "clip": sample.clip,
            "reference_index": reference_position,
            "target_start": sample.last_candidate + 1,
        }


class FrameClips(Dataset):
    """Every run of ``clip_frames`` consecutive frames of a root's clips, as (T, 3, H, W) in [-1, 1] (what
    ``lvcd train-vae`` trains on: frames only, no line art or latents).

    >>> clips = FrameClips("synth-train", size=(64, 64), clip_frames=4); clips[0].shape   # doctest: +SKIP
    torch.Size([4, 3, 64, 64])
    """

    def __init__(self, root: str | Path, size: tuple[int, int], clip_frames: int):
        self.layout = open_root(Path(root), (int(size[0]), int(size[1])))
        self.size = size
        self.clips = list(self.layout.read_index().values())
        self.items = [(c, s) for c, frames in enumerate(self.clips) for s in range(len(frames) - clip_frames + 1)]
        self.clip_frames = clip_frames
        if not self.items:
            raise InputError(f"{root} has no clip of {clip_frames} or more frames.")
        used = {str(c): self.clips[c] for c in sorted({c for c, _ in self.items})}
        check_files(self.layout, used, ("image",), self.layout.index_path())

    def __len__(self) -> int:
        return len(self.items)

    def frame(self, name: str) -> torch.Tensor:
        image = self.layout.read_rgb(self.layout.image_path(name), (self.size[1], self.size[0]))
        return torch.from_numpy(image).permute(2, 0, 1).float() / 127.5 - 1.0

    def __getitem__(self, index: int) -> torch.Tensor:
        clip, start = self.items[index]
        return torch.stack([self.frame(n) for n in self.clips[clip][start : start + self.clip_frames]])
