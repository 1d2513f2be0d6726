"""The one normalisation of every LVCD network: GroupNorm with float32 statistics.

sgm has two: openaimodel's ``GroupNorm32`` (fp32 statistics, eps 1e-5) in the UNet's ResBlocks and the VAE's
temporal blocks, and a plain ``torch.nn.GroupNorm`` (eps 1e-6) in the VAE's 2-D blocks and the spatial
transformers. In float32 both compute the same thing; in bf16/fp16 the statistics of a plain GroupNorm lose
precision. So every network here uses :class:`GroupNorm32` and states its eps: float32 results are bit-identical to
sgm's, half-precision results are closer to them, and the module works whatever dtype its weights were cast to.

    >>> norm = group_norm(64, eps=1e-6)
    >>> norm(torch.randn(2, 64, 4, 4, dtype=torch.bfloat16)).dtype
    torch.bfloat16
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

GROUPS = 32


class GroupNorm32(nn.GroupNorm):
    """GroupNorm computed in float32 (input, weight and bias) and cast back to the input's dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.float() if self.weight is not None else None
        bias = self.bias.float() if self.bias is not None else None
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).to(x.dtype)


def group_norm(channels: int, eps: float = 1e-5) -> GroupNorm32:
    """32-group norm over ``channels``: eps 1e-5 is openaimodel's (PyTorch's default), 1e-6 sgm's ``Normalize``."""
    return GroupNorm32(GROUPS, channels, eps=eps)
