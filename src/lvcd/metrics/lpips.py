"""LPIPS v0.1, AlexNet-lin (Zhang et al. 2018), as our own small modules loading the public weight files.

Distance of two images x, y in [0, 1]:

1. map to [-1, 1], then the scaling layer ``(v - shift) / scale`` with shift (-.030, -.088, -.188) and
   scale (.458, .448, .450) per RGB channel;
2. AlexNet features after ReLU 1..5 (64, 192, 384, 256, 256 channels);
3. unit-normalise each feature vector over channels (``f / (||f|| + 1e-10)``);
4. squared difference, a learned 1x1 convolution to one channel (no bias) per layer, mean over space;
5. sum over the five layers.

Weights (never downloaded; see docs/metrics.md) come as one or two files, in any mix of:

- ``alex.pth`` of the ``lpips`` package (``lpips/weights/v0.1/alex.pth``): keys ``lin{0..4}.model.1.weight``;
- torchvision's ``alexnet-owt-7be5be79.pth``: keys ``features.{0,3,6,8,10}.{weight,bias}`` (+ classifier, unused);
- a whole LPIPS module state dict (``lpips.LPIPS().state_dict()``): ``net.slice{1..5}.{i}.{weight,bias}`` +
  ``lin{k}.model.1.weight`` and their aliases ``lins.{k}.model.1.weight`` (the package registers each linear layer
  twice; the two copies must be equal) (+ ``scaling_layer.*``), with or without a prefix.

    >>> model = load_lpips(["alex.pth", "alexnet-owt-7be5be79.pth"])   # doctest: +SKIP
    >>> model(pred, gt)   # (N, 3, H, W) in [0, 1] -> (N,)               # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

import torch
from torch import nn

from lvcd.errors import WeightsError
from lvcd.metrics.checkpoints import load_state_dict_file, load_strict

LPIPS_SHIFT = (-0.030, -0.088, -0.188)
LPIPS_SCALE = (0.458, 0.448, 0.450)
ALEXNET_CHANNELS = (64, 192, 384, 256, 256)
# Indices in torchvision's ``alexnet.features`` after which LPIPS taps the activations (ReLU 1..5).
_TAP_INDICES = (1, 4, 7, 9, 11)
_EPS = 1e-10


class AlexNetFeatures(nn.Module):
    """torchvision's AlexNet ``features`` up to ReLU 5, with its layer indices (so its keys load as they are)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),  # 0
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),  # 3
            nn.ReLU(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),  # 6
            nn.ReLU(),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),  # 8
            nn.ReLU(),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),  # 10
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in _TAP_INDICES:
                taps.append(x)
        return taps


class LPIPS(nn.Module):
    """LPIPS v0.1 with the AlexNet backbone: ``model(x, y)`` for (N, 3, H, W) in [0, 1] gives (N,) distances."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = AlexNetFeatures()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in ALEXNET_CHANNELS)
        self.register_buffer("shift", torch.tensor(LPIPS_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(LPIPS_SCALE).view(1, 3, 1, 1), persistent=False)

    def _features(self, images: torch.Tensor) -> list[torch.Tensor]:
        scaled = (images * 2.0 - 1.0 - self.shift) / self.scale
        return [f / (f.pow(2).sum(dim=1, keepdim=True).sqrt() + _EPS) for f in self.backbone(scaled)]

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        total = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for lin, fx, fy in zip(self.lins, self._features(x), self._features(y), strict=True):
            total = total + lin((fx - fy) ** 2).mean(dim=(1, 2, 3))
        return total


_BACKBONE_KEY = re.compile(r"(?:^|\.)(?:features|slice\d)\.(\d+)\.(weight|bias)$")
_LIN_KEY = re.compile(r"(?:^|\.)lin(\d)\.(?:model\.[01]\.)?weight$")
# lpips.LPIPS keeps its linear layers both as attributes lin0..lin4 and in the ModuleList ``lins``, so its state
# dict holds every weight twice.
_LINS_ALIAS_KEY = re.compile(r"(?:^|\.)lins\.(\d)\.model\.1\.weight$")
_IGNORED_KEY = re.compile(r"(?:^|\.)(?:classifier\.\d+\.(?:weight|bias)|scaling_layer\.(?:shift|scale))$")


def lpips_state_dict(files: Sequence[str | os.PathLike]) -> dict[str, torch.Tensor]:
    """Merge the given files into our LPIPS key layout (``backbone.features.{i}.*``, ``lins.{k}.weight``)."""
    merged: dict[str, torch.Tensor] = {}
    aliases: dict[str, tuple[torch.Tensor, str]] = {}
    for file in files:
        for key, value in load_state_dict_file(file, "LPIPS").items():
            if match := _BACKBONE_KEY.search(key):
                merged[f"backbone.features.{match[1]}.{match[2]}"] = value
            elif match := _LIN_KEY.search(key):
                merged[f"lins.{match[1]}.weight"] = value
            elif match := _LINS_ALIAS_KEY.search(key):
                aliases[f"lins.{match[1]}.weight"] = (value, f"{file}: {key}")
            elif not _IGNORED_KEY.search(key):
                merged[key] = value  # reported as unexpected by the strict check
    for target, (value, where) in aliases.items():
        kept = merged.setdefault(target, value)
        if kept is not value and (kept.shape != value.shape or not torch.equal(kept, value)):
            layer = target.split(".")[1]
            raise WeightsError(
                f"LPIPS: {where} differs from lin{layer}, the layer it should repeat; the file is inconsistent: "
                "save it again from lpips.LPIPS().state_dict(), or pass alex.pth and alexnet-owt-7be5be79.pth"
            )
    return merged


def load_lpips(files: Sequence[str | os.PathLike], device: str | torch.device = "cpu") -> LPIPS:
    """Build LPIPS (alex, v0.1) from one or two weight files (see the module docstring); strict key check."""
    if not files:
        raise WeightsError("LPIPS needs weights: the lpips v0.1 alex.pth and torchvision's alexnet-owt-7be5be79.pth")
    state = lpips_state_dict(files)
    model = LPIPS()
    has_lins = any(key.startswith("lins.") for key in state)
    has_backbone = any(key.startswith("backbone.") for key in state)
    if not (has_lins and has_backbone):
        absent = (
            "the linear layers (lpips v0.1 alex.pth)"
            if not has_lins
            else "the AlexNet backbone (alexnet-owt-7be5be79.pth)"
        )
        raise WeightsError(f"LPIPS: {', '.join(map(str, files))} lack {absent}; pass both files")
    load_strict(model, state, "LPIPS (alex, v0.1)", ", ".join(map(str, files)))
    return model.eval().to(device)
