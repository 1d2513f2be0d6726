"""Random seeds: the range every generator lvcd seeds accepts, and fresh ones (torch-free, for the manifest reader)."""

from __future__ import annotations

import secrets

from lvcd.errors import InputError

MAX_SEED = 2**64 - 1  # torch.Generator.manual_seed takes unsigned 64-bit seeds


def check_seed(seed, what: str = "seed") -> int | None:
    """``seed`` when it is None or a whole number in 0..MAX_SEED; else a one-line InputError."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise InputError(f"{what} {seed!r} is not a whole number from 0 to 2**64-1 ({MAX_SEED}); give a smaller seed.")
    return seed


def draw_seed() -> int:
    """A fresh random seed (62 bits: exact in JSON and in every generator)."""
    return secrets.randbits(62)
