"""Weights of the metric networks: TorchScript archives, or state dicts read by the one reader.

A metric weights file is either a plain state dict (``.pth``/``.pt`` pickles or ``.safetensors``), read by
:func:`lvcd.state_dict.read_state_dict` and loaded with its strict key report into lvcd's own modules (it never runs
code), or a TorchScript archive (``torch.jit.save``; e.g. NVIDIA's ``inception-2015-12-05.pt`` or StyleGAN-V's
``i3d_torchscript.pt``): a program, run only when the user allows it (``--allow-torchscript``).

    >>> state = read_state_dict("pt_inception-2015-12-05-6726825d.pth", "FID Inception")   # doctest: +SKIP
    >>> load_strict(FIDInceptionV3(), state, "FID InceptionV3", "pt_inception-...pth")      # doctest: +SKIP
"""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path

import torch

from lvcd.errors import InputError, WeightsError
from lvcd.state_dict import load_strict, read_state_dict, require_weights_file

__all__ = ["is_torchscript", "load_state_dict_file", "load_strict", "load_torchscript", "require_file"]

# The names metric modules use for the shared reader and the file check.
load_state_dict_file = read_state_dict
require_file = require_weights_file


def is_torchscript(path: str | os.PathLike) -> bool:
    """True for an archive written by ``torch.jit.save`` (it holds ``constants.pkl`` or a ``code/`` folder)."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(name.endswith("/constants.pkl") or "/code/" in name for name in names)


def check_torchscript_consent(path: str | os.PathLike, what: str, allowed: bool, instead: str) -> None:
    """Refuse (InputError) a TorchScript archive at ``path`` unless ``allowed``: see :func:`load_torchscript`."""
    if not allowed and is_torchscript(path):
        raise InputError(
            f"{path} is a TorchScript archive ({what}): a program, not only weights, whose code runs when loaded; "
            f"pass --allow-torchscript if you trust its source, or use {instead}"
        )


def load_torchscript(
    path: str | os.PathLike,
    what: str,
    device: str | torch.device = "cpu",
    allowed: bool = False,
    instead: str = "its state-dict file",
) -> torch.jit.ScriptModule:
    """``torch.jit.load`` with a WeightsError that names the metric when the archive is unreadable.

    A TorchScript archive is a program, not only weights: its TorchScript code runs when it is loaded and called. lvcd
    runs one only when ``allowed`` (``--allow-torchscript``); otherwise an InputError says so and names ``instead``,
    the plain weights file that needs no trust."""
    file: Path = require_weights_file(path, what)
    check_torchscript_consent(file, what, allowed, instead)
    try:
        with warnings.catch_warnings():  # deprecated in recent torch, yet the only reader of these public files
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(file), map_location=device)
    except Exception as err:  # torch raises RuntimeError subclasses with long C++ traces
        raise WeightsError(f"{what}: cannot load TorchScript file {file}: {str(err).splitlines()[0]}") from err
    return module.eval()
