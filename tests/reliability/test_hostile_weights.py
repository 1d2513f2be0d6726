"""Guarantee: weights never execute code. Crafted checkpoints are refused as "not a plain checkpoint" with no side
effect, in both torch formats; real Lightning checkpoints (hyper-parameters, callbacks, numpy scalars, paths) load."""

from __future__ import annotations

import argparse
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
