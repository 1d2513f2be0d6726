"""The data side of ``lvcd train``: the dataset, this process's resumable loader over its shard, the micro-batches
from a given position on, and the noise generator of each micro-batch.

Randomness: the data order comes from ``DistributedSampler`` seeded with ``seed`` (+ epoch), the references from the
dataset's own seed, and sigma/noise of micro-batch ``m`` on process ``r`` from a CPU generator seeded with
(seed, r, m); so a resumed run reads and draws exactly what the uninterrupted run would have.

    >>> loader, sampler, per_epoch = make_loader(config, dataset, accelerator)        # doctest: +SKIP
    >>> epoch, batch = next(micro_batches(loader, sampler, per_epoch, start=0))      # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from lvcd.errors import LVCDError
from lvcd.train.config import TrainConfig, TrainConfigError

BATCH_TENSOR_KEYS = ("latents", "control_hint", "reference", "fps_id", "motion_bucket_id", "cond_aug")


def build_dataset(config: TrainConfig) -> Dataset:
    from lvcd.data.dataset import LVCDClipDataset

    d = config.data
    if not d.root:
        raise TrainConfigError("data.root is required: an LVCD training root (see `lvcd data prepare`).")
    return LVCDClipDataset(d.root, size=d.size, num_frames=d.num_frames, nframe_range=d.nframe_range, seed=config.seed)


class ResumableSampler(DistributedSampler):
    """``DistributedSampler`` (per-epoch shuffle from ``seed + epoch``, one shard per process) that can start
    ``start_index`` samples into its epoch, so a resumed run skips what was consumed without loading it."""

    start_index = 0

    def __iter__(self) -> Iterator[int]:
        return iter(list(super().__iter__())[self.start_index :])

    def __len__(self) -> int:
        return self.num_samples - self.start_index


def micro_batches(
    loader: DataLoader, sampler: ResumableSampler, batches_per_epoch: int, start: int
) -> Iterator[tuple[int, dict]]:
    """(epoch, batch) from micro-batch ``start`` (per process) on, endlessly."""
    epoch, offset = divmod(start, batches_per_epoch)
    while True:
        sampler.set_epoch(epoch)
        sampler.start_index = offset * loader.batch_size
        if hasattr(loader.dataset, "set_epoch"):
            loader.dataset.set_epoch(epoch)  # new reference draws per epoch (workers copy the dataset per epoch)
        for batch in one_line_worker_errors(loader):
            yield epoch, batch
        epoch, offset = epoch + 1, 0


def one_line_worker_errors(batches: Iterable) -> Iterator:
    """``batches`` (a DataLoader), with an lvcd error raised in a worker process re-raised as its own one line: the
    DataLoader re-raises it with the worker's whole traceback as its message."""
    try:
        yield from batches
    except LVCDError as err:
        raise _unwrapped(err) from None


def _unwrapped(err: LVCDError) -> LVCDError:
    """The error a DataLoader worker raised, from the ``Caught X in DataLoader worker ... Original Traceback ...``
    text the DataLoader makes of it (the last ``module.X: message`` of that text)."""
    text = str(err)
    if not text.startswith("Caught ") or "Traceback" not in text:
        return err
    head = f"{type(err).__module__}.{type(err).__qualname__}: "
    at = text.rfind(head)
    if at < 0:
        return err
    try:
        return type(err)(" ".join(text[at + len(head) :].split()))
    except TypeError:  # an error class that wants more than its message
        return err


def to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    moved = {}
    for key in BATCH_TENSOR_KEYS:
        if key in batch:
            moved[key] = batch[key].to(device, non_blocking=True)
    return moved


def check_batch(batch: Mapping[str, Any], size_multiple: int) -> None:
    for key in ("latents", "control_hint", "reference"):
        if key not in batch:
            raise TrainConfigError(
                f"Training items need '{key}' (latents, control_hint, reference); this dataset has {sorted(batch)}."
            )
    height, width = batch["control_hint"].shape[-2:]
    if height % size_multiple or width % size_multiple:
        raise TrainConfigError(
            f"Training frames are {height}x{width}; both sides must be multiples of {size_multiple}."
        )


def make_loader(config: TrainConfig, dataset: Dataset, accelerator) -> tuple[DataLoader, ResumableSampler, int]:
    """This process's loader over its shard; returns (loader, sampler, batches per epoch)."""
    batch_size = config.train.batch_size
    sampler = ResumableSampler(
        dataset,
        num_replicas=accelerator.num_processes,
        rank=accelerator.process_index,
        shuffle=config.data.shuffle,
        seed=config.seed,
    )
    batches_per_epoch = sampler.num_samples // batch_size
    if batches_per_epoch == 0:
        raise TrainConfigError(
            f"The dataset has {len(dataset)} samples: fewer than train.batch_size {batch_size} x "
            f"{accelerator.num_processes} process(es); lower train.batch_size (or the processes), or add data."
        )
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=config.data.num_workers,
        drop_last=True,
        pin_memory=accelerator.device.type == "cuda",
    )
    return loader, sampler, batches_per_epoch


def noise_generator(seed: int, process_index: int, micro_step: int) -> torch.Generator:
    """The CPU generator of micro-batch ``micro_step`` on process ``process_index`` (its sigma and noise)."""
    state = np.random.SeedSequence([seed, process_index, micro_step]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state) & ((1 << 63) - 1))
