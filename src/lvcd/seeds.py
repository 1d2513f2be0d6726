"""Random seeds: the range every generator lvcd seeds accepts, and fresh ones (torch-free, for the manifest reader)."""

from __future__ import annotations

import operator
import secrets

from lvcd.errors import InputError

MIN_SEED, MAX_SEED = -(2**63), 2**64 - 1  # what torch.Generator.manual_seed takes


def check_seed(seed, what: str = "seed") -> int | None:
    """``seed`` as an int when it is None or a whole number in MIN_SEED..MAX_SEED (numpy integers too); else a
    one-line InputError."""
    if seed is None:
        return None
    try:
        value = None if isinstance(seed, bool) else operator.index(seed)
    except TypeError:
        value = None
    if value is None or not MIN_SEED <= value <= MAX_SEED:
        raise InputError(f"{what} {seed!r} is not a whole number from -2**63 to 2**64-1; give a smaller seed.")
    return value


def draw_seed() -> int:
    """A fresh random seed, under 2**53: exact in JSON, in every generator, and in a browser's number field (the page
    shows it to be typed in again; JavaScript numbers round larger whole numbers)."""
    return secrets.randbelow(2**53)
