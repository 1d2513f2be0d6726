"""RAFT-large optical flow (Teed & Deng, ECCV 2020) as our own modules: the flow the paper's TC is measured with.

The paper estimates TC's flow with RAFT on the original frames. This is RAFT-large (5.3 M parameters): feature and
context encoders at 1/8 resolution, an all-pairs correlation pyramid (4 levels, radius 4), a separable ConvGRU
update block iterated ``iters`` times, and convex upsampling to full resolution. It loads either public weight
layout, with a strict key check and no torchvision:

- the authors' files (princeton-vl/RAFT ``models.zip``: ``raft-things.pth``, ``raft-sintel.pth``, ``raft-kitti.pth``,
  ``raft-chairs.pth``; keys ``module.fnet.conv1.weight`` ...), the layout these modules use;
- torchvision's (``raft_large_C_T_SKHT_V2-ff5fadd5.pth`` ..., keys ``feature_encoder.convnormrelu.0.weight`` ...),
  renamed on load (:func:`from_torchvision_keys`); the two implementations compute the same function.

Frames are (N, 3, H, W) in [0, 1]; the network sees them in [-1, 1], padded to a multiple of 8 by edge replication
split evenly between both sides (as the authors' evaluation pads), and the flow is cut back to (H, W).

    >>> flow = load_raft("raft-things.pth")            # doctest: +SKIP
    >>> flow(frames_a, frames_b)   # (N, 2, H, W): frames_a[y, x] ~ frames_b[y + dy, x + dx]   # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import re

import torch
import torch.nn.functional as F
from torch import nn

from lvcd.errors import InputError

HIDDEN = 128  # the update block's hidden state (and the context features beside it)
CORR_LEVELS = 4
CORR_RADIUS = 4
DEFAULT_ITERS = 20  # the authors' demo; their Sintel evaluation uses 32, KITTI 24, torchvision's default is 12
MIN_SIDE = 128  # padded frames below it leave the coarsest correlation level (1/64) 1 cell wide: a 0/0 in its lookup
PAIRS_PER_BATCH = 8


def padded_side(side: int) -> int:
    """A frame side as RAFT sees it: padded up to a multiple of 8."""
    return -(-int(side) // 8) * 8


def _norm(kind: str, channels: int) -> nn.Module:
    return nn.InstanceNorm2d(channels) if kind == "instance" else nn.BatchNorm2d(channels)


class ResidualBlock(nn.Module):
    def __init__(self, channels_in: int, channels_out: int, norm: str, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, padding=1, stride=stride)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1)
        self.norm1, self.norm2 = _norm(norm, channels_out), _norm(norm, channels_out)
        self.downsample = (
            None
            if stride == 1
            else nn.Sequential(nn.Conv2d(channels_in, channels_out, 1, stride=stride), _norm(norm, channels_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = F.relu(self.norm2(self.conv2(y)))
        return F.relu((x if self.downsample is None else self.downsample(x)) + y)


class Encoder(nn.Module):
    """Image -> features at 1/8 resolution: 7x7 stride-2 stem, three stages of two residual blocks, 1x1 out."""

    def __init__(self, channels_out: int, norm: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3)
        self.norm1 = _norm(norm, 64)
        stages, channels = [], 64
        for width, stride in ((64, 1), (96, 2), (128, 2)):
            stages.append(
                nn.Sequential(ResidualBlock(channels, width, norm, stride), ResidualBlock(width, width, norm, 1))
            )
            channels = width
        self.layer1, self.layer2, self.layer3 = stages
        self.conv2 = nn.Conv2d(128, channels_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.norm1(self.conv1(x)))
        return self.conv2(self.layer3(self.layer2(self.layer1(x))))


class MotionEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        corr_channels = CORR_LEVELS * (2 * CORR_RADIUS + 1) ** 2
        self.convc1 = nn.Conv2d(corr_channels, 256, 1)
        self.convc2 = nn.Conv2d(256, 192, 3, padding=1)
        self.convf1 = nn.Conv2d(2, 128, 7, padding=3)
        self.convf2 = nn.Conv2d(128, 64, 3, padding=1)
        self.conv = nn.Conv2d(64 + 192, HIDDEN - 2, 3, padding=1)

    def forward(self, flow: torch.Tensor, corr: torch.Tensor) -> torch.Tensor:
        c = F.relu(self.convc2(F.relu(self.convc1(corr))))
        f = F.relu(self.convf2(F.relu(self.convf1(flow))))
        return torch.cat([F.relu(self.conv(torch.cat([c, f], dim=1))), flow], dim=1)


class SeparableConvGRU(nn.Module):
    """A ConvGRU run twice: with 1x5 kernels (horizontal), then 5x1 (vertical)."""

    def __init__(self, hidden: int, inputs: int) -> None:
        super().__init__()
        for suffix, kernel, padding in (("1", (1, 5), (0, 2)), ("2", (5, 1), (2, 0))):
            for gate in ("z", "r", "q"):
                setattr(self, f"conv{gate}{suffix}", nn.Conv2d(hidden + inputs, hidden, kernel, padding=padding))

    def _step(self, h: torch.Tensor, x: torch.Tensor, suffix: str) -> torch.Tensor:
        hx = torch.cat([h, x], dim=1)
        z = torch.sigmoid(getattr(self, f"convz{suffix}")(hx))
        r = torch.sigmoid(getattr(self, f"convr{suffix}")(hx))
        q = torch.tanh(getattr(self, f"convq{suffix}")(torch.cat([r * h, x], dim=1)))
        return (1 - z) * h + z * q

    def forward(self, h: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self._step(self._step(h, x, "1"), x, "2")


class FlowHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(HIDDEN, 256, 3, padding=1)
        self.conv2 = nn.Conv2d(256, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(x)))


class UpdateBlock(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = MotionEncoder()
        self.gru = SeparableConvGRU(HIDDEN, 2 * HIDDEN)
        self.flow_head = FlowHead()
        self.mask = nn.Sequential(nn.Conv2d(HIDDEN, 256, 3, padding=1), nn.ReLU(), nn.Conv2d(256, 64 * 9, 1))

    def forward(self, hidden, context, corr, flow) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        hidden = self.gru(hidden, torch.cat([context, self.encoder(flow, corr)], dim=1))
        # The upsampling mask is scaled by 0.25 in both public implementations (to balance its gradients).
        return hidden, 0.25 * self.mask(hidden), self.flow_head(hidden)


class CorrelationPyramid:
    """All-pairs correlation of two feature maps, pooled into ``CORR_LEVELS`` levels, looked up around points."""

    def __init__(self, fmap1: torch.Tensor, fmap2: torch.Tensor) -> None:
        n, channels, h, w = fmap1.shape
        corr = torch.matmul(fmap1.reshape(n, channels, h * w).transpose(1, 2), fmap2.reshape(n, channels, h * w))
        corr = (corr / math.sqrt(channels)).reshape(n * h * w, 1, h, w)
        self.levels = [corr]
        for _ in range(CORR_LEVELS - 1):
            corr = F.avg_pool2d(corr, 2, stride=2)
            self.levels.append(corr)
        steps = torch.linspace(-CORR_RADIUS, CORR_RADIUS, 2 * CORR_RADIUS + 1, device=fmap1.device)
        # Both implementations add (first grid axis, second grid axis) to the point's (x, y): the 81 features of a
        # level are ordered with x varying slowest. The trained weights expect exactly this order.
        self.offsets = torch.stack(torch.meshgrid(steps, steps, indexing="ij"), dim=-1).view(
            1, *(2 * CORR_RADIUS + 1,) * 2, 2
        )

    def __call__(self, coords: torch.Tensor) -> torch.Tensor:
        """coords (N, 2, h, w) in pixels of level 0, (x, y) -> (N, 4 * 81, h, w)."""
        n, _, h, w = coords.shape
        centres = coords.permute(0, 2, 3, 1).reshape(n * h * w, 1, 1, 2)
        features = []
        for level, corr in enumerate(self.levels):
            points = centres / 2**level + self.offsets
            x, y = points.split(1, dim=-1)  # align_corners=True: -1 and 1 are the centres of the corner cells
            grid = torch.cat([2 * x / (corr.shape[-1] - 1) - 1, 2 * y / (corr.shape[-2] - 1) - 1], dim=-1)
            sampled = F.grid_sample(corr, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
            features.append(sampled.view(n, h, w, -1))
        return torch.cat(features, dim=-1).permute(0, 3, 1, 2).float()


def _pixel_grid(n: int, h: int, w: int, device) -> torch.Tensor:
    ys, xs = torch.meshgrid(torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij")
    return torch.stack([xs, ys]).float()[None].repeat(n, 1, 1, 1)


def convex_upsample(flow: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Flow (N, 2, h, w) at 1/8 -> (N, 2, 8h, 8w): each fine pixel a softmax-weighted mix of its 3x3 coarse cells."""
    n, _, h, w = flow.shape
    weights = mask.view(n, 1, 9, 8, 8, h, w).softmax(dim=2)
    neighbours = F.unfold(8 * flow, (3, 3), padding=1).view(n, 2, 9, 1, 1, h, w)
    fine = (weights * neighbours).sum(dim=2)  # (n, 2, 8, 8, h, w)
    return fine.permute(0, 1, 4, 2, 5, 3).reshape(n, 2, 8 * h, 8 * w)


class RAFT(nn.Module):
    """RAFT-large. ``forward(image1, image2, iters)`` on [-1, 1] images whose sides are multiples of 8 returns the
    flow at 1/8 resolution and upsampled to full resolution, both in pixels of their own resolution."""

    def __init__(self) -> None:
        super().__init__()
        self.fnet = Encoder(256, "instance")
        self.cnet = Encoder(2 * HIDDEN, "batch")
        self.update_block = UpdateBlock()

    def forward(self, image1: torch.Tensor, image2: torch.Tensor, iters: int = DEFAULT_ITERS):
        n, _, height, width = image1.shape
        fmap1, fmap2 = self.fnet(torch.cat([image1, image2])).float().split(n)
        correlation = CorrelationPyramid(fmap1, fmap2)
        hidden, context = self.cnet(image1).split([HIDDEN, HIDDEN], dim=1)
        hidden, context = torch.tanh(hidden), F.relu(context)
        coords0 = _pixel_grid(n, height // 8, width // 8, image1.device)
        coords1 = coords0.clone()
        mask = None
        for _ in range(iters):
            flow = coords1 - coords0
            hidden, mask, delta = self.update_block(hidden, context, correlation(coords1), flow)
            coords1 = coords1 + delta
        flow = coords1 - coords0
        return flow, convex_upsample(flow, mask)


# ------------------------------------------------------------------------------------------------ weights


def _torchvision_rename(key: str) -> str | None:
    """A torchvision ``raft_large`` key -> ours (the authors' layout); None for a key without a counterpart."""
    rules = (
        (r"^feature_encoder\.", "fnet."),
        (r"^context_encoder\.", "cnet."),
        (r"^(fnet|cnet)\.convnormrelu\.0\.", r"\1.conv1."),
        (r"^(fnet|cnet)\.convnormrelu\.1\.", r"\1.norm1."),
        (r"^(fnet|cnet)\.conv\.", r"\1.conv2."),
        (r"\.convnormrelu1\.0\.", ".conv1."),
        (r"\.convnormrelu1\.1\.", ".norm1."),
        (r"\.convnormrelu2\.0\.", ".conv2."),
        (r"\.convnormrelu2\.1\.", ".norm2."),
        (r"^update_block\.motion_encoder\.convcorr(\d)\.0\.", r"update_block.encoder.convc\1."),
        (r"^update_block\.motion_encoder\.convflow(\d)\.0\.", r"update_block.encoder.convf\1."),
        (r"^update_block\.motion_encoder\.conv\.0\.", "update_block.encoder.conv."),
        (r"^update_block\.recurrent_block\.convgru(\d)\.conv([zrq])\.", r"update_block.gru.conv\2\1."),
        (r"^update_block\.flow_head\.", "update_block.flow_head."),
        (r"^mask_predictor\.convrelu\.0\.", "update_block.mask.0."),
        (r"^mask_predictor\.conv\.", "update_block.mask.2."),
    )
    for pattern, replacement in rules:
        key = re.sub(pattern, replacement, key)
    return key


def from_torchvision_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's ``raft_large`` state dict renamed to the authors' layout (the tensors are shared)."""
    return {_torchvision_rename(key): value for key, value in state.items()}


def _drop_aliases(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The authors' residual blocks register their shortcut's norm twice (``norm3`` and ``downsample.1``): the same
    tensors under two names. ``downsample.1`` is the one used (and the one ``load_state_dict`` writes last)."""
    return {
        key: value
        for key, value in state.items()
        if not (".norm3." in key and key.replace(".norm3.", ".downsample.1.") in state)
    }


def raft_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Either public layout -> the keys of :class:`RAFT` (a ``module.`` prefix is removed by the reader)."""
    if any(key.startswith(("feature_encoder.", "context_encoder.")) for key in state):
        state = from_torchvision_keys(state)
    return _drop_aliases(state)


# ------------------------------------------------------------------------------------------------ the estimator


class RAFTFlow:
    """:class:`RAFT` behind the flow-estimator interface of :mod:`lvcd.metrics.flow`."""

    name = "raft"
    min_side = MIN_SIDE

    def __init__(
        self,
        network: RAFT,
        device: str | torch.device = "cpu",
        iters: int = DEFAULT_ITERS,
        batch: int = PAIRS_PER_BATCH,
    ) -> None:
        if iters < 1:
            raise InputError(f"RAFT needs at least 1 iteration, got {iters}")
        self.network = network.eval().to(device)
        self.device, self.iters, self.batch = torch.device(device), iters, batch

    @torch.no_grad()
    def __call__(self, frames_a: torch.Tensor, frames_b: torch.Tensor) -> torch.Tensor:
        h, w = frames_a.shape[-2:]
        if padded_side(min(h, w)) < MIN_SIDE:
            raise InputError(
                f"RAFT needs frames of at least {MIN_SIDE}x{MIN_SIDE} (its coarsest correlation level is 1/64 of the "
                f"frame), got {h}x{w}; evaluate at a larger size (lvcd evaluate --size, 256 by default)"
            )
        pad_h, pad_w = (-h) % 8, (-w) % 8
        pad = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
        flows = []
        for start in range(0, len(frames_a), self.batch):
            a, b = (
                F.pad(f[start : start + self.batch].to(self.device).float() * 2 - 1, pad, mode="replicate")
                for f in (frames_a, frames_b)
            )
            flow = self.network(a, b, self.iters)[1]
            flows.append(flow[:, :, pad[2] : pad[2] + h, pad[0] : pad[0] + w].float().cpu())
        return torch.cat(flows)


def load_raft(path: str | os.PathLike, device: str | torch.device = "cpu", iters: int = DEFAULT_ITERS) -> RAFTFlow:
    """RAFT-large from either public state dict (see the module docstring), strictly checked."""
    from lvcd.metrics.checkpoints import load_state_dict_file, load_strict, require_file

    file = require_file(path, "RAFT")
    state = raft_state_dict(load_state_dict_file(file, "RAFT"))
    return RAFTFlow(load_strict(RAFT(), state, "RAFT-large", str(file)), device, iters)
