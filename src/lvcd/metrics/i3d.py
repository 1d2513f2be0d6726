"""FVD features: Kinetics-400 I3D logits (400-d) of 16-frame clips, as our own modules or a TorchScript file.

Two accepted weight files (see docs/metrics.md):

- ``i3d_pretrained_400.pt`` (the PyTorch I3D used by VideoGPT, TATS, DIGAN, MCVD; piergiaj/pytorch-i3d layout):
  keys ``Conv3d_1a_7x7.conv3d.weight``, ``Mixed_4b.b1b.bn.running_mean``, ``logits.conv3d.bias`` ... Loaded into
  :class:`InceptionI3d` with a strict key check; features are the logits averaged over time.
- ``i3d_torchscript.pt`` (StyleGAN-V's TorchScript port of the TF-Hub I3D used by the original FVD): called as
  ``model(videos, rescale=False, resize=False, return_features=True)``.

Both get (B, 3, T, 224, 224) in [-1, 1]: frames scaled so the shorter side is 224 (bilinear), centre-cropped.

    >>> extractor = load_i3d("i3d_torchscript.pt", allow_torchscript=True)           # doctest: +SKIP
    >>> extractor(windows)   # (B, T, 3, H, W) float in [0, 1] -> (B, 400) float64 numpy   # doctest: +SKIP
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lvcd.metrics.checkpoints import is_torchscript, load_state_dict_file, load_strict, load_torchscript, require_file

I3D_SIZE = 224
NUM_CLASSES = 400


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding of one dimension as (front, back); the extra pixel goes to the back."""
    total = max(kernel - stride, 0) if size % stride == 0 else max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def _pad_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    t, h, w = x.shape[-3:]
    pads = [_same_padding(size, k, s) for size, k, s in zip((t, h, w), kernel, stride, strict=True)]
    return F.pad(x, (*pads[2], *pads[1], *pads[0]))  # zeros, as the reference port (inputs are post-ReLU)


def max_pool_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    return F.max_pool3d(_pad_same(x, kernel, stride), kernel, stride)


class Unit3D(nn.Module):
    """SAME-padded Conv3d, optional BatchNorm3d (eps 1e-5) and ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel=(1, 1, 1),
        stride=(1, 1, 1),
        batch_norm: bool = True,
        relu: bool = True,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.kernel, self.stride, self.relu = tuple(kernel), tuple(stride), relu
        self.conv3d = nn.Conv3d(in_channels, out_channels, self.kernel, stride=self.stride, bias=bias)
        self.bn = nn.BatchNorm3d(out_channels, eps=1e-5) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(_pad_same(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.relu else x


class InceptionModule(nn.Module):
    """b0: 1x1 | b1: 1x1-3x3 | b2: 1x1-3x3 | b3: maxpool 3x3x3 - 1x1; ``widths`` = (b0, b1a, b1b, b2a, b2b, b3b)."""

    def __init__(self, in_channels: int, widths: tuple[int, int, int, int, int, int]) -> None:
        super().__init__()
        self.b0 = Unit3D(in_channels, widths[0])
        self.b1a = Unit3D(in_channels, widths[1])
        self.b1b = Unit3D(widths[1], widths[2], kernel=(3, 3, 3))
        self.b2a = Unit3D(in_channels, widths[3])
        self.b2b = Unit3D(widths[3], widths[4], kernel=(3, 3, 3))
        self.b3b = Unit3D(in_channels, widths[5])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = max_pool_same(x, (3, 3, 3), (1, 1, 1))
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(pooled)], 1)


class InceptionI3d(nn.Module):
    """Inception-v1 I3D (Carreira & Zisserman 2017) up to the Kinetics-400 logits, averaged over time."""

    def __init__(self, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, kernel=(7, 7, 7), stride=(2, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, kernel=(3, 3, 3))
        self.Mixed_3b = InceptionModule(192, (64, 96, 128, 16, 32, 32))
        self.Mixed_3c = InceptionModule(256, (128, 128, 192, 32, 96, 64))
        self.Mixed_4b = InceptionModule(480, (192, 96, 208, 16, 48, 64))
        self.Mixed_4c = InceptionModule(512, (160, 112, 224, 24, 64, 64))
        self.Mixed_4d = InceptionModule(512, (128, 128, 256, 24, 64, 64))
        self.Mixed_4e = InceptionModule(512, (112, 144, 288, 32, 64, 64))
        self.Mixed_4f = InceptionModule(528, (256, 160, 320, 32, 128, 128))
        self.Mixed_5b = InceptionModule(832, (256, 160, 320, 32, 128, 128))
        self.Mixed_5c = InceptionModule(832, (384, 192, 384, 48, 128, 128))
        self.logits = Unit3D(1024, num_classes, batch_norm=False, relu=False, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, T, 224, 224) in [-1, 1], T >= 9 -> (B, num_classes) logits averaged over time."""
        x = self.Conv3d_1a_7x7(x)
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(x))
        x = max_pool_same(x, (1, 3, 3), (1, 2, 2))
        x = self.Mixed_3c(self.Mixed_3b(x))
        x = max_pool_same(x, (3, 3, 3), (2, 2, 2))
        for block in (self.Mixed_4b, self.Mixed_4c, self.Mixed_4d, self.Mixed_4e, self.Mixed_4f):
            x = block(x)
        x = max_pool_same(x, (2, 2, 2), (2, 2, 2))
        x = self.Mixed_5c(self.Mixed_5b(x))
        x = F.avg_pool3d(x, kernel_size=(2, 7, 7), stride=1)  # (B, 1024, T', 1, 1) at 224x224 input
        return self.logits(x).flatten(2).mean(dim=2)


def to_i3d_input(windows: torch.Tensor) -> torch.Tensor:
    """(B, T, 3, H, W) in [0, 1] -> (B, 3, T, 224, 224) in [-1, 1]: shorter side to 224, centre crop."""
    b, t, c, h, w = windows.shape
    scale = I3D_SIZE / min(h, w)
    size = (I3D_SIZE, math.ceil(w * scale)) if h <= w else (math.ceil(h * scale), I3D_SIZE)
    frames = F.interpolate(windows.reshape(b * t, c, h, w), size=size, mode="bilinear", align_corners=False)
    top, left = (size[0] - I3D_SIZE) // 2, (size[1] - I3D_SIZE) // 2
    frames = frames[:, :, top : top + I3D_SIZE, left : left + I3D_SIZE]
    frames = frames.reshape(b, t, c, I3D_SIZE, I3D_SIZE).transpose(1, 2)
    return (frames * 2.0 - 1.0).contiguous()


class I3DFeatures:
    """Callable FVD feature extractor: (B, T, 3, H, W) float in [0, 1] -> (B, 400) float64 numpy."""

    def __init__(self, network: nn.Module, torchscript: bool, device: str | torch.device = "cpu") -> None:
        self.network = network
        self.torchscript = torchscript
        self.device = torch.device(device)
        self.source = "torchscript" if torchscript else "state_dict"

    @torch.no_grad()
    def __call__(self, windows: torch.Tensor) -> np.ndarray:
        x = to_i3d_input(windows.to(self.device, torch.float32))
        if self.torchscript:
            features = self.network(x, rescale=False, resize=False, return_features=True)
        else:
            features = self.network(x)
        return features.reshape(features.shape[0], -1).double().cpu().numpy()


def load_i3d(
    path: str | os.PathLike, device: str | torch.device = "cpu", allow_torchscript: bool = False
) -> I3DFeatures:
    """Open an I3D weight file (state dict or TorchScript, detected from the file; TorchScript runs only when
    ``allow_torchscript``, see :func:`lvcd.metrics.checkpoints.load_torchscript`)."""
    file = require_file(path, "FVD I3D")
    if is_torchscript(file):
        network = load_torchscript(file, "FVD I3D", device, allow_torchscript, "i3d_pretrained_400.pt")
        return I3DFeatures(network, torchscript=True, device=device)
    network = load_strict(InceptionI3d(), load_state_dict_file(file, "FVD I3D"), "FVD InceptionI3d", str(file))
    return I3DFeatures(network.eval().to(device), torchscript=False, device=device)
