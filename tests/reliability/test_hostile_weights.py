"""Guarantee: weights never execute code. Crafted checkpoints are refused as "not a plain checkpoint" with no side
effect, in both torch formats; real Lightning checkpoints (hyper-parameters, callbacks, numpy scalars, paths) load."""

from __future__ import annotations

import argparse
import collections
import datetime
import pathlib
import time

import numpy as np
import pytest
import torch

from lvcd.errors import WeightsError
from lvcd.state_dict import WeightsFile

from .hostile import payloads, write_legacy_checkpoint, write_zip_checkpoint

STATE = {"control_model.w": torch.arange(6.0).reshape(2, 3), "control_model.b": torch.ones(3, dtype=torch.bfloat16)}
NAMES = sorted(payloads(pathlib.Path("marker")))


def _crafted(tmp_path: pathlib.Path, name: str, container: str) -> tuple[pathlib.Path, pathlib.Path, bool]:
    marker = tmp_path / "pwned"
    protocol, payload, live = payloads(marker)[name]
    path = tmp_path / f"{name}.ckpt"
    if container == "zip":
        write_zip_checkpoint(path, STATE, protocol, payload)
    else:
        write_legacy_checkpoint(path, protocol, payload)
    return path, marker, live


def _appears(marker: pathlib.Path, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if marker.exists():
            return True
        time.sleep(0.05)
    return marker.exists()


@pytest.mark.parametrize("container", ["zip", "legacy"])
@pytest.mark.parametrize("name", NAMES)
def test_crafted_checkpoint_is_refused_and_runs_nothing(tmp_path, name, container):
    path, marker, _ = _crafted(tmp_path, name, container)
    before = path.read_bytes()
    with pytest.raises(WeightsError, match="is not a plain checkpoint") as caught:
        WeightsFile(path, "lvcd")
    message = str(caught.value)
    assert str(path) in message and "\n" not in message
    assert not _appears(marker, 0.5)  # a spawned process would have had time to create it
    assert path.read_bytes() == before


@pytest.mark.parametrize("name", [n for n in NAMES if payloads(pathlib.Path("m"))[n][2]])
def test_the_crafted_payloads_are_live(tmp_path, name):
    """Control: an unrestricted torch.load does run each payload, so the refusal above is what keeps it out."""
    path, marker, _ = _crafted(tmp_path, name, "zip")
    try:
        torch.load(path, weights_only=False)
    except Exception:  # noqa: BLE001 - some payloads break the rest of the load after running
        pass
    assert _appears(marker)


class AttributeDict(dict):
    """Like Lightning's AttributeDict: a dict subclass pickled with NEWOBJ + SETITEMS."""


class HyperParameters:
    def __init__(self):
        self.lr, self.name, self.config = 1e-5, "lvcd", argparse.Namespace(steps=3, root=pathlib.Path("/data"))


def _lightning_checkpoint(path: pathlib.Path, legacy: bool = False) -> pathlib.Path:
    state = {**STATE, "model.p": torch.nn.Parameter(torch.full((2,), 2.0))}
    torch.save(
        {
            "state_dict": state,
            "hyper_parameters": AttributeDict(params=HyperParameters(), when=datetime.datetime(2024, 1, 2)),
            "callbacks": {"ModelCheckpoint{'monitor': None}": {"dirpath": pathlib.PurePosixPath("/ckpt"),
                                                              "best_k_models": {"a": np.float64(0.5)}}},
            "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": np.int64(3)}}}},
            "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(2)}}, "param_groups": [{"lr": 1e-5}]}],
            "pytorch-lightning_version": "2.2.0",
            "epoch": 3,
            "global_step": 1200,
        },
        path,
        _use_new_zipfile_serialization=not legacy,
    )  # fmt: skip
    return path


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_lightning_checkpoints_with_objects_still_load(tmp_path, legacy):
    path = _lightning_checkpoint(tmp_path / "lightning.ckpt", legacy)
    with pytest.raises(Exception, match="Weights only load failed"):  # the restricted reader is really exercised
        torch.load(path, weights_only=True)
    loaded = WeightsFile(path, "lvcd").read()
    assert sorted(loaded) == sorted([*STATE, "model.p"])
    for key, tensor in STATE.items():
        assert torch.equal(loaded[key], tensor) and loaded[key].dtype == tensor.dtype


class _BlankBuffer:
    """Pickles as ``kind(size)``: a blank buffer of a size the pickle names (a file of a few KB asking for GBs)."""

    def __init__(self, kind: type, size: int):
        self.kind, self.size = kind, size

    def __reduce__(self):
        return (self.kind, (self.size,))


class _RepeatedByte:
    """Pickles as ``kind(view)``: a tensor repeating one stored byte ``size`` times (stride 0), iterated into one
    Python object per element; with ``kind`` None, the view itself (a later copy or cast would make it real)."""

    def __init__(self, kind, size: int):
        self.kind, self.size = kind, size

    def __reduce__(self):
        view = torch.zeros(1, dtype=torch.uint8).expand(self.size)
        return (self.kind, (view,)) if self.kind is not None else view.__reduce_ex__(2)


BOMB_BYTES = 200_000_000  # small enough to survive on the old code, large beside the file


def _hex_chain(doublings: int) -> bytes:
    """A pickle (protocol 2) of {'w': bytes}: _codecs.encode(prev, 'hex') ``doublings`` times, 9 bytes each."""
    encode, text = b"c_codecs\nencode\nq\x00", b"X\x01\x00\x00\x00Aq\x01X\x06\x00\x00\x00latin1q\x02"
    body = b"\x80\x02" + encode + text + b"X\x03\x00\x00\x00hexq\x03" + b"h\x00h\x01h\x02\x86Rq\x04"
    body += b"h\x00h\x04h\x03\x86Rq\x04" * doublings
    return body + b"}X\x01\x00\x00\x00wh\x04s."


def _zip_with_pickle(path: pathlib.Path, pickled: bytes) -> pathlib.Path:
    """A torch.save archive of STATE whose data.pkl is replaced by ``pickled``."""
    import io
    import zipfile

    buffer = io.BytesIO()
    torch.save({"state_dict": STATE}, buffer)
    source = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    with zipfile.ZipFile(path, "w") as archive:
        for info in source.infolist():
            data = pickled if info.filename.endswith("data.pkl") else source.read(info)
            archive.writestr(info.filename, data)
    return path


def _refused_for_memory(path: pathlib.Path, names: str) -> None:
    with pytest.raises(WeightsError, match="is not a plain checkpoint") as caught:
        WeightsFile(path, "lvcd")
    message = str(caught.value)
    assert names in message and "which could fill the memory" in message and "\n" not in message


@pytest.mark.parametrize("kind", [bytearray, bytes])
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_a_pickle_asking_for_a_blank_buffer_is_refused_before_allocating(tmp_path, legacy, kind):
    path = tmp_path / "bomb.ckpt"
    torch.save({"state_dict": STATE, "hyper_parameters": {"blob": _BlankBuffer(kind, BOMB_BYTES)}}, path,
               _use_new_zipfile_serialization=not legacy)  # fmt: skip
    assert path.stat().st_size < 10_000
    _refused_for_memory(path, f"builtins.{kind.__name__}")


def test_a_codec_chain_that_doubles_a_buffer_is_refused(tmp_path):
    """_codecs.encode(x, 'hex') doubles x in 9 bytes of pickle: 1.3 KB would ask for 16 GB (torch's weights-only
    reader allows it); protocol 2's own use, encode(text, 'latin1'), still reads (the test below)."""
    path = _zip_with_pickle(tmp_path / "hex.ckpt", _hex_chain(24))
    assert path.stat().st_size < 2_000
    _refused_for_memory(path, "_codecs.encode")


@pytest.mark.parametrize(
    "kind", [set, list, tuple, frozenset, bytearray, None], ids=lambda k: getattr(k, "__name__", "view")
)
def test_a_tensor_repeating_one_stored_byte_is_refused(tmp_path, kind):
    path = tmp_path / "stride0.ckpt"
    # 300,000 elements: one Python object each is ~200 MB on code without the check (survivable), any N would do
    torch.save({"state_dict": {**STATE, "big": _RepeatedByte(kind, 300_000)}}, path)
    assert path.stat().st_size < 10_000
    if kind is None:  # the view itself, refused once loaded, before anything could copy or cast it
        _refused_for_memory(path, "a tensor (a view of 300,000 elements over 1 stored bytes)")
    else:  # iterated into one object per element
        _refused_for_memory(path, f"builtins.{kind.__name__} (made from a Tensor, not from data of the file)")


def test_a_legacy_pickle_with_a_zip_appended_is_read_as_torch_reads_it(tmp_path):
    """A legacy file whose tail is a zip (zipfile says zip, torch reads the head): its blank buffer is refused."""
    import io
    import zipfile

    path = tmp_path / "polyglot.ckpt"
    torch.save({"blob": _BlankBuffer(bytearray, BOMB_BYTES)}, path, _use_new_zipfile_serialization=False)
    tail = io.BytesIO()
    with zipfile.ZipFile(tail, "w") as archive:
        archive.writestr("x/readme.txt", "hi")
    path.write_bytes(path.read_bytes() + tail.getvalue())
    assert zipfile.is_zipfile(path)
    _refused_for_memory(path, "builtins.bytearray")


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_buffers_and_small_views_a_checkpoint_holds_as_data_still_load(tmp_path, legacy):
    path = tmp_path / "data.ckpt"
    hyper = {"raw": bytearray(b"\x00\x01lvcd"), "tag": b"bytes", "ids": {1, 2}, "params": HyperParameters()}
    position_ids = torch.arange(77).expand(1, -1)  # as CLIP's buffer: a view, no larger than its storage
    repeated = torch.ones(1).expand(64)  # a small expanded view
    state = {**STATE, "position_ids": position_ids, "repeated": repeated}
    torch.save({"state_dict": state, "hyper_parameters": hyper}, path, _use_new_zipfile_serialization=not legacy)
    loaded = WeightsFile(path, "lvcd").read()
    assert sorted(loaded) == sorted(state) and all(torch.equal(loaded[k], state[k]) for k in state)


def test_plain_torch_files_lvcd_reads_refuse_a_blank_buffer_too(tmp_path):
    from lvcd.safe_pickle import UnsafePickleError, weights_only_load
    from lvcd.train.resume import CheckpointError, read_plain_torch_file

    path = tmp_path / "state.pt"
    torch.save({"step": 3, "blob": _BlankBuffer(bytearray, BOMB_BYTES)}, path)
    with pytest.raises(UnsafePickleError, match="builtins.bytearray: a blank buffer of 200,000,000 bytes") as caught:
        weights_only_load(path)
    assert caught.value.risk == "fill the memory"
    with pytest.raises(CheckpointError, match="is not a plain checkpoint: .* could fill the memory"):
        read_plain_torch_file(path)
    torch.save({"latent": torch.zeros(4, 8, 8), "raw": bytearray(b"abc")}, tmp_path / "plain.pt")
    loaded = weights_only_load(tmp_path / "plain.pt")  # a bytearray of data is data (it was refused by name)
    assert torch.equal(loaded["latent"], torch.zeros(4, 8, 8)) and loaded["raw"] == bytearray(b"abc")


class _Reduced:
    """Pickles as ``function(*args)`` (with ``state``: then BUILD, the way a pickle sets an object's state)."""

    def __init__(self, function, args, state=None):
        self.function, self.args, self.state = function, args, state

    def __reduce__(self):
        return (self.function, self.args) if self.state is None else (self.function, self.args, self.state)


def _nested_text(depth: int) -> list:
    """A list of 10 references to a list of 10 references ... to one text: str() of it is 10**depth texts long."""
    value: object = "A" * 100
    for _ in range(depth):
        value = [value] * 10
    return value


def _stride0_by_state(size: int) -> _Reduced:
    """A small real tensor whose pickled state (BUILD -> Tensor.__setstate__ -> set_) makes it a view of ``size``
    elements over its 4 stored bytes."""
    function, args = torch.ones(1).__reduce_ex__(2)
    return _Reduced(function, args, (torch.ones(1)._typed_storage(), 0, (size,), (0,)))


ROUND_TWO = {  # what a second review built in under 1 KB: each would hold hundreds of MB to GBs at full size
    "bytes-utf32": (lambda: _Reduced(bytes, ("A" * 64, "utf-32")), "builtins.bytes"),
    "str-nested": (lambda: _Reduced(str, (_nested_text(4),)), "builtins.str"),
    "str-decoding": (lambda: _Reduced(str, (b"AAAA", "utf-32")), "builtins.str"),
    "tensor-call": (lambda: _Reduced(torch.Tensor, (10_000_000,)), "torch.Tensor"),
    "tensor-state": (
        lambda: _Reduced(torch._tensor._rebuild_from_type_v2, (torch.Tensor, torch.Tensor, (10,), {"real": 1.0})),
        "torch._tensor._rebuild_from_type_v2",
    ),
    "stride0-by-state": (lambda: _stride0_by_state(100_000_000), "a tensor (a view of 100,000,000 elements"),
}


@pytest.mark.parametrize("name", sorted(ROUND_TWO))
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_what_a_second_review_built_from_a_small_file_is_refused(tmp_path, name, legacy):
    make, names = ROUND_TWO[name]
    path = tmp_path / f"{name}.ckpt"
    torch.save(
        {"state_dict": STATE, "hyper_parameters": {"x": make()}},
        path,
        pickle_protocol=4,
        _use_new_zipfile_serialization=not legacy,
    )  # fmt: skip (protocol 4: builtins.str, not unicode)
    assert path.stat().st_size < 10_000
    _refused_for_memory(path, names)


def test_tensors_may_hold_no_more_bytes_than_their_file():
    """A legacy file states its storages' sizes, allocated before their data is read: a few hundred bytes stated a
    storage of 1 GB (found by review). Storages shared by several tensors count once."""
    from lvcd.safe_pickle import UnsafePickleError, check_loaded

    shared = torch.zeros(1000)
    check_loaded({"a": shared, "b": shared[10:20], "c": [shared.view(10, 100)]}, file_bytes=4000)
    with pytest.raises(UnsafePickleError, match="4,000 bytes of tensors from a file of 3,999 bytes"):
        check_loaded({"a": shared}, file_bytes=3999)
    with pytest.raises(UnsafePickleError, match="a view of 100,000 elements over 4 stored bytes"):
        check_loaded({"deep": [[{"x": torch.ones(1).expand(100_000)}]]}, file_bytes=10**9)


def test_a_protocol_5_checkpoint_with_a_numpy_array_in_its_hyper_parameters_loads(tmp_path):
    path = tmp_path / "p5.ckpt"
    torch.save({"state_dict": STATE, "hyper_parameters": {"mean": np.arange(4.0)}}, path, pickle_protocol=5)
    loaded = WeightsFile(path, "lvcd").read()
    assert sorted(loaded) == sorted(STATE)


# A pickle refers to an object again in 2 bytes (a memo GET): a few hundred bytes can stand for 2**40 items, for a
# hash, a copy or a repr to walk. Each vector below took the old reader hours, a crash or gigabytes.
def _doubling_tuple(levels: int) -> bytes:
    """Opcodes leaving t on the stack: t0 = (None,), then t = (t, t) ``levels`` times, 8 bytes a level."""
    ops = b"N\x85q\x000"  # (None,), memo 0, POP
    for i in range(levels):
        ops += b"h" + bytes([i]) + b"h" + bytes([i]) + b"\x86q" + bytes([i + 1]) + b"0"  # GET, GET, TUPLE2, PUT, POP
    return ops + b"h" + bytes([levels])


HASHING = {  # opcodes that hash the tuple ``t`` (as a dict key, set item, ...) and leave one object on the stack
    "dict-key": lambda t: b"}" + t + b"Ns",  # SETITEM
    "set-items": lambda t: b"\x8f(" + t + b"\x90",  # EMPTY_SET, ADDITEMS
    "frozenset": lambda t: b"(" + t + b"\x91",  # FROZENSET
    "set-call": lambda t: b"c__builtin__\nset\n]" + t + b"a\x85R",  # set([t]), as protocol 2 pickles a set
}


@pytest.mark.parametrize("how", sorted(HASHING))
def test_a_key_nested_through_shared_references_is_refused_before_hashing(tmp_path, how):
    """A tuple of two references to the tuple below, 40 times over: 329 to 348 bytes of pickle (in a 1.8 KB archive)
    whose hash walks 2**41 items, about 16 hours of CPU on the old reader (0.9 s at 24 levels, doubling each level).
    Refused in milliseconds: each tuple is measured once."""
    payload = HASHING[how](_doubling_tuple(40))
    assert len(payload) <= 348
    path = write_zip_checkpoint(tmp_path / "hash.ckpt", STATE, 4, payload)
    started = time.monotonic()
    with pytest.raises(WeightsError, match="is not a plain checkpoint") as caught:
        WeightsFile(path, "lvcd")
    assert time.monotonic() - started < 5  # well under a second when the machine is not busy
    message = str(caught.value)
    assert "dict keys and set items (hashing walks 3,298,534,883,327 items" in message, message
    assert "which could take hours of CPU" in message and "\n" not in message


def test_a_key_nested_a_million_deep_is_refused_not_a_crash(tmp_path):
    """A 1 MB pickle: a tuple in a tuple ... 10**6 deep (TUPLE1, one byte a level) as a dict key. Hashing it overflows
    the C stack: the old reader's process died (SIGSEGV). Refused as one line instead."""
    payload = b"})" + b"\x85" * 1_000_000 + b"Ns"
    path = write_zip_checkpoint(tmp_path / "deep-key.ckpt", STATE, 4, payload)
    with pytest.raises(WeightsError, match="is not a plain checkpoint") as caught:
        WeightsFile(path, "lvcd")
    message = str(caught.value)
    assert "dict keys and set items (a tuple nested 1,000,001 deep), which could crash the process" in message, message
    assert "\n" not in message


def _doubling_list_ops(levels: int) -> bytes:
    """Opcodes leaving L on the stack: L0 = [None], then L = [L, L] ``levels`` times, 9 bytes a level."""
    ops = b"]Naq\x000"  # [None], memo 0, POP
    for i in range(levels):
        ops += b"](h" + bytes([i]) + b"h" + bytes([i]) + b"eq" + bytes([i + 1]) + b"0"  # [L, L], memo, POP
    return ops + b"h" + bytes([levels])


PRINTED = {  # where a value of the pickle was put in an error message: name -> (payload, what the refusal says)
    # torch's persistent_load: f"Unknown typename for persistent_load, expected 'storage' but got '{pid[0]}'"
    "persistent-id": (_doubling_list_ops(40) + b"\x85Q", "a persistent id (hashing walks 3,298,534,883,328 items"),
    # lvcd's own refusal of a codec other than latin-1 printed the codec's repr
    "codec": (b"c_codecs\nencode\n(X\x01\x00\x00\x00A" + _doubling_list_ops(40) + b"tR", "a list as codec"),
}


@pytest.mark.parametrize("name", sorted(PRINTED))
def test_what_a_message_would_print_is_counted_or_named_by_its_type(tmp_path, name):
    """Lists of two references to the list below, 40 times over (about 400 bytes of pickle), print as 2**41 lists,
    terabytes of text: the old reader was still printing when stopped after 2 minutes. Refused at once."""
    payload, says = PRINTED[name]
    path = write_zip_checkpoint(tmp_path / f"{name}.ckpt", STATE, 2, payload)
    with pytest.raises(WeightsError, match="is not a plain checkpoint") as caught:
        WeightsFile(path, "lvcd")
    assert says in str(caught.value), str(caught.value)


def _doubling_list(levels: int) -> list:
    value: list = [1.0]
    for _ in range(levels):
        value = [value, value]
    return value


def _holding_itself() -> list:
    value: list = []
    value.append(value)
    return value


LOADED = {  # what an optimizer state may hold: torch's Optimizer.load_state_dict rebuilds it as a tree (_cast)
    "doubling-lists": (lambda: _doubling_list(40), "items once its shared references are expanded", "fill the memory"),
    "holding-itself": (_holding_itself, "a container that holds itself", "overflow the stack"),
}


@pytest.mark.parametrize("name", sorted(LOADED))
@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_loaded_data_that_expands_without_end_is_refused(tmp_path, name, legacy):
    """Lists of two references to the list below, 40 times over (about 300 bytes of pickle), are 2**41 lists to
    whatever copies them as a tree: torch's Optimizer.load_state_dict does (13 levels made 8,191 lists), and so would
    repr or json. The old reader returned them (its own walk is memoized); a list holding itself likewise."""
    make, why, risk = LOADED[name]
    path = tmp_path / f"{name}.ckpt"
    state = {"state_dict": STATE, "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(2), "x": make()}}}]}
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    assert path.stat().st_size < 5_000
    with pytest.raises(WeightsError, match="is not a plain checkpoint") as caught:
        WeightsFile(path, "lvcd")
    message = str(caught.value)
    assert "plain data (" in message and why in message and f"which could {risk}" in message, message
    assert "\n" not in message


def test_data_nested_deeper_than_any_checkpoint_is_refused_as_one_line(tmp_path):
    """A list in a list ... 100,000 deep (2 bytes a level): the old reader's own walk hit RecursionError and called
    the file "truncated or corrupt"; repr, copy and torch's optimizer loading do too."""
    depth = 100_000
    pickled = b"\x80\x02}X\x01\x00\x00\x00x" + b"]" * depth + b"a" * (depth - 1) + b"s."
    path = _zip_with_pickle(tmp_path / "deep.ckpt", pickled)
    with pytest.raises(WeightsError, match="is not a plain checkpoint") as caught:
        WeightsFile(path, "lvcd")
    message = str(caught.value)
    assert "plain data (containers nested 100,001 deep), which could overflow the stack" in message, message


def test_copying_one_shared_list_again_and_again_is_refused(tmp_path):
    """tuple(L) 200 times over one list of 100,000 items: 101 KB of pickle asking for 20,000,000 items (160 MB; at
    10**4 copies, 8 GB from 160 KB). Each copy is counted: refused at the 27th, before the memory is spent."""
    items, copies = 100_000, 200
    body = b"c__builtin__\ntuple\nq\x01" + b"](" + b"N" * items + b"eq\x00" + b"(" + b"h\x01h\x00\x85R" * copies + b"l"
    path = write_zip_checkpoint(tmp_path / "copies.ckpt", STATE, 2, body)
    with pytest.raises(WeightsError, match="is not a plain checkpoint") as caught:
        WeightsFile(path, "lvcd")
    message = str(caught.value)
    assert "builtins.tuple (its calls copy " in message and "which could fill the memory" in message, message


def test_a_memo_index_does_not_size_the_memory(tmp_path):
    """LONG_BINPUT 2**24 in 9 bytes: the C unpickler (the old reader's) sizes its memo to twice the largest index a
    pickle names and zero-fills it: 256 MB here, 64 GB at 2**32 - 1. pickle.py's memo is a dict; the file loads."""
    import tracemalloc

    path = write_zip_checkpoint(tmp_path / "memo.ckpt", STATE, 2, b"Nr\x00\x00\x00\x01")
    tracemalloc.start()
    try:
        loaded = WeightsFile(path, "lvcd").read()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert sorted(loaded) == sorted(STATE) and peak < 32 << 20, f"{peak:,} bytes"


def test_a_bytearray_is_read_from_the_file_not_made_blank_at_the_size_it_states(tmp_path):
    """BYTEARRAY8 stating 2**40 bytes in 20: pickle.py would zero-fill a terabyte before reading; it reads the bytes
    the file holds and finds them missing."""
    path = write_zip_checkpoint(tmp_path / "bytearray8.ckpt", STATE, 5, b"\x96" + (1 << 40).to_bytes(8, "little"))
    with pytest.raises(WeightsError, match="truncated") as caught:
        WeightsFile(path, "lvcd")
    assert "\n" not in str(caught.value)


def test_a_torchscript_archive_is_refused_and_its_code_never_runs(tmp_path, capfd):
    """torch.load hands an archive holding constants.pkl to torch.jit.load, whatever its pickle_module: the old reader
    ran the TorchScript in it (a __setstate__ may loop forever or allocate anything)."""

    class Module(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(2))

        def forward(self, x):
            return x

        @torch.jit.export
        def __getstate__(self):
            return (self.w, self.training)

        @torch.jit.export
        def __setstate__(self, state: tuple[torch.Tensor, bool]):
            print("TORCHSCRIPT RAN")
            self.w = state[0]
            self.training = state[1]

    path = tmp_path / "script.ckpt"
    torch.jit.save(torch.jit.script(Module()), str(path))
    capfd.readouterr()
    torch.load(path, weights_only=False)  # control: the code is live
    assert "TORCHSCRIPT RAN" in capfd.readouterr().out
    with pytest.raises(WeightsError, match="is not a plain checkpoint: its pickle asks for torch.jit.load"):
        WeightsFile(path, "lvcd")
    assert "TORCHSCRIPT RAN" not in capfd.readouterr().out


@pytest.mark.parametrize("variable", ["TORCH_FORCE_WEIGHTS_ONLY_LOAD", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"])
def test_the_environment_does_not_choose_the_unpickler(tmp_path, monkeypatch, variable):
    """torch.load obeys these variables over its arguments: with TORCH_FORCE_WEIGHTS_ONLY_LOAD=1 it refused lvcd's
    pickle_module, and every checkpoint read as "truncated or corrupt". lvcd's reader runs whatever they say: it loads
    a Lightning checkpoint, and refuses bytearray(1000), which torch's weights-only reader accepts."""
    legit = _lightning_checkpoint(tmp_path / "lightning.ckpt")
    blank = tmp_path / "blank.ckpt"
    torch.save({"state_dict": STATE, "blob": _BlankBuffer(bytearray, 1000)}, blank)
    assert len(torch.load(blank, weights_only=True)["blob"]) == 1000  # control: torch's reader would let it in
    monkeypatch.setenv(variable, "1")
    assert sorted(WeightsFile(legit, "lvcd").keys()) == sorted([*STATE, "model.p"])
    with pytest.raises(WeightsError, match="builtins.bytearray \\(a blank buffer of 1,000 bytes"):
        WeightsFile(blank, "lvcd")


class _Point(tuple):
    """A tuple subclass a Lightning checkpoint might carry in its hyper-parameters (an inert stub once loaded)."""


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_large_checkpoints_sharing_references_as_torch_saves_them_still_load(tmp_path, legacy):
    """Thousands of tensors (tied ones shared), an optimizer state for each, tuple keys, sets and frozensets of tuples,
    a list of 100,000 numbers and one text referred to 20,000 times: all within the budget, read in linear time."""
    state = collections.OrderedDict((f"model.block{i}.weight", torch.full((2,), float(i))) for i in range(3000))
    state["model.tied.weight"] = state["model.block0.weight"]
    state._metadata = collections.OrderedDict((f"model.block{i}", {"version": 1}) for i in range(3000))
    path, path_text = tmp_path / "large.ckpt", "/checkpoints/lvcd/run-0001/epoch=0003-step=001200.ckpt"
    optimizer = {
        "state": {i: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(2)} for i in range(3000)},
        "param_groups": [{"lr": 1e-5, "betas": (0.9, 0.999), "params": list(range(3000))}],
    }
    hyper = {
        "grid": {(i, j): i * j for i in range(30) for j in range(30)},
        "ids": set(range(1000)),
        "pairs": frozenset((i, (i, i)) for i in range(100)),
        "history": list(range(100_000)),
        "paths": [path_text] * 20_000,
        "point": _Point((1, 2)),
        "same": [optimizer["param_groups"]] * 3,
    }
    torch.save(
        {"state_dict": state, "optimizer_states": [optimizer], "hyper_parameters": hyper},
        path,
        pickle_protocol=2,
        _use_new_zipfile_serialization=not legacy,
    )  # protocol 2: sets as set() calls
    from lvcd.safe_pickle import weights_only_load

    loaded = weights_only_load(path)
    assert loaded["hyper_parameters"]["grid"][(29, 29)] == 841 and loaded["hyper_parameters"]["ids"] == set(range(1000))
    assert loaded["hyper_parameters"]["pairs"] == hyper["pairs"] and len(loaded["hyper_parameters"]["paths"]) == 20_000
    assert loaded["state_dict"]._metadata == state._metadata and len(loaded["optimizer_states"][0]["state"]) == 3000
    read = WeightsFile(path, "lvcd").read()
    assert len(read) == 3001 and all(torch.equal(read[key], state[key]) for key in state)


def test_a_compressed_archive_is_refused_before_torch_inflates_it(tmp_path):
    """torch.save stores every entry as it is; torch's reader inflates a deflated one whole before anything is
    checked: 16 MB of zeros in a file of ~20 KB (the check after loading refused it only once it was in memory)."""
    import io
    import zipfile

    buffer = io.BytesIO()
    torch.save({"state_dict": {**STATE, "control_model.z": torch.zeros(4 * 1024 * 1024)}}, buffer)
    path = tmp_path / "deflated.ckpt"
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as source, zipfile.ZipFile(path, "w") as archive:
        for info in source.infolist():
            archive.writestr(info.filename, source.read(info), compress_type=zipfile.ZIP_DEFLATED)
    assert path.stat().st_size < 100_000
    _refused_for_memory(path, "is compressed, which torch.save never does")


def test_a_parameter_carrying_attributes_is_refused_and_a_plain_one_loads(tmp_path):
    """A Parameter's pickled state sets any attribute on it (a tensor stashed there escapes the check of what was
    loaded); torch pickles a parameter without attributes with no state, and that one loads."""
    carrying = torch.nn.Parameter(torch.ones(3))
    carrying.stash = torch.zeros(2)
    path = tmp_path / "stateful.ckpt"
    torch.save({"state_dict": {**STATE, "model.p": carrying}}, path)
    _refused_for_memory(path, "_rebuild_parameter_with_state")
    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": {**STATE, "model.p": torch.nn.Parameter(torch.ones(3))}}, plain)
    assert torch.equal(WeightsFile(plain, "lvcd").get("model.p"), torch.ones(3))
