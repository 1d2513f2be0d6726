"""Crafted checkpoints: valid weights files whose pickle also tries to run code, in the ways an attacker would.

Each payload, when unpickled without restriction, creates the file ``marker`` (so a test can prove nothing ran).
They are spliced in front of a real ``torch.save`` pickle (``PROTO payload POP original``), so the file still holds
the real tensors and loads fine once the payload is ignored: a reader must refuse the file, not skip the payload.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import torch

MARK, TUPLE, REDUCE, POP, BUILD, NEWOBJ, STOP = b"(", b"t", b"R", b"0", b"b", b"\x81", b"."


def _string(text: str) -> bytes:
    return pickle.dumps(text, protocol=2)[2:-1]  # without PROTO and STOP


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _call(function: bytes, *args: bytes) -> bytes:
    return function + MARK + b"".join(args) + TUPLE + REDUCE


def _shell(marker: Path) -> bytes:
    return _string(f"touch {marker}")


def _legacy_bytes(protocol: int, payload: bytes) -> bytes:
    from torch.serialization import MAGIC_NUMBER, PROTOCOL_VERSION

    header = b"".join(pickle.dumps(x, protocol=2) for x in (MAGIC_NUMBER, PROTOCOL_VERSION, {"little_endian": True}))
    body = b"\x80" + bytes([protocol]) + payload + POP + b"}" + STOP
    return header + body + pickle.dumps([], protocol=2)


def payloads(marker: Path) -> dict[str, tuple[int, bytes, bool]]:
    """name -> (pickle protocol the splice declares, payload opcodes leaving one object on the stack, whether an
    unrestricted unpickler creates ``marker`` with it: the control that proves the payload is live)."""
    python_code = _string(f"__import__('pathlib').Path({str(marker)!r}).touch()")
    system = _global(os.name, "system")
    shell_list = b"]" + MARK + _string("sh") + _string("-c") + _string(f"touch {marker}") + b"e"
    nested = _legacy_bytes(2, _call(system, _shell(marker)))
    return {
        # what torch.save writes for an object whose __reduce__ returns (os.system, ("touch ...",))
        "reduce-os-system": (2, _call(system, _shell(marker)), True),
        "posix-system": (2, _call(_global("posix", "system"), _shell(marker)), True),
        "builtins-eval": (2, _call(_global("builtins", "eval"), python_code), True),
        "builtins-exec": (2, _call(_global("builtins", "exec"), python_code), True),
        # torch._utils._rebuild_tensor.__builtins__.get('eval'): a dotted name walks from an allowed function to eval
        "dotted-builtins-get": (
            4,
            _call(_call(_global("torch._utils", "_rebuild_tensor.__builtins__.get"), _string("eval")), python_code),
            True,
        ),
        "dotted-globals": (
            4,
            _call(_call(_global("torch._utils", "_rebuild_tensor_v2.__globals__.get"), _string("eval")), python_code),
            False,  # the function's globals hold no eval: refused all the same
        ),
        "getattr-import": (
            2,
            _call(
                _call(
                    _global("builtins", "getattr"),
                    _call(_global("builtins", "__import__"), _string("os")),
                    _string("system"),
                ),
                _shell(marker),
            ),
            True,
        ),  # fmt: skip
        "subprocess-popen": (2, _call(_global("subprocess", "Popen"), shell_list), True),
        # torch's own helper that calls an unrestricted torch.load on bytes carried by the pickle
        "nested-torch-load": (
            2,
            _call(_global("torch.storage", "_load_from_bytes"), pickle.dumps(nested, 2)[2:-1]),
            True,
        ),
        # protocol 0's INST opcode instantiates (calls) the named global
        "inst-opcode": (2, MARK + _shell(marker) + b"i" + os.name.encode() + b"\nsystem\n", True),
        # _rebuild_from_type_v2 is allowed, and calls its first argument: that must not reach os.system
        "rebuild-from-type-calls": (
            2,
            _call(
                _global("torch._tensor", "_rebuild_from_type_v2"),
                system,
                _global("torch", "Tensor"),
                MARK + _shell(marker) + TUPLE,
                b"}",
            ),
            True,
        ),  # fmt: skip
        # a stand-in object made without a call (NEWOBJ), then called
        "call-a-made-object": (2, _call(system + b")" + NEWOBJ, _shell(marker)), False),
    }


def _spliced(original: bytes, protocol: int, payload: bytes) -> bytes:
    assert original[:1] == b"\x80", "expected a protocol 2+ pickle"
    return b"\x80" + bytes([protocol]) + payload + POP + original[2:]


def write_zip_checkpoint(path: Path, state: dict, protocol: int, payload: bytes) -> Path:
    """A torch.save (zip) checkpoint of ``{'state_dict': state, 'epoch': 3}`` whose data.pkl starts with ``payload``."""
    clean = path.with_name(path.name + ".clean")
    torch.save({"state_dict": state, "epoch": 3}, clean)
    with zipfile.ZipFile(clean) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith("/data.pkl"):
                data = _spliced(data, protocol, payload)
            target.writestr(info, data)
    clean.unlink()
    return path


def write_legacy_checkpoint(path: Path, protocol: int, payload: bytes) -> Path:
    """A pre-1.6 torch.save pickle (magic number, protocol, sys info, object) whose object is ``payload``."""
    path.write_bytes(_legacy_bytes(protocol, payload))
    return path
