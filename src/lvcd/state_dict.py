"""Read any weights file lvcd opens and check its keys against a network: one reader, one key report.

Formats are recognised by their first bytes (a misnamed file still reads):

- safetensors (an 8-byte header length, then a JSON header): a lazy, memory-mapped view (``safe_open``);
- ``torch.save`` zip archives (``PK``): memory-mapped (as ``torch.load(mmap=True)``), so tensors stay in the file's
  pages instead of being copied; TorchScript archives and compressed entries are refused;
- legacy (pre-1.6) torch pickles (protocol byte ``0x80``).

Both are unpickled by :mod:`lvcd.safe_pickle`'s restricted unpickler, tensors and plain data only: a pickle that
would *call* anything (``__reduce__`` of ``os.system``, ``builtins.eval``, ...), walk attributes through a dotted
name, or build more than the file holds (``bytearray(10**9)``) is refused with "not a plain checkpoint" before any
of it runs: weights never execute code. A checkpoint that wraps its weights
(``{'state_dict': ...}``, ``{'model': ...}``, ...) is unwrapped, a DataParallel ``module.`` prefix carried by every
key is dropped, and entries that are not tensors are left out.

Every failure is a :class:`~lvcd.errors.WeightsError` that names the file and says what is wrong; ``hint`` (where to
get a good copy) is appended.

    >>> state = read_state_dict("sk_model.pth", "line-art", hint="Download it from ...")   # doctest: +SKIP
    >>> report = check_keys(state, network.state_dict())                                    # doctest: +SKIP
    >>> report.ok, report.describe()                                                        # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from lvcd.errors import WeightsError
from lvcd.safe_pickle import torch_load, unsafe_pickle_error

# Keys under which checkpoints of the networks lvcd reads keep their weights (Lightning, pytorch-fid, annotators).
WRAPPER_KEYS = ("state_dict", "model", "net", "netG", "generator")
_HEAD_BYTES = 64


# ------------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------------


def _with_hint(message: str, hint: str) -> str:
    return f"{message} {hint}".rstrip() if hint else message


def require_weights_file(path: str | os.PathLike, role: str, hint: str = "") -> Path:
    """``path`` as a Path, or a WeightsError when it does not exist or is a folder."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise WeightsError(f"The {role} weights path {path} is a folder; pass the file itself.")
    if path.exists() and not path.is_file():
        raise WeightsError(f"The {role} weights path {path} is not a regular file (a pipe or device?); pass the file.")
    if not path.is_file():
        raise WeightsError(_with_hint(f"The {role} weights file {path} does not exist.", hint))
    return path


def _sniff(path: Path, role: str, hint: str) -> str:
    """'safetensors', 'zip' or 'pickle' from the first bytes; a WeightsError for anything else."""
    with path.open("rb") as handle:
        head = handle.read(_HEAD_BYTES)
    if path.suffix.lower() == ".safetensors" or head[8:9] == b"{":
        return "safetensors"
    if head.startswith(b"PK\x03\x04"):
        return "zip"
    if head.startswith(b"\x80"):
        return "pickle"
    if head.startswith(b"version https://git-lfs"):
        raise WeightsError(
            _with_hint(f"{path} is a Git LFS pointer, not the {role} weights (cloned without git-lfs?).", hint)
        )
    kind = "an HTML page" if head.lstrip().lower().startswith((b"<!doctype", b"<html")) else "not a weights format"
    raise WeightsError(
        _with_hint(
            f"{path} is not a readable {role} weights file ({kind}, starts with {head[:16]!r}): it is corrupt or "
            "another kind of file; download it again.",
            hint,
        )
    )


def _first_line(err: BaseException, limit: int = 200) -> str:
    text = (str(err).strip().splitlines() or [""])[0]
    if len(text) > limit:  # cut at a word, and say so
        text = text[:limit].rsplit(" ", 1)[0] + " ..."
    return f"{type(err).__name__}: {text}"


def unwrap_state_dict(obj: object) -> dict[str, torch.Tensor]:
    """The tensors of a (possibly wrapped) state dict: ``WRAPPER_KEYS`` are descended into, a ``module.`` prefix
    carried by every key is dropped, non-tensor entries are left out. Empty if there are no tensors."""
    while isinstance(obj, Mapping):
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        return {}
    tensors = {str(key): value for key, value in obj.items() if isinstance(value, torch.Tensor)}
    if tensors and all(key.startswith("module.") for key in tensors):
        tensors = {key.removeprefix("module."): value for key, value in tensors.items()}
    return tensors


class WeightsFile:
    """Read-only view of one weights file: ``keys()``, ``shape(key)``, ``get(key)``; safetensors are read lazily.

    ``role`` names the file in messages ("svd", "FID Inception", "line-art"); ``hint`` says where to get it.
    """

    def __init__(self, path: str | os.PathLike, role: str, hint: str = ""):
        self.path = require_weights_file(path, role, hint)
        self.role, self.hint = role, hint
        self.format = _sniff(self.path, role, hint)
        self._safe = None
        self._tensors: dict[str, torch.Tensor] = {}
        try:
            if self.format == "safetensors":
                from safetensors import safe_open

                self._safe = safe_open(str(self.path), framework="pt")
                self._keys = list(self._safe.keys())
            else:
                # Memory-map the zip format (no copy of the weights in RAM); legacy pickles cannot be mapped.
                self._tensors = unwrap_state_dict(torch_load(self.path, mmap=self.format == "zip"))
                self._keys = list(self._tensors)
        except Exception as err:  # noqa: BLE001 - any reader failure means an unusable file
            unsafe = unsafe_pickle_error(err)
            if unsafe is not None:
                raise WeightsError(
                    _with_hint(
                        f"{self.path} is not a plain checkpoint: its pickle asks for {unsafe.global_name} "
                        f"({unsafe.why}), which could {unsafe.risk}; lvcd reads only tensors and plain data and ran none "
                        "of it. Use the official file, or one whose origin you trust re-saved as safetensors.",
                        hint,
                    )
                ) from None
            what = "safetensors" if self.format == "safetensors" else "PyTorch weights"
            raise WeightsError(
                _with_hint(
                    f"{self.path} is not a readable {what} file ({_first_line(err)}): it is truncated or corrupt "
                    f"({self.path.stat().st_size:,} bytes); download it again.",
                    hint,
                )
            ) from err
        if not self._keys:
            raise WeightsError(_with_hint(f"{self.path} holds no tensors; it is not a {role} weights file.", hint))

    def __len__(self) -> int:
        return len(self._keys)

    def keys(self) -> list[str]:
        return self._keys

    def shape(self, key: str) -> tuple[int, ...]:
        if self._safe is not None:
            return tuple(self._safe.get_slice(key).get_shape())
        return tuple(self._tensors[key].shape)

    def get(self, key: str) -> torch.Tensor:
        try:
            if self._safe is not None:
                return self._safe.get_tensor(key)
            return self._tensors[key]
        except Exception as err:  # noqa: BLE001
            raise WeightsError(
                f"Tensor {key} of {self.path} cannot be read ({err}); the file is corrupt or truncated: download it again."
            ) from err

    def metadata(self) -> dict[str, str]:
        """The safetensors header metadata ({} for pickled checkpoints)."""
        return dict(self._safe.metadata() or {}) if self._safe is not None else {}

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {key: self.shape(key) for key in self._keys}

    def read(self) -> dict[str, torch.Tensor]:
        return {key: self.get(key) for key in self._keys}


def read_state_dict(path: str | os.PathLike, role: str, hint: str = "") -> dict[str, torch.Tensor]:
    """All tensors of a weights file (see the module docstring), on the CPU, as stored."""
    return WeightsFile(path, role, hint).read()


# ------------------------------------------------------------------------------------------------
# The key report
# ------------------------------------------------------------------------------------------------


def _sample(keys: list[str], limit: int = 5) -> str:
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


@dataclass
class KeyReport:
    """Keys of a file that do not fit a network: missing, unexpected, and of the wrong shape."""

    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatch: list[tuple[str, tuple, tuple]] = field(default_factory=list)  # (key, file shape, model shape)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.unexpected or self.shape_mismatch)

    def lines(self, limit: int = 5) -> list[str]:
        lines = [
            f"{len(items)} {title}: {_sample(items, limit)}"
            for title, items in (("missing", self.missing), ("unexpected", self.unexpected))
            if items
        ]
        lines += [f"shape mismatch {key}: file {got} vs model {want}" for key, got, want in self.shape_mismatch[:limit]]
        if len(self.shape_mismatch) > limit:
            lines.append(f"... and {len(self.shape_mismatch) - limit} more shape mismatches")
        return lines

    def describe(self) -> str:
        return "; ".join(self.lines())


def _shape(value) -> tuple[int, ...]:
    return tuple(value.shape) if hasattr(value, "shape") else tuple(value)


def check_keys(
    found: Mapping[str, object], expected: Mapping[str, object], ignore: Callable[[str], bool] | None = None
) -> KeyReport:
    """Compare keys and shapes (values are tensors or shapes); keys for which ``ignore`` is true are left out."""
    keep = (lambda key: not ignore(key)) if ignore is not None else (lambda key: True)
    found = {key: _shape(value) for key, value in found.items() if keep(key)}
    expected = {key: _shape(value) for key, value in expected.items() if keep(key)}
    return KeyReport(
        missing=sorted(set(expected) - set(found)),
        unexpected=sorted(set(found) - set(expected)),
        shape_mismatch=[
            (key, found[key], expected[key]) for key in sorted(found) if key in expected and found[key] != expected[key]
        ],
    )


def _is_batchnorm_counter(key: str) -> bool:
    # BatchNorm's step counter is bookkeeping, absent from files saved by old torch versions: never required.
    return key.endswith("num_batches_tracked")


def load_strict(
    module: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    role: str,
    source: str,
    ignore: Callable[[str], bool] | None = _is_batchnorm_counter,
) -> nn.Module:
    """Load ``state_dict`` into ``module`` requiring the same keys and shapes (``ignore``d keys excepted, kept from
    the module). A file of another network raises a WeightsError with the key report instead of loading silently."""
    expected = module.state_dict()
    report = check_keys(state_dict, expected, ignore)
    if not report.ok:
        raise WeightsError(f"{role}: {source} does not match the expected network; {report.describe()}")
    filled = dict(expected)
    filled.update({key: value for key, value in state_dict.items() if key in expected})
    module.load_state_dict(filled, strict=True)
    return module
