"""``--compile``: the UNet and the ControlNet trace into one graph each (no graph breaks), checked with dynamo's
explain on a minimal network with every kind of block (tracing the tiny test model takes minutes on 2 cores; this
takes 2-3 minutes on a loaded 2-core machine, hence the slow mark)."""

from __future__ import annotations

import pytest
import torch

from lvcd.config import UNetConfig
from lvcd.longvideo import official_prevref_plan
from lvcd.model import allow_einops_in_graphs
from lvcd.models.controlnet import ControlNet
from lvcd.models.transformer import ClipLayout
from lvcd.models.unet import VideoUNet

MINIMAL = UNetConfig(
    model_channels=32, channel_mult=(1,), num_res_blocks=1, attention_resolutions=(1,), num_head_channels=16,
    context_dim=16,
)  # fmt: skip


@pytest.mark.slow
@torch.no_grad()
def test_unet_and_controlnet_trace_without_graph_breaks():
    frames = 7
    # layer 0 weighted (log-sum-exp merge), the others not (one concatenated attention): both paths traced
    layout = ClipLayout(frames, 3, official_prevref_plan(frames, 2, weighted_layers=frozenset({0})))
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(frames, 8, 4, 4, generator=generator)
    timesteps, context = torch.rand(frames, generator=generator), torch.randn(frames, 1, 16, generator=generator)
    vector = torch.randn(frames, 768, generator=generator)
    hint = torch.rand(frames, 3, 32, 32, generator=generator)
    allow_einops_in_graphs()  # as LVCDModel.compile_networks does
    controlnet, unet = ControlNet(MINIMAL).eval(), VideoUNet(MINIMAL).eval()
    assert controlnet.num_attention_layers >= 2 and unet.num_attention_layers >= 2
    explained = torch._dynamo.explain(controlnet)(x, hint, timesteps, context, vector, layout)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
    control = controlnet(x, hint, timesteps, context, vector, layout)
    explained = torch._dynamo.explain(unet)(x, timesteps, context, vector, layout, control)
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons
