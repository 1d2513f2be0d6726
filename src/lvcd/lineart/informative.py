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
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from lvcd.errors import WeightsError

DOWNLOAD_HINT = (
    "Download sk_model.pth (fine, used by LVCD) or sk_model2.pth (coarse) from "
    "https://huggingface.co/lllyasviel/Annotators (e.g. `huggingface-cli download lllyasviel/Annotators "
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


def _read_safetensors(path: Path) -> Mapping[str, object]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsError(f"{path} is not a readable safetensors file ({err}). {DOWNLOAD_HINT}.") from err


def _read_state_dict(path: Path) -> Mapping[str, object]:
    """The raw mapping stored in a .pth/.pt/.ckpt (weights_only pickle) or .safetensors file."""
    with path.open("rb") as handle:
        head = handle.read(64)
    # safetensors: an 8-byte little-endian header length, then a JSON header (also when misnamed .pth).
    if path.suffix.lower() == ".safetensors" or head[8:10] == b'{"':
        return _read_safetensors(path)
    if head.startswith(b"version https://git-lfs"):
        raise WeightsError(f"{path} is a Git LFS pointer, not the weights (cloned without git-lfs?). {DOWNLOAD_HINT}.")
    # torch.save writes a zip archive (PK..) or, in the legacy format, a pickle (protocol byte 0x80).
    if not (head.startswith(b"PK\x03\x04") or head.startswith(b"\x80")):
        kind = "an HTML page" if head.lstrip().lower().startswith((b"<!doctype", b"<html")) else "not a PyTorch file"
        raise WeightsError(
            f"{path} is not a readable PyTorch weights file ({kind}, starts with {head[:16]!r}). {DOWNLOAD_HINT}."
        )
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile) as err:
        if "weights only" in str(err).lower():
            # weights_only refuses arbitrary pickled objects: say so instead of the long torch message.
            raise WeightsError(
                f"{path} holds pickled Python objects other than tensors, which are refused for safety "
                f"(weights_only loading); it is not the plain state dict of sk_model.pth. {DOWNLOAD_HINT}."
            ) from err
        raise WeightsError(
            f"{path} is not a readable PyTorch weights file (corrupt, truncated or not a .pth): {err}. {DOWNLOAD_HINT}."
        ) from err
    if not isinstance(loaded, Mapping):
        raise WeightsError(f"{path} holds a {type(loaded).__name__}, not a state dict. {DOWNLOAD_HINT}.")
    return loaded


def _unwrap(raw: Mapping[str, object]) -> dict[str, torch.Tensor]:
    """Accept a plain state dict, one nested under 'state_dict'/'model', and DataParallel 'module.' prefixes."""
    for container in ("state_dict", "model", "netG", "generator"):
        if container in raw and isinstance(raw[container], Mapping):
            raw = raw[container]
            break
    state = {str(key): value for key, value in raw.items() if isinstance(value, torch.Tensor)}
    if state and all(key.startswith("module.") for key in state):
        state = {key.removeprefix("module."): value for key, value in state.items()}
    return state


def _describe_mismatch(path: Path, state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> str | None:
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [
        f"{key} {tuple(state[key].shape)} (expected {tuple(expected[key].shape)})"
        for key in sorted(set(state) & set(expected))
        if state[key].shape != expected[key].shape
    ]
    if not (missing or unexpected or wrong_shape):
        return None
    if not state:
        what = "no tensors"
    elif any(key.startswith(("model.diffusion_model.", "control_model.", "conditioner.")) for key in state):
        what = "the weights of a diffusion model (an LVCD/SVD checkpoint?)"
    else:
        what = "the weights of another model"
    details = []
    if missing:
        details.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        details.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
    if wrong_shape:
        details.append(f"{len(wrong_shape)} of the wrong shape (e.g. {'; '.join(wrong_shape[:2])})")
    return (
        f"{path} holds {what}, not the informative-drawings line-art generator: "
        f"{len(state)} tensors, {', '.join(details)}. {DOWNLOAD_HINT}."
    )


def load_informative_drawings(
    path: str | os.PathLike, device: str | torch.device = "cpu"
) -> InformativeDrawingsGenerator:
    """Load ``sk_model.pth`` / ``sk_model2.pth`` (or a safetensors copy) strictly; returns the model in eval mode.

    Raises :class:`lvcd.errors.WeightsError` for a missing, unreadable or foreign file, with what to do.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        where = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise WeightsError(f"Line-art weights {path} {where}. {DOWNLOAD_HINT}.")
    state = _unwrap(_read_state_dict(path))
    with torch.device("meta"):  # shapes only: skip the random init that the weights replace anyway
        model = InformativeDrawingsGenerator()
    problem = _describe_mismatch(path, state, model.state_dict())
    if problem:
        raise WeightsError(problem)
    if not all(value.is_floating_point() for value in state.values()):
        raise WeightsError(f"{path} has non-float tensors where conv weights are expected. {DOWNLOAD_HINT}.")
    if not all(torch.isfinite(value).all() for value in state.values()):
        raise WeightsError(f"{path} contains NaN/Inf weights (corrupt download?). {DOWNLOAD_HINT}.")
    model.load_state_dict({key: value.float().contiguous() for key, value in state.items()}, strict=True, assign=True)
    return model.eval().requires_grad_(False).to(device)
