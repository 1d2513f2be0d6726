"""User-facing errors: each says what is wrong and what to do."""

from __future__ import annotations

import os
import re
import sys


class LVCDError(Exception):
    """Base class for errors shown to users without a traceback by the CLI."""


class InputError(LVCDError, ValueError):
    """A user input (image, video, folder, option) is unusable."""


class WeightsError(LVCDError, ValueError):
    """A weights file is missing, corrupt, truncated, swapped or of another model."""


class Interrupted(LVCDError):
    """The user stopped the job (Ctrl-C: exit code 130, SIGTERM: 143); the message says how to continue it."""

    def __init__(self, message: str, exit_code: int = 130):
        super().__init__(message)
        self.exit_code = exit_code


_CPU_OUT_OF_MEMORY = "DefaultCPUAllocator: can't allocate memory"


def setting(option: str, value) -> str:
    """A setting given ``value``, in its caller's words, for messages: a command's flag and the value
    (``--method xdog``), a Python keyword ending in "=" and the value's repr (``device='cuda'``), or a template that
    puts the value in (``"weights={}"``: ``weights=PATH``; ``"the SVD weights file {}"``). Library functions default
    to the Python words and take a command's flags from the command.

        >>> setting("--device", "cuda"), setting("device=", "cuda"), setting("weights={}", "PATH")
        ('--device cuda', "device='cuda'", 'weights=PATH')
    """
    if "{" in option:
        return option.format(value)
    if option.endswith("="):
        return f"{option}{os.fspath(value) if isinstance(value, os.PathLike) else value!r}"
    return f"{option} {value}"


def first_line(err: BaseException) -> str:
    """The first line of an error's text (readers' errors run to several lines), only its first sentence when long
    (torch's go on with advice of their own), or the error's type name: for "... (reason); what to do" messages."""
    text = str(err).strip()
    line = text.splitlines()[0] if text else type(err).__name__
    return line.split(". ")[0] if len(line) > 100 else line


def out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is torch's accelerator out-of-memory error, or its CPU allocator's (torch is loaded if it was
    raised)."""
    torch = sys.modules.get("torch")
    kind = getattr(torch, "OutOfMemoryError", None) or getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)
    if kind is not None and isinstance(err, kind):
        return True
    return isinstance(err, RuntimeError) and _CPU_OUT_OF_MEMORY in str(err)


def out_of_memory_text(err: BaseException, remedy: str) -> str:
    """One line for an accelerator out of memory: how much was asked for and was free (from torch's message), and
    ``remedy`` (the settings that need less)."""
    text = " ".join(str(err).split())
    if isinstance(err, MemoryError):  # Python's or numpy's ("Unable to allocate 149. GiB for an array ...")
        asked = re.search(r"Unable to allocate ([\d.]+ ?[KMGT]?i?B)", text)
        needed = f" ({asked.group(1).replace('. ', ' ')} more were needed)" if asked else ""
        return f"this machine ran out of memory{needed}; try {remedy}"
    if _CPU_OUT_OF_MEMORY in text:
        asked = re.search(r"you tried to allocate (\d+) bytes", text)
        needed = f" ({int(asked.group(1)) / 1e9:.1f} GB more were needed)" if asked else ""
        return f"this machine ran out of memory{needed}; try {remedy}"
    asked = re.search(r"Tried to allocate ([\d.]+ [KMGT]?i?B)", text)
    free = re.search(r"of which ([\d.]+ [KMGT]?i?B) is free", text)
    known = [f"{asked.group(1)} more were needed"] if asked else []
    known += [f"{free.group(1)} free"] if free else []
    return "the GPU ran out of memory" + (f" ({', '.join(known)})" if known else "") + f"; try {remedy}"


# The settings of lvcd colorize / batch that need less GPU memory (lvcd.memory_estimate says how much).
LESS_MEMORY = "--offload, --vae-dtype bf16 or a smaller --size"
