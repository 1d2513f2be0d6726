"""The sketch-guided ControlNet (official ``ControlNet`` in models/csvd.py, spec §2.6)."""

from __future__ import annotations

import torch
from torch import nn

from lvcd.config import UNetConfig
from lvcd.models.embeddings import timestep_embedding
from lvcd.models.transformer import ClipLayout
from lvcd.models.unet import _Builder, build_encoder, time_and_label_embeddings

HINT_CHANNELS = (16, 16, 32, 32, 96, 96, 256)
HINT_STRIDES = (1, 1, 2, 1, 2, 1, 2)


def hint_encoder(hint_channels: int, out_channels: int) -> nn.Sequential:
    """Convs (k3, p1) with SiLU between: the line-art hint at pixel size -> features at latent size (/8)."""
    layers: list[nn.Module] = []
    c_in = hint_channels
    for c_out, stride in zip(HINT_CHANNELS, HINT_STRIDES, strict=True):
        layers += [nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1), nn.SiLU()]
        c_in = c_out
    layers.append(nn.Conv2d(c_in, out_channels, 3, padding=1))
    return nn.Sequential(*layers)


class ControlNet(nn.Module):
    """UNet encoder copy + hint encoder + 13 zero convs; returns the residuals the UNet consumes (13 tensors)."""

    def __init__(self, cfg: UNetConfig):
        super().__init__()
        self.cfg = cfg
        builder = _Builder(cfg, network="controlnet")
        self.time_embed, self.label_emb = time_and_label_embeddings(cfg)
        self.input_blocks, self.middle_block, skip_channels = build_encoder(cfg, builder)
        self.input_hint_block = hint_encoder(cfg.hint_channels, cfg.model_channels)
        self.zero_convs = nn.ModuleList([nn.Sequential(nn.Conv2d(c, c, 1)) for c in skip_channels])
        middle_channels = skip_channels[-1]
        self.middle_block_out = nn.Sequential(nn.Conv2d(middle_channels, middle_channels, 1))
        self.num_attention_layers = builder.next_layer_index

    def forward(
        self,
        x: torch.Tensor,
        hint: torch.Tensor,
        timesteps: torch.Tensor,
        context: torch.Tensor,
        y: torch.Tensor,
        layout: ClipLayout,
        hint_features: torch.Tensor | None = None,
    ) -> list[torch.Tensor]:
        # x: (BT, in, h, w); hint: (BT, 3, 8h, 8w) lines ~1 on 0; hint_features: encode_hint(hint), when precomputed
        emb = self.time_embed(timestep_embedding(timesteps, self.cfg.model_channels).to(x.dtype)) + self.label_emb(y)
        guided_hint = hint_features if hint_features is not None else self.encode_hint(hint, x.dtype)
        outs = []
        h = x
        for index, (block, zero_conv) in enumerate(zip(self.input_blocks, self.zero_convs, strict=True)):
            h = block(h, emb, context, layout)
            if index == 0:
                h = h + guided_hint
            outs.append(zero_conv(h))
        h = self.middle_block(h, emb, context, layout)
        outs.append(self.middle_block_out(h))
        return outs

    def encode_hint(self, hint: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Line art (BT, 3, 8h, 8w) -> hint features (BT, C, h, w): the same at every step of a window."""
        return self.input_hint_block(hint.to(dtype or next(self.input_hint_block.parameters()).dtype))
