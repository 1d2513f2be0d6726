"""Where and in what precision lvcd computes when the user does not say: one rule for every command and the API."""

from __future__ import annotations

import torch

from lvcd.errors import InputError, setting

PYTHON = "device="  # how the Python API names the setting (lvcd.errors.setting); a command passes its "--device"


def _setting(what: str, device) -> str:
    return setting(what, str(device))  # a torch.device by its name


def parse_device(device: str | torch.device, what: str = PYTHON) -> torch.device:
    """``device`` as a torch.device; a name torch does not know is a one-line InputError."""
    try:
        return torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        given = _setting(what, device) if what.endswith("=") else f"{what} {device!r}"  # a name quoted as given
        raise InputError(f"{given} is not a device; give cpu, cuda or cuda:N.") from None


def require_device(device: str | torch.device, what: str = PYTHON) -> torch.device:
    """``device`` as a torch.device that this machine has: a name torch does not know, a kind lvcd does not run on
    (mps, xpu, ...), or a CUDA device that this machine or this torch build does not have, is a one-line InputError
    (``what`` names the setting: ``device=`` for Python, a command's ``--device``).

        >>> require_device("cpu")
        device(type='cpu')
    """
    parsed = parse_device(device, what)
    if parsed.type == "cpu":
        return parsed
    given = _setting(what, device)
    if parsed.type != "cuda":  # mps, xpu, ...: lvcd is built and tested for CUDA GPUs and the CPU only
        raise InputError(
            f"{given}: lvcd runs on cpu or cuda (cuda:N) devices; use {_setting(what, 'cpu')} or "
            f"{_setting(what, 'cuda')}."
        )
    if not torch.cuda.is_available():
        raise InputError(
            f"{given}: this machine (or this torch build) has no CUDA device; use {_setting(what, 'cpu')}."
        )
    if parsed.index is not None and parsed.index >= torch.cuda.device_count():
        raise InputError(f"{given}: there are {torch.cuda.device_count()} CUDA devices (cuda:0..).")
    return parsed


def default_device(device: str | torch.device | None = None) -> torch.device:
    """``device`` if given, else the first CUDA GPU when there is one, else the CPU."""
    if device is not None:
        return parse_device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: str | torch.device) -> torch.dtype:
    """The networks' default dtype on ``device``: bfloat16 on CUDA (half the weights' memory, tensor-core speed; its
    agreement with fp32 is tested in tests/test_low_precision.py), float16 on GPUs older than Ampere (no bf16 tensor
    cores; the official code runs in fp16 autocast), float32 elsewhere (CPUs without fast bf16 kernels gain
    nothing). The VAE stays float32 unless asked otherwise (``load_model(vae_dtype=...)``), as officially."""
    device = torch.device(device)
    if device.type != "cuda":
        return torch.float32
    if torch.cuda.is_available() and torch.cuda.get_device_capability(device) < (8, 0):
        return torch.float16
    return torch.bfloat16
