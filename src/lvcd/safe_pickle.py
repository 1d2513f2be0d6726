"""Reading a checkpoint's pickle without ever running its code, or making more than the file holds.

Every torch file lvcd reads (``torch.save`` zips and legacy pickles: checkpoints, official latents, training states)
is unpickled by :class:`RestrictedUnpickler`: it resolves only an explicit list of exact (module, name) pairs (tensor
rebuilders, plain containers, torch constants) and turns every other object (Lightning hyper-parameters, callbacks)
into an inert stub that is never imported. A pickle that would *call* anything else (``__reduce__`` of ``os.system``,
``builtins.eval``, ...) or walk attributes through a dotted name raises :class:`UnsafePickleError` before any of it
runs. The calls it allows are checked too, so that what a pickle builds stays in proportion to the file: containers
and buffers only from the file's own data (not ``bytearray(10**9)``, not one object per element of a tensor view),
``_codecs.encode`` only as protocol 2 uses it (latin-1); once loaded (:func:`check_loaded`), no tensor larger than
its stored bytes beyond ``MAX_VIEW_ELEMENTS`` and no more stored bytes than the file. Shared references count as
what they expand to (:mod:`lvcd.pickle_budget`): hashing keys, copying arguments and the loaded data stay in
proportion to the pickle, nested at most 100 deep. torch's own weights-only reader runs no code either, but calls
what it allows with any arguments, so it is not used, nor is ``torch.load`` (:func:`torch_load`). Files are read
through :mod:`lvcd.state_dict`, the one reader of weights files, which turns a refusal into a one-line
WeightsError.
"""

from __future__ import annotations

import codecs
import collections
import functools
import pickle
from pathlib import Path

import torch

from lvcd.pickle_budget import BudgetedUnpickler


class UnsafePickleError(pickle.UnpicklingError):
    """A checkpoint's pickle asks for something beyond tensors and plain data: a call of ``global_name``, a dotted
    (attribute-walking) global, a blank buffer of a size it names (``risk`` "fill the memory"), keys that take long to
    hash ("take hours of CPU"), data nested too deep ("overflow the stack"). Raised before anything of it runs."""

    def __init__(self, global_name: str, why: str, risk: str = "run code"):
        super().__init__(f"{global_name}: {why}")
        self.global_name, self.why, self.risk = global_name, why, risk


# The only globals a checkpoint's pickle may resolve: exact (module, name) pairs, each a tensor rebuilder, a plain
# container or a torch constant. Nothing is looked up by attribute walking, so a dotted name never reaches an object.
# Sparse, nested and quantized tensors are left out: no weights file holds them, and their rebuilders allocate what
# sizes the pickle states.
_TENSOR_REBUILDERS = (
    "_rebuild_tensor",
    "_rebuild_tensor_v2",
    "_rebuild_tensor_v3",
    "_rebuild_parameter",
    "_rebuild_parameter_with_state",
    "_rebuild_meta_tensor_no_storage",
)
_SCALAR_BUILTINS = (int, float, complex, str, bool, slice)
# Containers and buffers: pickles call them on data the file holds (protocol 2's bytes and sets). Called on anything
# else they could make what the file does not hold: bytearray(10**9), or one object per element of a tensor that
# repeats one stored byte N times (stride 0). So their arguments must be the file's own plain data.
_CONTAINER_BUILTINS = (dict, list, tuple, set, frozenset, bytes, bytearray)
_PLAIN_DATA = (str, bytes, bytearray, list, tuple, dict, set, frozenset)
_LATIN1 = ("latin1", "latin-1")  # protocol 2 pickles bytes as _codecs.encode(text, "latin1")
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
# A tensor may show more elements than its storage holds (an expanded view, stride 0) only up to this many: a few bytes
# of a file could otherwise stand for any number of elements, which a later copy or cast would make real.
MAX_VIEW_ELEMENTS = 1 << 16


def _too_big(name: str, why: str) -> UnsafePickleError:
    return UnsafePickleError(name, why, "fill the memory")


def _of_plain_data(kind: type, name: str):
    """``kind`` called only on the file's own plain data (never on a number for a buffer, nor on a tensor; a buffer
    from text only as protocol 2 makes one, in latin-1: "utf-32" would make four bytes of each character)."""

    def build(*args, **kwargs):
        for arg in (*args, *kwargs.values()):
            if kind in (bytes, bytearray) and isinstance(arg, int):
                raise _too_big(name, f"a blank buffer of {arg:,} bytes, not data of the file")
            if not isinstance(arg, _PLAIN_DATA):
                raise _too_big(name, f"made from a {type(arg).__name__}, not from data of the file")
        if kind in (bytes, bytearray) and (kwargs or len(args) > 2 or (len(args) == 2 and args[1] not in _LATIN1)):
            raise _too_big(name, "asked for another encoding than latin-1, not for bytes of the file")
        return kind(*args, **kwargs)

    return build


_SCALARS = (str, int, float, bool, type(None))


def _of_scalars(kind: type, name: str):
    """``kind`` (str, int, float, ...) called on one or two scalars at most: ``str(data, "utf-32")`` or ``str`` of a
    list nested through shared references would make text many times the file's size."""

    def build(*args):
        if len(args) > 2 or not all(isinstance(arg, _SCALARS) for arg in args) or (kind is str and len(args) > 1):
            raise _too_big(name, "called on more than a number or a short text")
        return kind(*args)

    return build


def _encode(text, encoding="utf-8", *rest):
    """``_codecs.encode`` as protocol 2 uses it (text to latin-1 bytes); other codecs ("hex" doubles its input) are
    refused."""
    if not (isinstance(text, str) and encoding in _LATIN1 and not rest):
        codec = f"the {encoding[:40]!r} codec" if isinstance(encoding, str) else f"a {type(encoding).__name__} as codec"
        raise _too_big("_codecs.encode", f"asked for {codec}, not for bytes of the file")  # no repr of a whole list
    return codecs.encode(text, encoding)


def _size(*args):
    if not all(isinstance(arg, (list, tuple)) for arg in args):
        raise _too_big("torch.Size", "made from something other than a list of sizes")
    return torch.Size(*args)


class _TensorType:
    """Stands for ``torch.Tensor`` in a pickle, where it is only ever the type a tensor is rebuilt as: a call
    (``torch.Tensor(10**9)``, a blank tensor of any size) is refused."""

    def __call__(self, *args, **kwargs):
        raise _too_big("torch.Tensor", "a blank tensor of a size the pickle names, not data of the file")


_TENSOR_TYPE = _TensorType()


def _rebuild_from_type(func, new_type, args, state):
    """``torch._tensor._rebuild_from_type_v2`` with no state: a tensor's state sets its attributes, and ``real``,
    ``imag`` or ``data`` rewrite its elements (``{"real": 1.0}`` fills every one of them)."""
    if state:
        raise _too_big("torch._tensor._rebuild_from_type_v2", "sets a tensor's attributes, which no weights file needs")
    return torch._tensor._rebuild_from_type_v2(func, torch.Tensor if new_type is _TENSOR_TYPE else new_type, args, {})


def _rebuild_parameter(data, requires_grad, backward_hooks, state):
    """``torch._utils._rebuild_parameter_with_state`` with no state: a state sets any attribute of the parameter (a
    tensor stashed there escapes :func:`check_loaded`), which no weights file needs."""
    if state:
        raise _too_big("torch._utils._rebuild_parameter_with_state", "sets a parameter's attributes")
    return torch._utils._rebuild_parameter(data, requires_grad, backward_hooks)


def _check_stored(handle, path: Path) -> None:
    """Refuse a zip archive with a compressed entry before torch inflates it: ``torch.save`` stores every entry as it
    is, and a deflated one may hold a thousand times its size (a zip bomb) before anything of it is checked."""
    import zipfile

    handle.seek(0)
    try:
        with zipfile.ZipFile(handle) as archive:
            infos = archive.infolist()
            packed = [info.filename for info in infos if info.compress_type != zipfile.ZIP_STORED]
            if any(info.filename.rsplit("/", 1)[-1] == "constants.pkl" for info in infos):
                packed = []  # a TorchScript archive (torch.jit.save compresses its code): refused as such next
    except (zipfile.BadZipFile, ValueError, OSError):
        packed = []  # torch's own reader then says what is wrong with the archive
    handle.seek(0)
    if packed:
        raise _too_big(
            "a compressed entry", f"{packed[0]} in {path.name} is compressed, which torch.save never does (re-save it)"
        )


def _allowed_globals() -> dict[tuple[str, str], object]:
    allowed: dict[tuple[str, str], object] = {
        ("collections", "OrderedDict"): _of_plain_data(collections.OrderedDict, "collections.OrderedDict"),
        ("_codecs", "encode"): _encode,
        ("torch", "Size"): _size,
        ("torch", "device"): torch.device,
        ("torch", "Tensor"): _TENSOR_TYPE,
        ("torch.nn.parameter", "Parameter"): torch.nn.Parameter,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type,
    }
    allowed.update({("builtins", k.__name__): _of_scalars(k, f"builtins.{k.__name__}") for k in _SCALAR_BUILTINS})
    allowed.update({("builtins", k.__name__): _of_plain_data(k, f"builtins.{k.__name__}") for k in _CONTAINER_BUILTINS})
    allowed.update(
        {
            ("torch._utils", name): getattr(torch._utils, name)
            for name in _TENSOR_REBUILDERS
            if hasattr(torch._utils, name)
        }
    )  # fmt: skip (views are checked once loaded: check_loaded)
    allowed[("torch._utils", "_rebuild_parameter_with_state")] = _rebuild_parameter
    allowed.update({("torch", name): getattr(torch, name) for name in _TORCH_CONSTANTS if hasattr(torch, name)})
    return allowed


_ALLOWED_GLOBALS = _allowed_globals()

# Value types that Lightning checkpoints carry beside the weights (paths, numpy scalars, dates in hyper-parameters
# and callback states) and that pickle rebuilds by a call: they become inert stand-ins, never the real type.
_INERT_VALUES = frozenset(
    [("pathlib", name) for name in ("Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath")]
    + [(module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray") for name in ("scalar", "_reconstruct")]
    + [("numpy", "dtype"), ("numpy", "ndarray")]
    + [(module, "_frombuffer") for module in ("numpy.core.numeric", "numpy._core.numeric")]  # arrays, protocol 5
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


# Allowed calls that copy their arguments -> whether they hash them, counted (BudgetedUnpickler.copying): a list a
# pickle refers to again in 2 bytes must not be copied once per 6 bytes.
_COPYING = {("builtins", k.__name__): k in (dict, set, frozenset) for k in _CONTAINER_BUILTINS} | {
    ("collections", "OrderedDict"): True, ("_codecs", "encode"): False, ("torch", "Size"): False}  # fmt: skip


class RestrictedUnpickler(BudgetedUnpickler):
    """Resolves only the exact (module, name) pairs of ``_ALLOWED_GLOBALS``; any other global becomes an inert stub
    class (never imported). A dotted name (``_rebuild_tensor.__builtins__.get``: attribute walking, the way a pickle
    reaches ``eval``) or a call of a stub raises :class:`UnsafePickleError` before anything runs. What hashing keys,
    copying arguments and the loaded data walk through shared references is bounded (:mod:`lvcd.pickle_budget`)."""

    def refuse(self, name: str, why: str, risk: str):
        raise UnsafePickleError(name, why, risk)

    def find_class(self, module: str, name: str):
        if not (isinstance(module, str) and isinstance(name, str)) or not _is_dotted_name(module):
            raise UnsafePickleError(f"{module!r}.{name!r}", "not a module and name")
        if not name.isidentifier():
            raise UnsafePickleError(f"{module}.{name}", "a dotted name walks attributes")
        if module == "__builtin__":  # Python 2's name, which pickles of protocol 2 (torch.save's) carry
            module = "builtins"
        found = _ALLOWED_GLOBALS.get((module, name))
        if found is None:
            return _inert_class(module, name)
        hashes = _COPYING.get((module, name))
        return found if hashes is None else functools.partial(self.copying, f"{module}.{name}", hashes, found)


class _RestrictedPickleModule:
    """A ``pickle_module`` for torch's readers that uses the restricted unpickler."""

    Unpickler = RestrictedUnpickler
    load = staticmethod(lambda f, **kw: RestrictedUnpickler(f, **kw).load())
    __name__ = "lvcd_restricted_pickle"


def _tensors_in(obj, seen: set[int]):
    """The tensors of a loaded object: through dicts, lists, tuples and sets (inert stand-ins hold none)."""
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for value in obj.values():
            yield from _tensors_in(value, seen)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for value in obj:
            yield from _tensors_in(value, seen)


def check_loaded(obj, file_bytes: int) -> None:
    """What was loaded holds no more than the file: no tensor shows more elements than its storage beyond
    MAX_VIEW_ELEMENTS (a state set after rebuilding could make one), and the storages together hold no more bytes
    than the file (a legacy file states its storages' sizes, which are allocated before their data is read)."""
    storages: dict[int, int] = {}
    for tensor in _tensors_in(obj, set()):
        if tensor.is_meta:
            continue
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = max(storages.get(storage.data_ptr(), 0), storage.nbytes())
        if tensor.numel() > MAX_VIEW_ELEMENTS and tensor.numel() * tensor.element_size() > storage.nbytes():
            raise _too_big("a tensor", f"a view of {tensor.numel():,} elements over {storage.nbytes():,} stored bytes")
    stored = sum(storages.values())
    if stored > file_bytes:
        raise _too_big("its storages", f"{stored:,} bytes of tensors from a file of {file_bytes:,} bytes")


def _read_torch_file(path: Path, mmap: bool) -> object:
    """The object of a zip or legacy torch file, unpickled on the CPU by the restricted unpickler. Not through
    ``torch.load``: it obeys TORCH_FORCE_WEIGHTS_ONLY_LOAD from the environment (then refuses any ``pickle_module``:
    every checkpoint would read as corrupt), and it hands an archive holding ``constants.pkl`` to ``torch.jit.load``,
    which runs the TorchScript in it. The two readers it calls take the unpickler as an argument and read no
    environment (private, unchanged since torch 2.1)."""
    serialization = torch.serialization
    with open(path, "rb") as handle:
        if not serialization._is_zipfile(handle):
            return serialization._legacy_load(handle, "cpu", _RestrictedPickleModule, encoding="utf-8")
        _check_stored(handle, path)
        with serialization._open_zipfile_reader(handle) as archive:
            if serialization._is_torchscript_zip(archive):
                raise UnsafePickleError("torch.jit.load", "a TorchScript archive, a program that loading runs")
            mapped = torch.UntypedStorage.from_file(str(path), False, path.stat().st_size) if mmap else None
            return serialization._load(
                archive, "cpu", _RestrictedPickleModule, overall_storage=mapped, encoding="utf-8"
            )


def torch_load(path: Path, mmap: bool) -> object:
    """A zip or legacy torch file on the CPU, through the restricted unpickler: tensors and plain data only (raises
    :class:`UnsafePickleError`, possibly wrapped, for a pickle that would run anything, or make more than the file
    holds). torch's own weights-only reader is not used: it runs no code either, but it calls what it allows with
    whatever arguments the pickle gives (``bytearray(10**9)``, ``_codecs.encode(..., "hex")`` chains that double a
    buffer every 9 bytes of pickle)."""
    loaded = _read_torch_file(Path(path), mmap)
    check_loaded(loaded, Path(path).stat().st_size)
    return loaded


def weights_only_load(path: Path, loader=None) -> object:
    """A ``torch.save`` file of tensors and plain data (official latents, the states of earlier training checkpoints)
    through :func:`torch_load`; ``loader(path)`` instead when given (another weights-only reader, e.g. accelerate's,
    for files of the user's own runs)."""
    return torch_load(Path(path), mmap=False) if loader is None else loader(path)


def unsafe_pickle_error(err: BaseException) -> UnsafePickleError | None:
    """The UnsafePickleError behind ``err`` (torch may re-raise it wrapped), or None."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, UnsafePickleError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None
