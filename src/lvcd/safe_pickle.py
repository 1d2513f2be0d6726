"""Reading a checkpoint's pickle without ever running its code.

``torch.load(weights_only=True)`` refuses a pickle that holds objects beyond tensors (Lightning hyper-parameters,
callbacks). :class:`RestrictedUnpickler` reads it instead: it resolves only an explicit list of exact (module, name)
pairs (tensor rebuilders, plain containers, torch constants) and turns every other object into an inert stub that is
never imported. A pickle that would *call* anything else (``__reduce__`` of ``os.system``, ``builtins.eval``, ...) or
walk attributes through a dotted name raises :class:`UnsafePickleError` before any of it runs. Files are read through
:mod:`lvcd.state_dict`, the one reader of weights files, which turns that into a one-line WeightsError.
"""

from __future__ import annotations

import codecs
import collections
import pickle
import pickletools
import zipfile
from pathlib import Path

import torch


class UnsafePickleError(pickle.UnpicklingError):
    """A checkpoint's pickle asks for something beyond tensors and plain data: a call of ``global_name``, a dotted
    (attribute-walking) global, or a blank buffer of a size it names (``risk`` "fill the memory"). Raised before
    anything of it runs."""

    def __init__(self, global_name: str, why: str, risk: str = "run code"):
        super().__init__(f"{global_name}: {why}")
        self.global_name, self.why, self.risk = global_name, why, risk


# The only globals a checkpoint's pickle may resolve: exact (module, name) pairs, each a tensor rebuilder, a plain
# container or a torch constant. Nothing is looked up by attribute walking, so a dotted name never reaches an object.
_TENSOR_REBUILDERS = (
    "_rebuild_tensor",
    "_rebuild_tensor_v2",
    "_rebuild_tensor_v3",
    "_rebuild_parameter",
    "_rebuild_parameter_with_state",
    "_rebuild_qtensor",
    "_rebuild_sparse_tensor",
    "_rebuild_meta_tensor_no_storage",
    "_rebuild_nested_tensor",
)
_PLAIN_BUILTINS = (dict, list, tuple, set, frozenset, int, float, complex, str, bool, slice)
# Pickles build bytes and bytearrays from data they hold; called with a number, these make a blank buffer of that
# size: a file of a few KB could ask for all the memory. Only the data form is allowed.
_BUFFER_BUILTINS = (bytes, bytearray)
_TORCH_CONSTANTS = (
    # dtypes (a pickled dtype is the global torch.<name>)
    "float32", "float64", "float16", "bfloat16", "complex32", "complex64", "complex128", "uint8", "uint16", "uint32",
    "uint64", "int8", "int16", "int32", "int64", "bool", "float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2",
    "float8_e5m2fnuz", "float8_e8m0fnu", "qint8", "quint8", "qint32", "quint4x2", "quint2x4", "half", "float",
    "double", "cfloat", "cdouble", "short", "int", "long",
    # layouts, memory formats and quantization schemes
    "strided", "sparse_coo", "sparse_csr", "sparse_csc", "sparse_bsr", "sparse_bsc", "contiguous_format",
    "channels_last", "preserve_format", "per_tensor_affine", "per_tensor_symmetric", "per_channel_affine",
    "per_channel_symmetric", "per_channel_affine_float_qparams",
)  # fmt: skip


def _from_data_only(kind: type):
    def build(*args):
        if args and isinstance(args[0], int):
            raise UnsafePickleError(
                f"builtins.{kind.__name__}",
                f"a blank buffer of {args[0]:,} bytes, not data of the file",
                "fill the memory",
            )
        return kind(*args)

    return build


def _allowed_globals() -> dict[tuple[str, str], object]:
    allowed: dict[tuple[str, str], object] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("_codecs", "encode"): codecs.encode,  # how protocol 2 pickles bytes
        ("torch", "Size"): torch.Size,
        ("torch", "device"): torch.device,
        ("torch", "Tensor"): torch.Tensor,
        ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
        ("torch._tensor", "_rebuild_from_type_v2"): torch._tensor._rebuild_from_type_v2,
    }
    allowed.update({("builtins", kind.__name__): kind for kind in _PLAIN_BUILTINS})
    allowed.update({("builtins", kind.__name__): _from_data_only(kind) for kind in _BUFFER_BUILTINS})
    allowed.update({("torch._utils", name): getattr(torch._utils, name) for name in _TENSOR_REBUILDERS
                    if hasattr(torch._utils, name)})  # fmt: skip
    allowed.update({("torch", name): getattr(torch, name) for name in _TORCH_CONSTANTS if hasattr(torch, name)})
    return allowed


_ALLOWED_GLOBALS = _allowed_globals()

# Value types that Lightning checkpoints carry beside the weights (paths, numpy scalars, dates in hyper-parameters
# and callback states) and that pickle rebuilds by a call: they become inert stand-ins, never the real type.
_INERT_VALUES = frozenset(
    [("pathlib", name) for name in ("Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath")]
    + [(module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray") for name in ("scalar", "_reconstruct")]
    + [("numpy", "dtype"), ("numpy", "ndarray")]
    + [("datetime", name) for name in ("datetime", "date", "time", "timedelta", "timezone")]
    + [("collections", "defaultdict"), ("collections", "Counter")]
)  # fmt: skip


class _InertObject:
    """Stands in for an object of a checkpoint's pickle that is neither a tensor nor a plain container (Lightning
    hyper-parameters, callback states): it takes its state and items and ignores them. Unpickling makes such objects
    without calling anything (``cls.__new__`` then ``__setstate__``); a pickle that *calls* one (``__reduce__``, the
    way a pickle runs code) is refused."""

    _global = "?"
    _inert_call = False

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        if not self._inert_call:
            raise UnsafePickleError(self._global, "the pickle calls it")

    def __call__(self, *args, **kwargs):
        raise UnsafePickleError(self._global, "the pickle calls an object it made")

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass

    def append(self, value):
        pass

    def extend(self, values):
        pass


def _inert_class(module: str, name: str) -> type:
    attributes = {"__module__": "lvcd.safe_pickle.inert", "_global": f"{module}.{name}",
                  "_inert_call": (module, name) in _INERT_VALUES}  # fmt: skip
    return type(name, (_InertObject,), attributes)


def _is_dotted_name(text: str) -> bool:
    return all(part.isidentifier() for part in text.split("."))


class RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the exact (module, name) pairs of ``_ALLOWED_GLOBALS``; any other global becomes an inert stub
    class (never imported). A dotted name (``_rebuild_tensor.__builtins__.get``: attribute walking, the way a pickle
    reaches ``eval``) or a call of a stub raises :class:`UnsafePickleError` before anything runs."""

    def find_class(self, module: str, name: str):
        if not (isinstance(module, str) and isinstance(name, str)) or not _is_dotted_name(module):
            raise UnsafePickleError(f"{module!r}.{name!r}", "not a module and name")
        if not name.isidentifier():
            raise UnsafePickleError(f"{module}.{name}", "a dotted name walks attributes")
        if module == "__builtin__":  # Python 2's name, which pickles of protocol 2 (torch.save's) carry
            module = "builtins"
        found = _ALLOWED_GLOBALS.get((module, name))
        return found if found is not None else _inert_class(module, name)


class _RestrictedPickleModule:
    """A ``pickle_module`` for torch.load that uses the restricted unpickler."""

    Unpickler = RestrictedUnpickler
    load = staticmethod(lambda f, **kw: RestrictedUnpickler(f, **kw).load())
    __name__ = "lvcd_restricted_pickle"


# The globals torch's weights-only unpickler calls with whatever arguments the pickle gives, and which then allocate
# what they are asked for: a pickle naming one is read by the restricted unpickler, which checks those arguments.
_SIZED_BY_ARGUMENT = frozenset({"builtins bytearray", "__builtin__ bytearray"})
_LEGACY_PICKLES = 4  # a legacy file: magic number, protocol, system info, then the object (then storage keys, data)


def _names_sized_global(path: Path) -> bool:
    """Whether a pickle of the file names a global of ``_SIZED_BY_ARGUMENT`` (torch's weights-only reader knows only
    the GLOBAL opcode); False for a file these scans cannot read (the loaders then report it)."""

    def names_one(stream) -> bool:
        return any(op.name == "GLOBAL" and arg in _SIZED_BY_ARGUMENT for op, arg, _ in pickletools.genops(stream))

    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for name in archive.namelist():
                    if name.endswith(".pkl"):
                        with archive.open(name) as stream:
                            if names_one(stream):
                                return True
            return False
        with path.open("rb") as stream:
            return any(names_one(stream) for _ in range(_LEGACY_PICKLES))
    except Exception:  # noqa: BLE001 - an unreadable file is reported by the loaders below, in their words
        return False


def weights_only_load(path: Path, loader=None) -> object:
    """``torch.load(weights_only=True)`` (or ``loader(path)``, another weights-only reader) of a file that holds
    tensors and plain data only, refusing first (:class:`UnsafePickleError`) a pickle that names a global of
    ``_SIZED_BY_ARGUMENT``: the weights-only reader would allocate whatever size it is given."""
    if _names_sized_global(Path(path)):
        raise UnsafePickleError(
            "builtins.bytearray",
            "a blank buffer of a size the pickle names, which could fill the memory",
            "fill the memory",
        )
    return torch.load(path, map_location="cpu", weights_only=True) if loader is None else loader(path)


def torch_load(path: Path, mmap: bool) -> object:
    """``torch.load`` of a zip or legacy pickle on the CPU: weights-only, else tensors only through the restricted
    unpickler (raises :class:`UnsafePickleError`, possibly wrapped, for a pickle that would run anything or ask for
    a blank buffer of a size it names)."""
    if not _names_sized_global(Path(path)):
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
        except pickle.UnpicklingError as err:
            if "weights only" not in str(err).lower():
                raise
    # The pickle holds objects beyond tensors (e.g. Lightning hyper-parameters) or names a sized global: rebuild
    # tensors only.
    return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap, pickle_module=_RestrictedPickleModule)


def unsafe_pickle_error(err: BaseException) -> UnsafePickleError | None:
    """The UnsafePickleError behind ``err`` (torch may re-raise it wrapped), or None."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, UnsafePickleError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None
