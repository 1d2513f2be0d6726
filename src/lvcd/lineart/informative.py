"""The informative-drawings line-art generator (Chan et al., CVPR 2022) and its weight loader.

LVCD's notebook extracts sketches with ControlNet-1.1's "lineart" annotator, which is this network with the
``sk_model.pth`` (fine) or ``sk_model2.pth`` (coarse) weights from ``huggingface.co/lllyasviel/Annotators``.
The module below is written from the layer description, keeping the official attribute names so that both
files load with ``strict=True``:

    model0  ReflectionPad(3) - Conv 3->64 k7 - IN - ReLU                               (full res)
    model1  2 x [Conv k3 s2 p1 - IN - ReLU]: 64->128->256                               (1/4 res)
    model2  3 x ResidualBlock(256): x + [RPad1 - Conv3 - IN - ReLU - RPad1 - Conv3 - IN]
    model3  2 x [ConvTranspose k3 s2 p1 op1 - IN - ReLU]: 256->128->64                  (full res)
    model4  ReflectionPad(3) - Conv 64->1 k7 - Sigmoid

InstanceNorm has no affine parameters and no running statistics, so the state dict holds only conv weights.

    >>> generator = load_informative_drawings("sk_model.pth")          # doctest: +SKIP
    >>> lines = generator(rgb01)  # (N, 3, H, W) in [0, 1] -> (N, 1, H, W), dark lines on white  # doctest: +SKIP
"""

from __future__ import annotations

import os

import torch
from torch import nn

from lvcd.errors import WeightsError
from lvcd.state_dict import WeightsFile, check_keys

DOWNLOAD_HINT = (
    "Download sk_model.pth (fine, used by LVCD) or sk_model2.pth (coarse) from "
    "https://huggingface.co/lllyasviel/Annotators (e.g. `hf download lllyasviel/Annotators "
    "sk_model.pth --local-dir ~/.cache/lvcd/lineart`)"
)


class ResidualBlock(nn.Module):
    """x + two reflection-padded 3x3 convs with instance norm; the official block (``conv_block.{1,5}``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


def _down(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1),
        nn.InstanceNorm2d(out_channels),
        nn.ReLU(True),
    ]


def _up(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [
        nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1),
        nn.InstanceNorm2d(out_channels),
        nn.ReLU(True),
    ]


class InformativeDrawingsGenerator(nn.Module):
    """Generator(3 -> 1, 3 residual blocks, sigmoid) with the parameter names of ``sk_model.pth``.

    Input (N, 3, H, W) RGB in [0, 1]; output (N, 1, H, W) in [0, 1], dark lines (~0) on white (~1).
    H and W must be multiples of 4 (two stride-2 stages); :class:`lvcd.lineart.LineartExtractor` pads for you.
    """

    def __init__(self, n_residual_blocks: int = 3) -> None:
        super().__init__()
        self.model0 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(3, 64, 7), nn.InstanceNorm2d(64), nn.ReLU(True))
        self.model1 = nn.Sequential(*_down(64, 128), *_down(128, 256))
        self.model2 = nn.Sequential(*(ResidualBlock(256) for _ in range(n_residual_blocks)))
        self.model3 = nn.Sequential(*_up(256, 128), *_up(128, 64))
        self.model4 = nn.Sequential(nn.ReflectionPad2d(3), nn.Conv2d(64, 1, 7), nn.Sigmoid())

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        height, width = rgb.shape[-2:]
        if height % 4 or width % 4:
            raise ValueError(f"H and W must be multiples of 4, got {height}x{width}; pad first (LineartExtractor does)")
        return self.model4(self.model3(self.model2(self.model1(self.model0(rgb)))))


def _what_it_holds(keys: list[str]) -> str:
    """What a file of another network seems to be, from its tensor names."""
    from lvcd.weights import classify_keys  # the diffusion model's key prefixes (a heavy import: only on this error)

    kind = classify_keys(keys)
    if kind == "svd":
        return "the weights of a diffusion model (an SVD checkpoint, like svd.safetensors)"
    if kind in ("lvcd", "full"):
        return "the weights of a diffusion model (an LVCD checkpoint, like lvcd.ckpt)"
    names = sorted({key.split(".")[0] for key in keys})
    more = f" (+{len(names) - 4} more)" if len(names) > 4 else ""
    return f"the weights of another model (top-level names {', '.join(names[:4])}{more})"


def check_informative_weights(path: str | os.PathLike) -> WeightsFile:
    """The line-art weights file opened and its tensor names and shapes checked against the generator, from the
    safetensors header or the checkpoint's pickle (its tensors memory-mapped, not read; a legacy pre-1.6 pickle is
    read whole): a file of another network (svd.safetensors, another model's .pth) raises one WeightsError naming
    the file and what it seems to be, in seconds, before a command does any slow work."""
    weights = WeightsFile(path, "line-art", hint=DOWNLOAD_HINT + ".")
    with torch.device("meta"):  # shapes only
        expected = InformativeDrawingsGenerator().state_dict()
    report = check_keys(weights.shapes(), expected)
    if not report.ok:
        raise WeightsError(
            f"{path} holds {_what_it_holds(weights.keys())}, not the informative-drawings line-art generator: "
            f"{len(weights)} tensors, {report.describe()}. {DOWNLOAD_HINT}."
        )
    return weights


def load_informative_drawings(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> InformativeDrawingsGenerator:
    """Load ``sk_model.pth`` / ``sk_model2.pth`` (or a safetensors copy) strictly; returns the model in eval mode.

    Raises :class:`lvcd.errors.WeightsError` for a missing, unreadable or foreign file, with what to do.
    """
    state = check_informative_weights(path).read()
    if not all(value.is_floating_point() for value in state.values()):
        raise WeightsError(f"{path} has non-float tensors where conv weights are expected. {DOWNLOAD_HINT}.")
    if not all(torch.isfinite(value).all() for value in state.values()):
        raise WeightsError(f"{path} contains NaN/Inf weights (corrupt download?). {DOWNLOAD_HINT}.")
    with torch.device("meta"):  # shapes only: skip the random init that the weights replace anyway
        model = InformativeDrawingsGenerator()
    model.load_state_dict({key: value.float().contiguous() for key, value in state.items()}, strict=True, assign=True)
    return model.eval().requires_grad_(False).to(device)
