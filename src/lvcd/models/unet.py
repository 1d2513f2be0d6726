"""The spatio-temporal SVD UNet taking ControlNet residuals (official ``ControlledVideoUNet``, spec §2.2)."""

from __future__ import annotations

import torch
from torch import nn

from lvcd.config import UNetConfig
from lvcd.models.blocks import Downsample, Upsample, VideoResBlock
from lvcd.models.embeddings import timestep_embedding
from lvcd.models.norm import group_norm
from lvcd.models.transformer import ClipLayout, SpatialVideoTransformer


class Stage(nn.ModuleList):
    """sgm ``TimestepEmbedSequential``: layers applied in order, each given what it needs."""

    def forward(self, h: torch.Tensor, emb: torch.Tensor, context: torch.Tensor, layout: ClipLayout) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, VideoResBlock):
                h = layer(h, emb, layout.num_frames, layout.num_reference)
            elif isinstance(layer, SpatialVideoTransformer):
                h = layer(h, context, layout)
            else:
                h = layer(h)
        return h


class _Builder:
    """Creates blocks and numbers the spatial transformers in module order (the official hook-layer index)."""

    def __init__(self, cfg: UNetConfig, network: str = "unet"):
        self.cfg = cfg
        self.network = network
        self.next_layer_index = 0

    def resblock(self, c_in: int, c_out: int) -> VideoResBlock:
        return VideoResBlock(c_in, c_out, self.cfg.time_embed_dim, self.cfg.video_kernel_size)

    def transformer(self, channels: int) -> SpatialVideoTransformer:
        heads = channels // self.cfg.num_head_channels
        svt = SpatialVideoTransformer(
            channels,
            heads,
            self.cfg.num_head_channels,
            self.cfg.context_dim,
            self.next_layer_index,
            depth=self.cfg.transformer_depth,
            name=f"{self.network}.{self.next_layer_index}",
        )
        self.next_layer_index += 1
        return svt


def time_and_label_embeddings(cfg: UNetConfig) -> tuple[nn.Sequential, nn.Sequential]:
    embed = cfg.time_embed_dim
    time_embed = nn.Sequential(nn.Linear(cfg.model_channels, embed), nn.SiLU(), nn.Linear(embed, embed))
    label_emb = nn.Sequential(nn.Sequential(nn.Linear(cfg.adm_in_channels, embed), nn.SiLU(), nn.Linear(embed, embed)))
    return time_embed, label_emb


def build_encoder(cfg: UNetConfig, builder: _Builder) -> tuple[nn.ModuleList, Stage, list[int]]:
    """Input blocks and middle block, shared by the UNet and the ControlNet. Returns the skip-channel stack."""
    ch = cfg.model_channels
    blocks = nn.ModuleList([Stage([nn.Conv2d(cfg.in_channels, ch, 3, padding=1)])])
    skip_channels, ds = [ch], 1
    for level, mult in enumerate(cfg.channel_mult):
        for _ in range(cfg.num_res_blocks):
            layers: list[nn.Module] = [builder.resblock(ch, mult * cfg.model_channels)]
            ch = mult * cfg.model_channels
            if ds in cfg.attention_resolutions:
                layers.append(builder.transformer(ch))
            blocks.append(Stage(layers))
            skip_channels.append(ch)
        if level != len(cfg.channel_mult) - 1:
            blocks.append(Stage([Downsample(ch)]))
            skip_channels.append(ch)
            ds *= 2
    middle = Stage([builder.resblock(ch, ch), builder.transformer(ch), builder.resblock(ch, ch)])
    return blocks, middle, skip_channels


class VideoUNet(nn.Module):
    """SVD's video UNet with ControlNet residual inputs.

    forward(x (BT, in, h, w), timesteps (BT,), context (BT, 1, Dctx), y (BT, adm), layout, control=[13 tensors])
    """

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        builder = _Builder(cfg)
        self.time_embed, self.label_emb = time_and_label_embeddings(cfg)
        self.input_blocks, self.middle_block, skip_channels = build_encoder(cfg, builder)
        self.output_blocks = nn.ModuleList()
        ch, ds = cfg.channel_mult[-1] * cfg.model_channels, 2 ** (len(cfg.channel_mult) - 1)
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                layers: list[nn.Module] = [builder.resblock(ch + skip_channels.pop(), mult * cfg.model_channels)]
                ch = mult * cfg.model_channels
                if ds in cfg.attention_resolutions:
                    layers.append(builder.transformer(ch))
                if level and i == cfg.num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(Stage(layers))
        self.out = nn.Sequential(group_norm(ch), nn.SiLU(), nn.Conv2d(ch, cfg.out_channels, 3, padding=1))
        self.num_attention_layers = builder.next_layer_index

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        context: torch.Tensor,
        y: torch.Tensor,
        layout: ClipLayout,
        control: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        emb = self.time_embed(timestep_embedding(timesteps, self.cfg.model_channels).to(x.dtype)) + self.label_emb(y)
        skips = []
        h = x
        for block in self.input_blocks:
            h = block(h, emb, context, layout)
            skips.append(h)
        h = self.middle_block(h, emb, context, layout)
        control = list(control) if control is not None else None
        if control is not None:
            h = h + control.pop()
        for block in self.output_blocks:
            skip = skips.pop()
            if control is not None:
                skip = skip + control.pop()
            h = block(torch.cat([h, skip], dim=1), emb, context, layout)
        return self.out(h.to(x.dtype))
