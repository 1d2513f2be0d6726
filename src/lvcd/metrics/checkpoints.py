"""Read the user-supplied weight files of the metric networks: TorchScript or state dicts, strict key checks.

The metric networks (AlexNet-LPIPS, the FID InceptionV3, I3D, RAFT) are never downloaded: users pass files.
A file is either a TorchScript archive (``torch.jit.save``; e.g. NVIDIA's ``inception-2015-12-05.pt`` or
StyleGAN-V's ``i3d_torchscript.pt``) or a plain state dict (``.pth``/``.pt`` pickles, read with
``weights_only=True``, or ``.safetensors``).

    >>> state = load_state_dict_file("pt_inception-2015-12-05-6726825d.pth")   # doctest: +SKIP
    >>> load_strict(FIDInceptionV3(), state, "FID InceptionV3", "pt_inception-...pth")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from lvcd.errors import WeightsError

# BatchNorm's step counter is bookkeeping, absent from files saved by old torch versions: never required.
_IGNORED_SUFFIXES = ("num_batches_tracked",)


def require_file(path: str | os.PathLike, what: str) -> Path:
    """Return ``path`` as a Path, or raise a WeightsError naming ``what`` when it is not a readable file."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise WeightsError(f"{what} weights file not found: {file}")
    return file


def is_torchscript(path: str | os.PathLike) -> bool:
    """True for an archive written by ``torch.jit.save`` (it holds ``constants.pkl`` or a ``code/`` folder)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(name.endswith("/constants.pkl") or "/code/" in name for name in names)


def load_torchscript(path: str | os.PathLike, what: str, device: str | torch.device = "cpu") -> torch.jit.ScriptModule:
    """``torch.jit.load`` with a WeightsError that names the metric when the archive is unreadable."""
    file = require_file(path, what)
    try:
        with warnings.catch_warnings():  # deprecated in recent torch, yet the only reader of these public files
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(file), map_location=device)
    except Exception as err:  # torch raises RuntimeError subclasses with long C++ traces
        raise WeightsError(f"{what}: cannot load TorchScript file {file}: {str(err).splitlines()[0]}") from err
    return module.eval()


def load_state_dict_file(path: str | os.PathLike, what: str) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch pickle; unwrap ``state_dict``/``model`` and ``module.``."""
    file = require_file(path, what)
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw: object = load_file(str(file))
        else:
            raw = torch.load(str(file), map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsError(f"{what}: cannot read {file} as a state dict: {str(err).splitlines()[0]}") from err
    for wrapper in ("state_dict", "model", "net"):
        if isinstance(raw, Mapping) and wrapper in raw and isinstance(raw[wrapper], Mapping):
            raw = raw[wrapper]
    if not isinstance(raw, Mapping) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise WeightsError(f"{what}: {file} does not hold a state dict of tensors")
    return {_strip_prefix(key, "module."): value for key, value in raw.items()}


def _strip_prefix(key: str, prefix: str) -> str:
    return key[len(prefix) :] if key.startswith(prefix) else key


def _relevant(keys) -> set[str]:
    return {key for key in keys if not key.endswith(_IGNORED_SUFFIXES)}


def _sample(keys: set[str], limit: int = 5) -> str:
    names = sorted(keys)
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def load_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str, source: str) -> nn.Module:
    """Load ``state_dict`` into ``module`` requiring the same keys and shapes (BN step counters excepted).

    Raises a WeightsError listing missing, unexpected and mis-shaped keys, so a file of another model is
    reported as such instead of producing silently wrong scores.
    """
    expected = module.state_dict()
    missing = _relevant(expected) - set(state_dict)
    unexpected = _relevant(state_dict) - set(expected)
    mismatched = {
        f"{key} {tuple(state_dict[key].shape)}!={tuple(expected[key].shape)}"
        for key in _relevant(expected) & set(state_dict)
        if tuple(state_dict[key].shape) != tuple(expected[key].shape)
    }
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys: {_sample(missing)}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys: {_sample(unexpected)}")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches: {_sample(mismatched)}")
        raise WeightsError(f"{what}: {source} does not match the expected network; " + "; ".join(parts))
    filled = dict(expected)
    filled.update({key: value for key, value in state_dict.items() if key in expected})
    module.load_state_dict(filled, strict=True)
    return module
