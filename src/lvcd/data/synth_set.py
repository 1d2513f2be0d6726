"""``lvcd data synth``: write synthetic shots (``lvcd.data.synthetic``) as an LVCD training root.

The root has the layout ``lvcd data prepare`` writes and ``lvcd train`` / ``LVCDClipDataset`` read (see
``layout.py``): one clip per shot, frames ``img_H/<shot>/<NNNNNN>.png``, line art ``draw_H/...`` (dark lines on
white), plus the region labels ``label_H/...`` (16-bit PNG) that only synthetic roots have. Latents
(``lat_H/...``) are written when a VAE is given (the demo recipe trains the VAE on the frames first, then runs the
same command again with its weights to add them); ``lat_H/encoder.json`` records which VAE made them, so latents of
two different VAEs never mix in one root.

Resumable and extendable: a shot whose files all exist is skipped, so re-running with more ``shots`` (or with a
VAE) only adds what is missing. Every file is written atomically. ``workers`` > 1 generates and writes the shots in
that many processes (the files are the same bytes as with one); latents are encoded in the calling process, where the
VAE is.

    >>> report = write_synthetic_set("synth-train", split="train", shots=800, num_frames=45, size_hw=(64, 64))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from lvcd.data.latents import as_latent_encoder, frame_noise, frame_seed, to_model_input
from lvcd.data.layout import (
    INDEX_NAME,
    META_FORMAT,
    DatasetLayout,
    check_or_write_meta,
    clip_key,
    frame_name,
    write_json,
    write_latent,
    write_png,
)
from lvcd.data.synthetic import SPLIT_CAPACITY, SPLIT_SEEDS, default_line_width, split_seed, synth_shot
from lvcd.errors import InputError

ENCODER_RECORD = "encoder.json"
MIN_FRAMES = 15  # a training sample: the reference and 14 frames (the official num_frames)


@dataclass
class SynthReport:
    root: Path
    shots: int = 0  # shots in the index
    written: int = 0  # shots whose frames, line art and labels this run wrote
    skipped: int = 0  # shots already complete
    latents_written: int = 0  # frames whose latent this run wrote


def shot_name(split: str, index: int) -> str:
    return f"{split}_{index:07d}"


def _encoder_record(weights: str | Path | None, scale_factor: float, seed: int) -> dict[str, Any]:
    identity = None
    if weights is not None:
        digest = hashlib.sha256()
        with open(weights, "rb") as file:
            for block in iter(lambda: file.read(1 << 20), b""):
                digest.update(block)
        identity = digest.hexdigest()
    return {"weights_sha256": identity, "scale_factor": scale_factor, "seed": seed}


def _check_encoder(layout: DatasetLayout, record: dict[str, Any]) -> None:
    path = layout.latent_dir / ENCODER_RECORD
    if path.is_file():
        existing = json.loads(path.read_text())
        if existing != record:
            raise InputError(
                f"The latents in {layout.latent_dir} were made by another VAE ({path}); delete that folder to re-encode "
                "with this one, or write to a new root."
            )
    else:
        write_json(path, record)


def check_synth_options(
    split: str, shots: int, num_frames: int, size_hw: tuple[int, int], first: int = 0, workers: int = 1
) -> None:
    """The settings of :func:`write_synthetic_set`, checked before any work (``lvcd data synth`` runs this before its
    VAE loads); each error names the option of ``lvcd data synth``."""
    height, width = size_hw
    if split not in SPLIT_SEEDS:
        raise InputError(f"--split {split!r} is not one of {', '.join(SPLIT_SEEDS)}.")
    if shots < 1:
        raise InputError(f"--shots {shots}: give at least 1 shot.")
    if num_frames < MIN_FRAMES:
        raise InputError(f"--frames {num_frames}: a shot needs at least {MIN_FRAMES} frames (a training sample).")
    if first < 0:
        raise InputError(f"--first {first}: shots are numbered from 0; give 0 or more.")
    if first + shots > SPLIT_CAPACITY:
        raise InputError(
            f"--first {first} --shots {shots}: shots {first}..{first + shots - 1} are outside the split's range "
            f"0..{SPLIT_CAPACITY - 1}; give fewer shots or a smaller --first."
        )
    if height % 8 or width % 8 or height < 16 or width < 16:
        raise InputError(f"--size {height}x{width}: both sides must be multiples of 8 and at least 16.")
    if workers < 1:
        raise InputError(f"--workers {workers}: give at least 1 process.")


def write_synthetic_set(
    root: str | Path,
    split: str = "train",
    shots: int = 100,
    num_frames: int = 45,
    size_hw: tuple[int, int] = (64, 64),
    first: int = 0,
    vae: Any = None,
    vae_weights: str | Path | None = None,
    seed: int = 0,
    progress: bool = True,
    workers: int = 1,
) -> SynthReport:
    """Write shots ``first .. first+shots-1`` of ``split`` into ``root`` (resumable); ``vae`` (an AutoencoderKL or a
    ``LatentEncoder``) also writes their latents, with posterior noise seeded from (``seed``, frame name). ``workers``:
    processes generating shots (1: this one)."""
    check_synth_options(split, shots, num_frames, size_hw, first, workers)
    height, width = size_hw
    root = Path(root)
    layout = DatasetLayout(root, height)
    line_width = default_line_width(size_hw)
    check_or_write_meta(
        root,
        {
            "format": META_FORMAT,
            "size_hw": [height, width],
            "seed": seed,
            "lineart": "synthetic",
            "synthetic": {"split": split, "frames": num_frames, "line_width": line_width},
        },
    )
    encoder = as_latent_encoder(vae) if vae is not None else None
    if encoder is not None:
        scale = float(getattr(getattr(vae, "cfg", None), "scale_factor", 0.0))
        _check_encoder(layout, _encoder_record(vae_weights, scale, seed))

    report = SynthReport(root)
    index: dict[str, list[str]] = {}
    jobs = []
    for number in range(first, first + shots):
        job = _ShotJob(str(root), split, number, num_frames, (height, width), line_width)
        index[clip_key(shot_name(split, number), 0, num_frames)] = job.names
        needed = [layout.image_path, layout.sketch_path, layout.label_path]
        job.frames_done = all(path(n).is_file() for n in job.names for path in needed)
        job.latents_done = encoder is None or all(layout.latent_path(n).is_file() for n in job.names)
        if job.frames_done and job.latents_done:
            report.skipped += 1
        else:
            jobs.append(job)
    bar = tqdm(total=shots, initial=report.skipped, desc=f"synth {split}", unit="shot", disable=not progress)
    with bar:
        for job, frames in _generate(jobs, workers):
            report.written += not job.frames_done
            if not job.latents_done:
                report.latents_written += _write_latents(layout, encoder, job.names, frames, seed)
            bar.update(1)
    _merge_index(layout, index)
    report.shots = len(layout.read_index())
    return report


@dataclass
class _ShotJob:
    """One shot to write (picklable: it travels to the worker processes)."""

    root: str
    split: str
    number: int
    num_frames: int
    size_hw: tuple[int, int]
    line_width: int
    frames_done: bool = False  # its frames, line art and labels are all there
    latents_done: bool = True  # its latents are all there (or none are wanted)

    @property
    def names(self) -> list[str]:
        return [frame_name(shot_name(self.split, self.number), t) for t in range(self.num_frames)]


def _make_shot(job: _ShotJob):
    """Generate one shot, write its frames, line art and labels unless already there; return its colour frames."""
    shot = synth_shot(split_seed(job.split, job.number), job.num_frames, job.size_hw, job.line_width)
    if not job.frames_done:
        layout = DatasetLayout(Path(job.root), job.size_hw[0])
        for t, name in enumerate(job.names):
            write_png(layout.image_path(name), shot.frames[t])
            write_png(layout.sketch_path(name), shot.lineart[t])
            write_png(layout.label_path(name), shot.labels[t])
    return shot.frames


def _generate(jobs: list[_ShotJob], workers: int) -> Iterator[tuple[_ShotJob, object]]:
    """(job, frames) for every job in order, made here or in ``workers`` spawned processes."""
    if workers == 1 or len(jobs) < 2:
        for job in jobs:
            yield job, _make_shot(job)
        return
    context = multiprocessing.get_context("spawn")  # no fork of a process that may hold a CUDA context or threads
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context) as pool:
        yield from zip(jobs, pool.map(_make_shot, jobs, chunksize=4), strict=True)


def _write_latents(layout: DatasetLayout, encoder: Any, names: list[str], frames, seed: int) -> int:
    shape = (encoder.latent_channels, frames.shape[1] // encoder.downsample, frames.shape[2] // encoder.downsample)
    noise = torch.stack([frame_noise(seed, name, shape) for name in names])
    latents = encoder(to_model_input(list(frames)), noise)
    for name, latent in zip(names, latents, strict=True):
        metadata = {"lvcd_noise": json.dumps({"seed": seed, "frame_seed": frame_seed(seed, name)}, sort_keys=True)}
        write_latent(layout.latent_path(name), latent, metadata)
    return len(names)


def _merge_index(layout: DatasetLayout, index: dict[str, list[str]]) -> None:
    """Add this run's shots to the root's clip index (kept sorted), written atomically."""
    path = layout.index_path(INDEX_NAME)
    merged = layout.read_index() if path.is_file() else {}
    merged.update(index)
    write_json(path, {clip: merged[clip] for clip in sorted(merged)})
