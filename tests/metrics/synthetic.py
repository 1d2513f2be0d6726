"""Synthetic clips, file writers and tiny feature networks for the metrics tests (no real weights in tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


def moving_texture(frames: int = 8, height: int = 48, width: int = 64, step: int = 1, seed: int = 0) -> np.ndarray:
    """(T, H, W, 3) uint8: a smooth colour texture translated ``step`` pixels right per frame."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.random((1, 3, height // 4 + 2, (width + step * frames) // 4 + 2))).float()
    big = torch.nn.functional.interpolate(coarse, scale_factor=4, mode="bicubic", align_corners=False)[0]
    big = (big.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return np.stack([big[:height, t * step : t * step + width] for t in range(frames)])


def line_drawing(height: int = 64, width: int = 64, offset: int = 0) -> np.ndarray:
    """(H, W, 3) uint8: black rectangle outlines and a diagonal on white, shifted right by ``offset``."""
    image = np.full((height, width, 3), 255, np.uint8)
    image[10:12, 8 + offset : 40 + offset] = 0
    image[30:32, 8 + offset : 40 + offset] = 0
    image[10:32, 8 + offset : 10 + offset] = 0
    image[10:32, 38 + offset : 40 + offset] = 0
    for i in range(20):
        image[40 + i, 20 + i + offset] = 0
    return image


def to_float(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0


def dark_line_sketch(frames: torch.Tensor) -> torch.Tensor:
    """A trivial sketch extractor for tests: luma, so dark strokes stay dark on white; (N, 1, H, W)."""
    return frames.mean(dim=1, keepdim=True)


def write_pngs(folder: Path, frames: np.ndarray) -> Path:
    """Frames as ``00000.png, 00001.png, ...`` (the layout `lvcd colorize` writes)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"{index:05d}.png")
    return folder


def write_mp4(path: Path, frames: np.ndarray, fps: int = 12) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv444p"
        stream.options = {"crf": "12"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


class TinyImageFeatures(nn.Module):
    """A tiny random feature network standing in for Inception: (N, 3, H, W) -> (N, 16)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv2d(3, 8, 3, stride=2)
        self.head = nn.Linear(8, 16)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x / 255.0)).mean(dim=(2, 3)))


class TinyVideoFeatures(nn.Module):
    """A tiny random stand-in for I3D with StyleGAN-V's call signature: (B, 3, T, H, W) -> (B, 12)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.conv = nn.Conv3d(3, 6, 3, stride=2)
        self.head = nn.Linear(6, 12)

    def forward(
        self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False
    ) -> torch.Tensor:
        return self.head(torch.relu(self.conv(x)).mean(dim=(2, 3, 4)))


class InputProbe(nn.Module):
    """A stand-in for NVIDIA's inception-2015-12-05.pt that reports what it was called with: one row per image of
    (height, width, 1 if uint8, 1 if return_features, min, max)."""

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        is_uint8 = 1.0 if x.dtype == torch.uint8 else 0.0
        call = torch.tensor([float(x.shape[2]), float(x.shape[3]), is_uint8, 1.0 if return_features else 0.0])
        values = x.reshape(x.shape[0], -1).float()
        lowest, highest = values.min(1, keepdim=True).values, values.max(1, keepdim=True).values
        return torch.cat([call.expand(x.shape[0], 4), lowest, highest], 1)
