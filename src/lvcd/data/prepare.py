"""``lvcd data prepare``: videos or frame folders -> an LVCD training root (see ``layout.py``).

Two passes per video:

1. **scan**: decode every frame, resize it to the training size and split into scenes and clips
   (``scenes.py``); the result is cached in ``scenes/<video>.json``.
2. **process**: decode again and, for the frames of the clips this shard owns that are not complete yet,
   write the resized frame, its line art and its VAE latent.

Resumable: a frame whose three outputs exist is skipped (every file is written to a temporary name and
renamed, so an existing file is complete); a second run over a finished root decodes nothing and loads no
model. Shardable: the clips of all inputs, sorted by key, are cut into ``num_shards`` contiguous runs of
about equal frame count; shard ``i`` processes run ``i`` (so it decodes each video only up to its last
clip). Every shard needs the same inputs and options. Each shard writes ``index/<shard>.json``; whichever
shard finds all clips of the root done writes ``train_clips_hist.json`` (``lvcd data index`` does the same
by hand).

Latents are reproducible across resumes and shards: the posterior noise of a frame comes from its own
generator, seeded from (``seed``, frame name), and frames are encoded in fixed groups of ``batch_size``
counted from each clip's first frame, so a frame's latent does not depend on which other frames a run had
left to do (it can depend, at the float-rounding level, on ``batch_size`` and the device).

One VAE per root: ``lvcd_data.json`` records the VAE that encodes the latents (``vae``: a hash of its encoder
tensors and its scale factor, :func:`vae_record`); a shard or resume with another VAE is refused before any work. A
root of an earlier version (no VAE recorded) is taken to be of the VAE of the first run that records one.

    >>> report = prepare_dataset(["movie.mp4"], "train_root", encoder=vae, lineart=get_extractor("xdog"))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from lvcd.data.inputs import VideoInput, collect_inputs
from lvcd.data.latents import as_latent_encoder, frame_noise, frame_seed, to_model_input
from lvcd.data.layout import (
    META_FORMAT,
    DatasetLayout,
    check_or_write_meta,
    clip_key,
    frame_name,
    merge_shard_indexes,
    read_meta,
    write_json,
    write_latent,
    write_png,
)
from lvcd.data.root import FreshRoot, write_json_if_changed
from lvcd.data.scenes import SceneDetector, SceneSplitConfig, clip_ranges, resize_rgb, scene_ranges
from lvcd.errors import InputError

# ---------------------------------------------------------------------------------------- components


class Lazy:
    """A component built on first use (so a run with nothing left to do loads no weights)."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._value: Any = None
        self.built = False

    def get(self) -> Any:
        if not self.built:
            self._value = self._factory()
            self.built = True
        return self._value


def _resolve(component: Any) -> Any:
    return component.get() if isinstance(component, Lazy) else component


# -------------------------------------------------------------------------------------------- inputs


def _open_frames(path: Path):
    from lvcd.io.frames import FrameSource

    return FrameSource.open(path)


# ----------------------------------------------------------------------------------------- utilities


def _close(*objects: Any) -> None:
    """Close what has a ``close`` (a half-consumed frame generator holds an open container until closed)."""
    for obj in objects:
        close = getattr(obj, "close", None)
        if callable(close):
            close()


# ------------------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class PrepareOptions:
    """Settings of a prepare run. ``size_hw``, ``seed``, ``lineart_method`` and ``scene`` must stay the same
    for every run (resume, shard) into one root; ``batch_size``, ``shard`` and ``num_shards`` may differ."""

    size_hw: tuple[int, int] = (320, 576)
    seed: int = 0
    batch_size: int = 8
    scene: SceneSplitConfig = field(default_factory=SceneSplitConfig)
    shard: int = 0
    num_shards: int = 1
    lineart_method: str = "unspecified"
    progress: bool = True
    vae: dict[str, Any] | None = None  # what identifies the VAE encoding the latents (vae_record); None: unchecked

    def __post_init__(self) -> None:
        height, width = self.size_hw
        if height <= 0 or width <= 0 or height % 8 or width % 8:
            raise InputError(
                f"Training size {height}x{width} must be positive multiples of 8 (the official one is 320x576)."
            )
        if self.batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {self.batch_size}.")
        if self.num_shards < 1 or not 0 <= self.shard < self.num_shards:
            raise InputError(f"Shard {self.shard} of {self.num_shards} does not exist: use 0 <= shard < num_shards.")

    def meta(self) -> dict[str, Any]:
        return {
            "format": META_FORMAT,
            "size_hw": list(self.size_hw),
            "seed": self.seed,
            "lineart": self.lineart_method,
            "scene": self.scene.to_dict(),
        }


# ------------------------------------------------------------------------------------------- the VAE

VAE_TENSOR_PREFIXES = ("first_stage_model.encoder.", "first_stage_model.quant_conv.")  # what makes a latent


def vae_record(weights: str | os.PathLike, scale_factor: float) -> dict[str, Any]:
    """What identifies the VAE of a weights file for a root's latents: a sha256 over the name, dtype, shape and bytes
    of its encoder tensors (``first_stage_model.encoder.*`` and ``quant_conv``, read through the one weights reader:
    only those are read from a safetensors file, so the same weights in another file or format are the same VAE) and
    the scale factor."""
    from lvcd.state_dict import WeightsFile

    digest = hashlib.sha256()
    file = WeightsFile(weights, "svd")
    for key in sorted(k for k in file.keys() if k.startswith(VAE_TENSOR_PREFIXES)):
        tensor = file.get(key).contiguous()
        digest.update(json.dumps([key, str(tensor.dtype), list(tensor.shape)]).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return {"encoder_sha256": digest.hexdigest(), "scale_factor": float(scale_factor)}


def check_or_record_vae(root: Path, record: dict[str, Any] | None) -> dict[str, Any] | None:
    """Before any work: refuse a VAE other than the one ``root`` records (one line). Returns the record to write into
    the root's metadata (None: keep it as it is). A root of an earlier version records no VAE: its latents are
    taken to be of this one, which is recorded from now on (said as a warning)."""
    existing = read_meta(root)
    if record is None or existing is None:
        return record
    recorded = existing.get("vae")
    if recorded is None:
        print(
            f"warning: {root} records no VAE (prepared by an earlier lvcd): its latents are taken to be of this "
            "--svd, which is recorded now; later runs with another VAE are refused.",
            file=sys.stderr,
        )
        return record
    if recorded != record:
        which = [
            f"{key} {recorded.get(key)!r} -> {record.get(key)!r}" for key in record if recorded.get(key) != record[key]
        ]
        raise InputError(
            f"Root {root} holds latents of another VAE ({'; '.join(which)}): give the --svd it was prepared with, or "
            "a new output folder."
        )
    return None


def claim_root(root: Path, options: PrepareOptions) -> None:
    """Check the root's recorded settings and VAE against this run's, or record them, one shard at a time: shards
    started together with different VAEs both found no record and both ran (the last one's record won)."""
    with _one_at_a_time(root):
        vae_to_record = check_or_record_vae(root, options.vae)
        check_or_write_meta(root, options.meta())  # the settings, compared (the VAE just was)
        if vae_to_record is not None:
            write_json(DatasetLayout(root, options.size_hw[0]).meta_path, {**read_meta(root), "vae": vae_to_record})


@contextmanager
def _one_at_a_time(root: Path):
    """A lock on the folder holding ``root`` (which may not exist yet), held while its records are read and written;
    the kernel drops it when the process dies."""
    from lvcd.io.locks import lock_waiting

    holder = Path(os.path.abspath(root)).parent
    while not holder.is_dir():
        holder = holder.parent
    fd = os.open(holder, os.O_RDONLY)
    try:
        lock_waiting(fd)
        yield
    finally:
        os.close(fd)


@dataclass
class PrepareReport:
    videos: int = 0
    clips_total: int = 0
    clips_in_shard: int = 0
    frames_in_shard: int = 0
    frames_written: int = 0
    frames_skipped: int = 0
    index_path: Path | None = None
    clips_missing: int = 0


# ---------------------------------------------------------------------------------------------- scan


def cached_scan(video: VideoInput, layout: DatasetLayout, options: PrepareOptions) -> dict[str, Any] | None:
    """The scene split of ``video`` cached in ``scenes/`` when it was made with these settings, else None; a cache of
    another source under the same name is refused."""
    path = layout.scenes_path(video.name)
    if not path.is_file():
        return None
    cached = json.loads(path.read_text())
    if cached.get("fingerprint") != video.fingerprint():
        raise InputError(
            f"Root {layout.root} already holds a video named {video.name!r} from another source "
            f"({cached.get('source')}); rename {video.path} or use another output folder."
        )
    if cached.get("scene") == options.scene.to_dict() and cached.get("size_hw") == list(options.size_hw):
        return cached
    return None


def scan_video(
    video: VideoInput,
    layout: DatasetLayout,
    options: PrepareOptions,
    open_frames=_open_frames,
    wrote: list[Path] | None = None,
) -> dict[str, Any]:
    """Scene split of one video, from the cache in ``scenes/`` when it was made with the same settings (``wrote``:
    the cache's path is appended when this call wrote it)."""
    cached = cached_scan(video, layout, options)
    if cached is not None:
        return cached
    path = layout.scenes_path(video.name)
    fingerprint = video.fingerprint()
    detector = SceneDetector(options.scene)
    source = open_frames(video.path)
    # No total: len() of a video source decodes the whole file once more just to count.
    with tqdm(desc=f"scan {video.name}", unit="frame", disable=not options.progress, leave=False) as bar:
        try:
            for frame in source:
                detector.update(frame)
                bar.update(1)
        finally:
            _close(source)
    if detector.num_frames == 0:
        raise InputError(f"{video.path} has no frames.")
    scan = {
        "video": video.name,
        "source": str(video.path.resolve()),
        "fingerprint": fingerprint,
        "size_hw": list(options.size_hw),
        "scene": options.scene.to_dict(),
        "num_frames": detector.num_frames,
        "cuts": detector.cuts,
        "clips": [list(c) for c in clip_ranges(scene_ranges(detector.num_frames, detector.cuts), options.scene)],
        "scores": [round(s, 3) for s in detector.scores],
    }
    write_json(path, scan)
    if wrote is not None:
        wrote.append(path)
    return scan


# ------------------------------------------------------------------------------------------ sharding


@dataclass(frozen=True)
class Clip:
    video: str
    start: int
    stop: int

    @property
    def key(self) -> str:
        return clip_key(self.video, self.start, self.stop)

    @property
    def frame_names(self) -> list[str]:
        return [frame_name(self.video, i) for i in range(self.start, self.stop)]


def shard_clips(clips: Sequence[Clip], shard: int, num_shards: int) -> list[Clip]:
    """The contiguous run of clips (sorted by key) owned by ``shard``: cut by cumulative frame count."""
    ordered = sorted(clips, key=lambda c: c.key)
    total = sum(c.stop - c.start for c in ordered)
    owned, position = [], 0
    for clip in ordered:
        length = clip.stop - clip.start
        # The shard whose share of the frame line holds the clip's midpoint (integer maths: deterministic).
        owner = min(((2 * position + length) * num_shards) // (2 * max(total, 1)), num_shards - 1)
        if owner == shard:
            owned.append(clip)
        position += length
    return owned


# ------------------------------------------------------------------------------------------- process


class _Writer:
    """Writes the outputs of fixed frame groups (each group: consecutive frames of one clip)."""

    def __init__(
        self, layout: DatasetLayout, encoder: Any, lineart: Any, options: PrepareOptions, report: PrepareReport
    ):
        self.layout = layout
        self.encoder = encoder
        self.lineart = lineart
        self.options = options
        self.report = report

    def write_group(self, names: list[str], frames: list[np.ndarray]) -> None:
        layout = self.layout
        for name, frame in zip(names, frames, strict=True):
            if not layout.image_path(name).is_file():
                write_png(layout.image_path(name), frame)
            if not layout.sketch_path(name).is_file():
                write_png(layout.sketch_path(name), self._lines(name, frame))
        if any(not layout.latent_path(name).is_file() for name in names):
            latents = self._encode(names, frames)
            for name, latent in zip(names, latents, strict=True):
                if not layout.latent_path(name).is_file():
                    # One metadata key: safetensors writes a map's keys in no fixed order, and resumed runs
                    # must give byte-identical files.
                    noise = {"seed": self.options.seed, "frame_seed": frame_seed(self.options.seed, name)}
                    metadata = {"lvcd_noise": json.dumps(noise, sort_keys=True)}
                    write_latent(layout.latent_path(name), latent, metadata)

    def _lines(self, name: str, frame: np.ndarray) -> np.ndarray:
        lines = np.asarray(_resolve(self.lineart)(frame))
        if lines.ndim == 3 and lines.shape[2] == 1:
            lines = lines[..., 0]
        if lines.shape != frame.shape[:2] or lines.dtype != np.uint8:
            raise InputError(
                f"The line-art extractor returned shape {lines.shape} dtype {lines.dtype} for frame {name!r}; "
                f"expected {frame.shape[:2]} uint8 (dark lines on white)."
            )
        return lines

    def _encode(self, names: list[str], frames: list[np.ndarray]) -> torch.Tensor:
        encoder = _resolve(self.encoder)
        height, width = frames[0].shape[:2]
        shape = (encoder.latent_channels, height // encoder.downsample, width // encoder.downsample)
        noise = torch.stack([frame_noise(self.options.seed, name, shape) for name in names])
        latents = encoder(to_model_input(frames), noise)  # (N, 4, H/8, W/8), scaled
        if tuple(latents.shape) != (len(names), *shape):
            raise InputError(
                f"The latent encoder returned shape {tuple(latents.shape)}; expected {(len(names), *shape)}."
            )
        return latents


def _frame_groups(clips: Sequence[Clip], batch_size: int) -> list[list[int]]:
    return [list(range(g, min(g + batch_size, c.stop))) for c in clips for g in range(c.start, c.stop, batch_size)]


def process_video(
    video: VideoInput,
    clips: Sequence[Clip],
    writer: _Writer,
    bar: tqdm,
    open_frames=_open_frames,
) -> None:
    """Decode ``video`` once and write the missing outputs of ``clips`` (all of this video)."""
    layout, report = writer.layout, writer.report
    todo = []
    for group in _frame_groups(clips, writer.options.batch_size):
        incomplete = [i for i in group if not layout.frame_complete(frame_name(video.name, i))]
        report.frames_skipped += len(group) - len(incomplete)
        if incomplete:
            todo.append((group, len(incomplete)))
    if not todo:
        return
    group_of = {i: g for g, (group, _) in enumerate(todo) for i in group}
    last_needed = max(group_of)
    pending: dict[int, dict[int, np.ndarray]] = {}
    source = open_frames(video.path)
    frames_iter = iter(source)
    index = -1
    try:
        for index, frame in enumerate(frames_iter):
            if index > last_needed:
                break
            g = group_of.get(index)
            if g is None:
                continue
            pending.setdefault(g, {})[index] = resize_rgb(frame, writer.options.size_hw)
            group, incomplete = todo[g]
            if len(pending[g]) == len(group):
                frames = pending.pop(g)
                writer.write_group([frame_name(video.name, i) for i in group], [frames[i] for i in group])
                report.frames_written += incomplete
                bar.update(incomplete)
    finally:
        _close(frames_iter, source)
    if pending:
        raise InputError(
            f"{video.path} ended after {index + 1} frames but its scene scan counted more; the file changed since the "
            f"scan: delete {layout.scenes_path(video.name)} and run again."
        )


def prepare_dataset(
    inputs: Iterable[str | Path],
    root: str | Path,
    *,
    encoder: Any,
    lineart: Any,
    options: PrepareOptions | None = None,
    open_frames: Callable[[Path], Any] = _open_frames,
) -> PrepareReport:
    """Prepare (or resume) this shard of a training root from videos / frame folders.

    encoder: an ``AutoencoderKL``, a ``LatentEncoder``, or a ``Lazy`` of either (built only if a latent is missing).
    lineart: a callable HxWx3 uint8 -> HxW uint8 (``lvcd.lineart.get_extractor(...)``), or a ``Lazy`` of one.
    """
    options = options or PrepareOptions()
    root = Path(root)
    videos = collect_inputs(inputs)
    if root.exists() and not root.is_dir():
        raise InputError(f"Output {root} exists and is not a folder.")
    layout = DatasetLayout(root, options.size_hw[0])
    # Every input still to be scanned is opened now (a video's container and first frame: milliseconds), so a damaged
    # one is refused before the others are scanned for minutes and before anything is written; a scanned one (its
    # cache, of a file of the same size) is not decoded again unless it has clips left to write.
    for video in videos:
        if cached_scan(video, layout, options) is None:
            video.check_opens()
    fresh = FreshRoot(root, layout)  # a root this run starts: undone if the inputs turn out unusable
    fresh.wrote_meta = not layout.meta_path.exists()
    claim_root(root, options)
    report = PrepareReport(videos=len(videos))

    # Pass 1: scene split of every input (each shard needs all clips to know its share). Shards start at
    # different videos so that, run side by side, they mostly scan different ones; the caches are shared.
    rotation = options.shard % len(videos)
    scans = {}
    with fresh.undone_on_error():
        for video in videos[rotation:] + videos[:rotation]:
            scans[video.name] = scan_video(video, layout, options, open_frames, wrote=fresh.written)
        clips = [Clip(v.name, start, stop) for v in videos for start, stop in scans[v.name]["clips"]]
        if not clips:
            raise InputError(_no_clips_message(videos, scans, options))
    owned = shard_clips(clips, options.shard, options.num_shards)
    report.clips_total = len(clips)
    report.clips_in_shard = len(owned)
    report.frames_in_shard = sum(c.stop - c.start for c in owned)

    # Pass 2: frames of the owned clips.
    writer = _Writer(layout, Lazy(lambda: as_latent_encoder(_resolve(encoder))), lineart, options, report)
    with tqdm(
        total=report.frames_in_shard,
        desc=f"prepare shard {options.shard}/{options.num_shards}",
        unit="frame",
        disable=not options.progress,
    ) as bar:
        for video in videos:
            mine = [c for c in owned if c.video == video.name]
            if mine:
                before = report.frames_skipped
                process_video(video, mine, writer, bar, open_frames)
                bar.update(report.frames_skipped - before)

    # Index: this shard's finished clips, then the root's index once every clip of the root is done.
    done = {c.key: c.frame_names for c in owned if all(layout.frame_complete(n) for n in c.frame_names)}
    write_json_if_changed(layout.shard_index_path(options.shard, options.num_shards), done)
    merged, missing = merge_shard_indexes(root)
    report.clips_missing = len(missing)
    if not missing:
        report.index_path = layout.index_path()
        write_json_if_changed(report.index_path, merged)
    return report


def _no_clips_message(videos: list[VideoInput], scans: dict[str, dict], options: PrepareOptions) -> str:
    """Why a run yields no clip: each input's frames, cuts and longest scene against the clip length range."""
    scene = options.scene
    parts = []
    for video in videos:
        scan = scans[video.name]
        longest = max((stop - start for start, stop in scene_ranges(scan["num_frames"], scan["cuts"])), default=0)
        parts.append(f"{video.path}: {scan['num_frames']} frames, {len(scan['cuts'])} cuts, longest scene {longest}")
    return (
        f"no clips: every scene is shorter than --min-frames {scene.min_frames}"
        f"{' or longer than --max-frames ' + str(scene.max_frames) if scene.long_scenes == 'drop' else ''} "
        f"({'; '.join(parts)}). Give longer shots, lower --min-frames, or raise --threshold "
        f"({scene.threshold:g}) if continuous shots are cut."
    )
