"""Accelerator memory accounting: where the peak of a block of work goes (weights, activations, workspace).

    >>> with MemoryAccount.measure(model, "cuda") as account:   # doctest: +SKIP
    ...     model.denoise(x, sigma, cond, layout)
    >>> account.as_dict()                                        # doctest: +SKIP
    {'weights_bytes': {...}, 'activations_bytes': ..., 'workspace_bytes': ..., 'peak_allocated_bytes': ...}

- weights: the parameters and buffers of each model part resident on the device during the block;
- activations: peak ``max_memory_allocated`` minus the weights (every tensor of the computation at its peak);
- workspace: peak ``max_memory_reserved`` minus peak allocated (the caching allocator's slack and fragmentation).

Off CUDA only the weights are known (the peaks are None): peak host memory is measured by the benchmarks
(``benchmarks/denoiser_call.py``'s ``PeakMemory``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn


def weight_bytes(model: nn.Module, device: str | torch.device | None = None) -> dict[str, int]:
    """Bytes of parameters and buffers per top-level part of ``model`` (an ``LVCDModel``'s ``model``,
    ``control_model``, ``conditioner``, ``first_stage_model``), counting only tensors on ``device`` (all if None)."""
    wanted = torch.device(device) if device is not None else None
    sizes: dict[str, int] = {}
    for name, child in model.named_children():
        total = 0
        for tensor in [*child.parameters(), *child.buffers()]:
            if wanted is None or _same_device(tensor.device, wanted):
                total += tensor.numel() * tensor.element_size()
        sizes[name] = total
    return sizes


def _same_device(actual: torch.device, wanted: torch.device) -> bool:
    return actual.type == wanted.type and (wanted.index is None or actual.index in (None, wanted.index))


@dataclass
class MemoryAccount:
    weights_bytes: dict[str, int] = field(default_factory=dict)
    peak_allocated_bytes: int | None = None
    peak_reserved_bytes: int | None = None

    @property
    def activations_bytes(self) -> int | None:
        if self.peak_allocated_bytes is None:
            return None
        return self.peak_allocated_bytes - sum(self.weights_bytes.values())

    @property
    def workspace_bytes(self) -> int | None:
        if self.peak_reserved_bytes is None or self.peak_allocated_bytes is None:
            return None
        return self.peak_reserved_bytes - self.peak_allocated_bytes

    def as_dict(self) -> dict:
        return {
            "weights_bytes": dict(self.weights_bytes),
            "weights_total_bytes": sum(self.weights_bytes.values()),
            "activations_bytes": self.activations_bytes,
            "workspace_bytes": self.workspace_bytes,
            "peak_allocated_bytes": self.peak_allocated_bytes,
            "peak_reserved_bytes": self.peak_reserved_bytes,
        }

    @classmethod
    @contextmanager
    def measure(cls, model: nn.Module, device: str | torch.device) -> Iterator[MemoryAccount]:
        """Account the block's peak on ``device``. The weights are those resident at the END of the block: with
        offloading, measure one phase at a time. (Other tensors held before the block count as activations.)"""
        device = torch.device(device)
        account = cls()
        cuda = device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        try:
            yield account
        finally:
            if cuda:
                torch.cuda.synchronize(device)
                account.peak_allocated_bytes = torch.cuda.max_memory_allocated(device)
                account.peak_reserved_bytes = torch.cuda.max_memory_reserved(device)
            account.weights_bytes = weight_bytes(model, device)
