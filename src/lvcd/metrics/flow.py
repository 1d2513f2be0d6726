"""Optical flow for the temporal-consistency metric: RAFT (the paper's) when its weights are given, else OpenCV DIS.

A flow estimator is any callable ``flow(frames_a, frames_b) -> (N, 2, H, W)`` taking two (N, 3, H, W) float
batches in [0, 1] and returning, per pixel of ``frames_a``, its displacement (dx, dy) in pixels to ``frames_b``:
``frames_a[y, x] ~ frames_b[y + dy, x + dx]``.

- :class:`DISFlow`: ``cv2.DISOpticalFlow`` on luma, preset "medium" (needs ``pip install 'lvcd[eval]'``).
- :class:`lvcd.metrics.raft.RAFTFlow`: RAFT-large, our own modules loading the authors' ``raft-things.pth`` or
  torchvision's ``raft_large_*.pth`` state dicts (no torchvision needed).
- :class:`TorchScriptFlow`: a RAFT exported with ``torch.jit.script``/``trace`` (see docs/metrics.md), called as
  ``model(image1, image2)`` on [-1, 1] images padded to a multiple of 8; a list/tuple output means
  per-iteration predictions, of which the last is used (torchvision's RAFT convention).

    >>> flow = DISFlow()                                          # doctest: +SKIP
    >>> warped, inside = backward_warp(frames_b, flow(frames_a, frames_b))   # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lvcd.errors import InputError, LVCDError
from lvcd.metrics.checkpoints import is_torchscript, load_torchscript, require_file
from lvcd.metrics.optional import import_cv2
from lvcd.metrics.raft import MIN_SIDE

FlowEstimator = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

_LUMA = (0.299, 0.587, 0.114)


class DISFlow:
    """Dense inverse search flow (Kroeger et al. 2016) from OpenCV, on 8-bit luma."""

    name = "dis"
    PRESETS = ("ultrafast", "fast", "medium")

    def __init__(self, preset: str = "medium") -> None:
        cv2 = import_cv2()
        if preset not in self.PRESETS:
            raise InputError(f"DIS preset must be one of {self.PRESETS}, got {preset!r}")
        code = getattr(cv2, f"DISOPTICAL_FLOW_PRESET_{preset.upper()}")
        self._dis = cv2.DISOpticalFlow_create(code)

    @staticmethod
    def _luma_u8(frames: torch.Tensor) -> np.ndarray:
        weights = torch.tensor(_LUMA, dtype=torch.float32).view(1, 3, 1, 1)
        luma = (frames.detach().float().cpu() * weights).sum(dim=1)
        return (luma * 255.0).round().clamp(0, 255).to(torch.uint8).numpy()

    def __call__(self, frames_a: torch.Tensor, frames_b: torch.Tensor) -> torch.Tensor:
        flows = [
            self._dis.calc(a, b, None) for a, b in zip(self._luma_u8(frames_a), self._luma_u8(frames_b), strict=True)
        ]
        return torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2).contiguous()  # (N, 2, H, W)


class TorchScriptFlow:
    """A TorchScript optical-flow network (e.g. RAFT) behind the estimator interface."""

    name = "raft"
    min_side = MIN_SIDE  # RAFT's coarsest correlation level (1/64 of the frame) needs 2 cells

    def __init__(self, module: torch.nn.Module, device: str | torch.device = "cpu") -> None:
        self.module = module
        self.device = torch.device(device)

    @torch.no_grad()
    def __call__(self, frames_a: torch.Tensor, frames_b: torch.Tensor) -> torch.Tensor:
        h, w = frames_a.shape[-2:]
        pad = (0, (-w) % 8, 0, (-h) % 8)
        flows = []
        for a, b in zip(frames_a, frames_b, strict=True):  # one pair per call: traced exports fix the batch size
            a = F.pad(a[None].to(self.device).float() * 2 - 1, pad, mode="replicate")
            b = F.pad(b[None].to(self.device).float() * 2 - 1, pad, mode="replicate")
            out = self.module(a, b)
            if isinstance(out, (list, tuple)):
                out = out[-1]
            if out.ndim != 4 or out.shape[1] != 2:
                raise LVCDError(f"the RAFT module returned shape {tuple(out.shape)}, expected (1, 2, H, W)")
            flows.append(out[:, :, :h, :w].float().cpu())
        return torch.cat(flows)


FLOW_METHODS = ("auto", "dis", "raft")


def check_flow_options(
    method: str,
    raft_weights: str | os.PathLike | None,
    raft_iters: int | None = None,
    passed_over: Path | None = None,
) -> None:
    """The flow options that cannot go together, refused at once (before any network loads). ``raft_weights``: the
    RAFT file that will be used (given or found), None for DIS; ``passed_over``: a RAFT file found but not usable."""
    if method not in FLOW_METHODS:
        raise InputError(f"unknown flow method {method!r}: use {', '.join(FLOW_METHODS)}")
    if method == "dis" and raft_weights is not None:
        raise InputError("--flow dis takes no --raft-weights: leave out one of the two")
    if method == "raft" and raft_weights is None:
        raise InputError("--flow raft needs --raft-weights FILE (raft-things.pth or torchvision's raft_large_*.pth)")
    if raft_iters is not None and raft_weights is None:
        why = (
            f"{passed_over.name} in the weights folder is TorchScript (--allow-torchscript)"
            if passed_over is not None
            else "no RAFT-large state dict given or found: --raft-weights raft-things.pth"
        )
        raise InputError(f"--raft-iters applies to RAFT, but TC uses DIS flow here ({why})")


def load_flow(
    method: str = "auto",
    raft_weights: str | os.PathLike | None = None,
    device: str | torch.device = "cpu",
    raft_iters: int | None = None,
    allow_torchscript: bool = False,
) -> FlowEstimator:
    """``"raft"``: RAFT-large from ``raft_weights`` (a state dict in either public layout, :mod:`lvcd.metrics.raft`,
    or a TorchScript export); ``"dis"``: OpenCV DIS (no weights); ``"auto"``: RAFT when ``raft_weights`` is given,
    else DIS. ``raft_iters``: RAFT's update iterations (default :data:`lvcd.metrics.raft.DEFAULT_ITERS`; a
    TorchScript export runs its own default, and only with ``allow_torchscript``)."""
    from lvcd.metrics.raft import DEFAULT_ITERS, load_raft

    check_flow_options(method, raft_weights, raft_iters)
    if raft_weights is None:
        return DISFlow()
    file = require_file(raft_weights, "RAFT")
    if is_torchscript(file):
        if raft_iters is not None:
            raise InputError(f"{file} is a TorchScript export: it runs its own iterations; leave out --raft-iters")
        module = load_torchscript(file, "RAFT", device, allow_torchscript, "raft-things.pth (the authors' state dict)")
        return TorchScriptFlow(module, device)
    return load_raft(file, device, DEFAULT_ITERS if raft_iters is None else raft_iters)


def backward_warp(images: torch.Tensor, flow: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``images`` at ``p + flow(p)`` (bilinear); also return (N, 1, H, W) 1.0 where that lands inside."""
    n, _, h, w = images.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    x = xs.to(flow.device) + flow[:, 0]
    y = ys.to(flow.device) + flow[:, 1]
    grid = torch.stack([2.0 * x / max(w - 1, 1) - 1.0, 2.0 * y / max(h - 1, 1) - 1.0], dim=-1)
    warped = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="border", align_corners=True)
    inside = ((x >= 0) & (x <= w - 1) & (y >= 0) & (y <= h - 1)).float().unsqueeze(1)
    return warped, inside


def occlusion_mask(flow_forward: torch.Tensor, flow_backward: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) 1.0 where forward and backward flow agree (Sundaram et al. 2010 / Ruder et al. 2016 test).

    A pixel is occluded when ``|f + b'|^2 > 0.01 (|f|^2 + |b'|^2) + 0.5``, with ``b'`` the backward flow
    sampled at the forward-flow target, or when the target leaves the image.
    """
    backward_at_target, inside = backward_warp(flow_backward, flow_forward)
    mismatch = (flow_forward + backward_at_target).pow(2).sum(dim=1, keepdim=True)
    magnitude = flow_forward.pow(2).sum(dim=1, keepdim=True) + backward_at_target.pow(2).sum(dim=1, keepdim=True)
    return (mismatch <= 0.01 * magnitude + 0.5).float() * inside
