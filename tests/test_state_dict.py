"""The one weights reader (format sniffing, unwrapping, restricted loading) and the one key report."""

from __future__ import annotations

import os

import pytest
import torch
from safetensors.torch import save_file

from lvcd.errors import WeightsError
from lvcd.state_dict import KeyReport, WeightsFile, check_keys, read_state_dict, unwrap_state_dict

STATE = {"conv.weight": torch.arange(6.0).reshape(2, 3), "conv.bias": torch.ones(2)}


def _equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("container", ["state_dict", "model", "net", "netG", "generator"])
def test_wrapped_state_dicts_are_unwrapped(container):
    nested = {"epoch": 3, container: {**STATE, "_note": "not a tensor"}, "hyper_parameters": {"lr": 1e-4}}
    assert _equal(unwrap_state_dict(nested), STATE)
    assert _equal(unwrap_state_dict({"state_dict": {"model": STATE}}), STATE)  # nested twice


def test_module_prefix_is_dropped_only_when_every_key_has_it():
    assert _equal(unwrap_state_dict({f"module.{k}": v for k, v in STATE.items()}), STATE)
    mixed = {"module.conv.weight": STATE["conv.weight"], "conv.bias": STATE["conv.bias"]}
    assert set(unwrap_state_dict(mixed)) == set(mixed)
    assert unwrap_state_dict([1, 2]) == {} and unwrap_state_dict({"a": 1}) == {}


@pytest.mark.parametrize("layout", ["zip", "legacy", "safetensors", "safetensors named .pth"])
def test_every_format_is_read_by_its_bytes(tmp_path, layout):
    path = tmp_path / ("w.safetensors" if layout == "safetensors" else "w.pth")
    if layout.startswith("safetensors"):
        save_file(STATE, str(path), metadata={"lvcd_subset": "lvcd"})
    else:
        torch.save({"state_dict": STATE}, path, _use_new_zipfile_serialization=layout == "zip")
    weights = WeightsFile(path, "test")
    assert weights.format == {"zip": "zip", "legacy": "pickle"}.get(layout, "safetensors")
    assert weights.shape("conv.weight") == (2, 3) and len(weights) == 2
    assert _equal(weights.read(), STATE) and _equal(read_state_dict(path, "test"), STATE)
    assert weights.metadata() == ({"lvcd_subset": "lvcd"} if weights.format == "safetensors" else {})


def test_errors_name_the_file_the_role_and_the_hint(tmp_path):
    hint = "Get it from example.org."
    with pytest.raises(WeightsError, match=r"The demo weights file .*absent\.pth does not exist\. Get it from"):
        read_state_dict(tmp_path / "absent.pth", "demo", hint)
    with pytest.raises(WeightsError, match="is a folder; pass the file itself"):
        read_state_dict(tmp_path, "demo", hint)
    fifo = tmp_path / "fifo.pth"
    os.mkfifo(fifo)
    with pytest.raises(WeightsError, match=r"The demo weights path .*fifo\.pth is not a regular file"):
        read_state_dict(fifo, "demo", hint)
    empty = tmp_path / "empty.pth"
    torch.save({"epoch": 3}, empty)
    with pytest.raises(WeightsError, match=r"holds no tensors; it is not a demo weights file\. Get it from"):
        read_state_dict(empty, "demo", hint)


def test_key_report_lists_missing_unexpected_and_mis_shaped_keys():
    expected = {"a": (2, 3), "b": (4,), "c": (1,), **{f"m{i}": (1,) for i in range(7)}}
    found = {
        "a": torch.zeros(3, 2),
        "b": torch.zeros(4),
        "x": torch.zeros(1),
        "bn.num_batches_tracked": torch.zeros(()),
    }
    report = check_keys(found, expected, ignore=lambda key: key.endswith("num_batches_tracked"))
    assert not report.ok
    assert report.missing == ["c", *(f"m{i}" for i in range(7))] and report.unexpected == ["x"]
    assert report.shape_mismatch == [("a", (3, 2), (2, 3))]
    assert report.lines() == [
        "8 missing: c, m0, m1, m2, m3 (+3 more)",
        "1 unexpected: x",
        "shape mismatch a: file (3, 2) vs model (2, 3)",
    ]
    assert check_keys(expected, expected).ok and KeyReport().describe() == ""
