"""Residual blocks of the video UNet: spatial ResBlock, temporal ResBlock with reference-isolating conv, merging.

Official names are kept (``in_layers.{0,2}``, ``emb_layers.1``, ``out_layers.{0,3}``, ``skip_connection``,
``time_stack.*``, ``time_mixer.mix_factor``), so SVD/LVCD state dicts load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from lvcd.models.norm import group_norm


class ReferenceIsolatingConv3d(nn.Conv3d):
    """Temporal (k, 1, 1) convolution where each of the first ``num_reference`` frames is a clip of its own.

    A lone frame with zero temporal padding sees only the kernel's centre tap, so those frames get a
    (1, 1, 1) convolution with the centre weights; the video frames get the normal padded convolution.
    Equals the official ``Conv3d_Masked`` (spec §2.3), with the reference count explicit instead of ``T - 14``.
    """

    def forward(self, x: torch.Tensor, num_reference: int = 0) -> torch.Tensor:  # x: (B, C, T, H, W)
        if num_reference == 0:
            return super().forward(x)
        centre = self.kernel_size[0] // 2
        reference = F.conv3d(x[:, :, :num_reference], self.weight[:, :, centre : centre + 1], self.bias)
        video = super().forward(x[:, :, num_reference:])
        return torch.cat([reference, video], dim=2)


class ResBlock(nn.Module):
    """Spatial residual block with the time embedding added per channel."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int):
        super().__init__()
        self.in_layers = nn.Sequential(
            group_norm(in_channels), nn.SiLU(), nn.Conv2d(in_channels, out_channels, 3, padding=1)
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, out_channels))
        self.out_layers = nn.Sequential(
            group_norm(out_channels),
            nn.SiLU(),
            nn.Dropout(0.0),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip_connection = nn.Identity() if in_channels == out_channels else nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # x: (N, C, H, W), emb: (N, E)
        h = self.in_layers(x)
        h = h + self.emb_layers(emb).to(h.dtype)[..., None, None]
        return self.skip_connection(x) + self.out_layers(h)


class TemporalResBlock(nn.Module):
    """The ``time_stack`` of a VideoResBlock: a 3-D residual block over (B, C, T, H, W).

    Its GroupNorms take statistics over all T frames of the clip, reference-path frames included (this couples
    the reference path to the video frames, as in the official code; spec correction before §2.4).
    """

    def __init__(self, channels: int, emb_dim: int, kernel_size: tuple[int, int, int]):
        super().__init__()
        padding = tuple(k // 2 for k in kernel_size)
        self.in_layers = nn.Sequential(
            group_norm(channels),
            nn.SiLU(),
            ReferenceIsolatingConv3d(channels, channels, kernel_size, padding=padding),
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, channels))
        self.out_layers = nn.Sequential(
            group_norm(channels),
            nn.SiLU(),
            nn.Dropout(0.0),
            ReferenceIsolatingConv3d(channels, channels, kernel_size, padding=padding),
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor, num_reference: int) -> torch.Tensor:
        # x: (B, C, T, H, W); emb: (B, T, E)
        h = self.in_layers[2](self.in_layers[1](self.in_layers[0](x)), num_reference)
        h = h + rearrange(self.emb_layers(emb).to(h.dtype), "b t c -> b c t 1 1")
        out = self.out_layers[3](self.out_layers[1](self.out_layers[0](h)), num_reference)
        return x + out


class MixFactor(nn.Module):
    """sgm AlphaBlender ('learned_with_images', image_only_indicator always 0 in LVCD): alpha = sigmoid(mix_factor)."""

    def __init__(self, initial: float = 0.5):
        super().__init__()
        self.mix_factor = nn.Parameter(torch.tensor([initial]))

    def forward(self, x_spatial: torch.Tensor, x_temporal: torch.Tensor) -> torch.Tensor:
        alpha = torch.sigmoid(self.mix_factor).to(x_spatial.dtype)
        return alpha * x_spatial + (1.0 - alpha) * x_temporal


class VideoResBlock(ResBlock):
    """Spatial ResBlock, then a temporal ResBlock, merged with a learned mix factor."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int, video_kernel_size: tuple[int, int, int]):
        super().__init__(in_channels, out_channels, emb_dim)
        self.time_stack = TemporalResBlock(out_channels, emb_dim, video_kernel_size)
        self.time_mixer = MixFactor()

    def forward(self, x: torch.Tensor, emb: torch.Tensor, num_frames: int, num_reference: int) -> torch.Tensor:
        x = super().forward(x, emb)  # ((B T), C, H, W)
        spatial = rearrange(x, "(b t) c h w -> b c t h w", t=num_frames)
        temporal = self.time_stack(spatial, rearrange(emb, "(b t) e -> b t e", t=num_frames), num_reference)
        return rearrange(self.time_mixer(spatial, temporal), "b c t h w -> (b t) c h w")


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))
