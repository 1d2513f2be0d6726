"""What a pickle's shared references cost, counted before anything walks them.

A pickle refers to an object again in 2 bytes (a memo GET), so a few hundred bytes can build a tuple of two references
to the tuple below it, 30 times over: 2**30 items for whatever walks it as a tree. Hashing does (a tuple hashes its
items, uncached: as a dict key or set item it takes hours of CPU), and so do copies, ``repr`` and torch's optimizer
loading (one object per item). :class:`BudgetedUnpickler` counts, in linear time, what hashing keys and copying
arguments walk while it unpickles, and what the loaded data expands to: each at most ``MAX_EXPANDED`` items plus
``EXPANDED_PER_BYTE`` per byte of pickle read, nested at most ``MAX_DEPTH`` deep. :mod:`lvcd.safe_pickle` builds its
restricted unpickler on it.
"""

from __future__ import annotations

import pickle
import struct

MAX_EXPANDED = 1_000_000
EXPANDED_PER_BYTE = 16
# No checkpoint nests its data deeper; recursion in Python (repr, copy, torch's optimizer loading) stops near 1,000
# levels, and hashing a tuple nested 10**6 deep (1 MB of pickle) overflows the C stack: the process crashes.
MAX_DEPTH = 100
ENDLESS = 1 << 62  # the depth of a container that holds itself; sizes saturate here too
CONTAINERS = (dict, list, tuple, set, frozenset)
_HASHABLE = (tuple, frozenset)  # what hashing (and comparing keys) walks into; a list in a key stops it at once
_TEXT = (str, bytes, bytearray)


def measure(root, kinds: tuple[type, ...], memo: dict) -> tuple[int, int]:
    """(items, depth) of ``root`` expanded into a tree through containers of ``kinds``: each item counted once per
    reference to it, a text once per 64 characters. Linear in the objects, not in their expansion: each container is
    measured once (``memo``, by id, keeps it alive), without recursion. A container that holds itself is ENDLESS."""
    if not isinstance(root, kinds):
        return 1 + len(root) // 64 if isinstance(root, _TEXT) else 1, 0
    pending, walks = [root], {}  # containers to measure; type -> whether it is one of kinds
    while pending:
        obj = pending[-1]
        entry = memo.get(id(obj))
        if entry is None:  # first visit: count its other items, put its containers not yet measured above it
            memo[id(obj)] = (None, 0, ())  # None: being measured
            size, inner = 1, []
            for item in (*obj.keys(), *obj.values()) if isinstance(obj, dict) else obj:
                walk = walks.get(type(item))
                if walk is None:
                    walk = walks[type(item)] = issubclass(type(item), kinds)
                if not walk:
                    size += 1 + len(item) // 64 if isinstance(item, _TEXT) else 1
                    continue
                inner.append(item)
                state = memo.get(id(item))
                if state is None:
                    pending.append(item)
                elif state[0] is None:  # being measured: it holds the container it is in
                    return ENDLESS, ENDLESS
            memo[id(obj)] = (None, size, inner)
            continue
        pending.pop()
        if entry[0] is None:  # its containers are measured
            _, size, inner = entry
            depth = 0
            for item in inner:
                item_size, item_depth, _ = memo[id(item)]
                size, depth = size + item_size, max(depth, item_depth)
            memo[id(obj)] = (min(size, ENDLESS), depth + 1, obj)  # saturated: 2**(10**6) would be slow arithmetic
    return memo[id(root)][:2]


def _rehashed_by_build(stack: list) -> list:
    """BUILD of an object without ``__setstate__`` sets its attributes from a dict, hashing the dict's keys again."""
    if len(stack) < 2 or hasattr(stack[-2], "__setstate__"):
        return []
    parts = stack[-1] if isinstance(stack[-1], tuple) else (stack[-1],)
    return [key for part in parts if isinstance(part, dict) for key in part]


# What each opcode hashes, from the stack (after its MARK where it has one).
_HASHED = {
    pickle.SETITEM: lambda stack: stack[-2:-1],
    pickle.SETITEMS: lambda stack: stack[::2],
    pickle.DICT: lambda stack: stack[::2],
    pickle.ADDITEMS: lambda stack: stack,
    pickle.FROZENSET: lambda stack: stack,
    pickle.BUILD: _rehashed_by_build,
}


def _charging(opcode: bytes, hashed):
    load = pickle._Unpickler.dispatch[opcode[0]]

    def charged(self):
        self.hashing(hashed(self.stack))
        load(self)

    return charged


def _load_binpersid(self) -> None:
    """A persistent id, which torch hashes and formats into its messages (``f"... got '{pid[0]}'"``): the whole of it
    is counted, its lists too."""
    self.hashing(self.stack[-1:], "a persistent id", whole=True)
    pickle._Unpickler.load_binpersid(self)


def _load_bytearray8(self) -> None:
    """BYTEARRAY8 as the bytes the pickle holds: pickle.py zero-fills a bytearray of the size it states first."""
    (size,) = struct.unpack("<Q", self.read(8))
    data = self.read(size)
    if len(data) != size:
        raise pickle.UnpicklingError("pickle data was truncated")
    self.append(bytearray(data))


class _Opcodes(dict):
    def __missing__(self, code: int):
        raise pickle.UnpicklingError(f"invalid load key, {chr(code)!r}.")  # as the C unpickler says it


class BudgetedUnpickler(pickle._Unpickler):
    """pickle.py's unpickler, whose opcodes can be watched (the C one hashes keys unseen, and sizes its memo by the
    largest index a pickle names: 9 bytes zero-fill 64 GB), counting what its hashing and copying walk and what it
    returns. ``refuse(name, why, risk)`` raises the refusal."""

    dispatch = _Opcodes(
        {**pickle._Unpickler.dispatch, **{op[0]: _charging(op, hashed) for op, hashed in _HASHED.items()}}
    )
    dispatch[pickle.BINPERSID[0]] = _load_binpersid
    dispatch[pickle.BYTEARRAY8[0]] = _load_bytearray8

    def __init__(self, file, **kwargs):
        super().__init__(file, **kwargs)
        self._tell = getattr(file, "tell", lambda: 0)
        self._start, self._work, self._hashed = self._tell(), 0, {}

    def refuse(self, name: str, why: str, risk: str):
        raise pickle.UnpicklingError(f"{name}: {why}, which could {risk}")

    def _limit(self) -> tuple[int, int]:
        read = self._tell() - self._start
        return MAX_EXPANDED + EXPANDED_PER_BYTE * read, read

    def _spend(self, units: int, name: str, doing: str, risk: str) -> None:
        self._work += units
        if self._work > MAX_EXPANDED and self._work > (limit := self._limit())[0]:
            self.refuse(name, f"{doing} {self._work:,} items, from a pickle of {limit[1]:,} bytes", risk)

    def hashing(self, keys, name: str = "dict keys and set items", whole: bool = False) -> None:
        """Counts hashing ``keys`` through their tuples and frozensets (``whole``: through all their containers, which
        may have changed since they were measured); nested deeper than MAX_DEPTH they are refused."""
        units = 0
        for key in keys:
            size, depth = measure(key, CONTAINERS, {}) if whole else measure(key, _HASHABLE, self._hashed)
            if depth > MAX_DEPTH:
                why = "a container that holds itself" if depth == ENDLESS else f"a tuple nested {depth:,} deep"
                self.refuse(name, why, "crash the process")
            units += size
        self._spend(units, name, "hashing walks", "take hours of CPU")

    def copying(self, name: str, hashes: bool, build, *args, **kwargs):
        """``build(*args, **kwargs)`` (a container or buffer from the file's data), counting what it copies, and
        hashes where it ``hashes`` (a dict, a set): a list the pickle refers to in 2 bytes is not copied again and again
        (tuple(L) 10**4 times over a list of 10**5 items would be 10**9 items from 160 KB)."""
        units = 0
        for arg in (*args, *kwargs.values()):
            if hashes and isinstance(arg, CONTAINERS):
                self.hashing(arg)
            units += len(arg) if isinstance(arg, (*_TEXT, *CONTAINERS)) else 1
        self._spend(units, name, "its calls copy", "fill the memory")
        return build(*args, **kwargs)

    def load(self):
        try:
            loaded = super().load()
        except (EOFError, struct.error) as err:  # pickle.py reads past the end silently, then fails on what it read
            raise pickle.UnpicklingError("pickle data was truncated") from err
        size, depth = measure(loaded, CONTAINERS, {})
        if depth == ENDLESS:
            self.refuse("plain data", "a container that holds itself", "overflow the stack")
        if depth > MAX_DEPTH:
            self.refuse("plain data", f"containers nested {depth:,} deep", "overflow the stack")
        if size > MAX_EXPANDED and size > (limit := self._limit())[0]:
            why = f"{size:,} items once its shared references are expanded, from a pickle of {limit[1]:,} bytes"
            self.refuse("plain data", why, "fill the memory")
        return loaded
