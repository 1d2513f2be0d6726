"""`lvcd convert` knows the size of what it will write from the input files' headers (the chosen --subset and
--dtype) and refuses, in one line saying how much is needed and free, an output whose filesystem lacks the room:
before any tensor is read (the official files: ~12 GB in, several GB out), not when the disk fills mid-write."""

from __future__ import annotations

import shutil
from collections import namedtuple

import pytest
import torch
from typer.testing import CliRunner

import lvcd.weights
from conftest import TINY_CONFIG
from lvcd.cli import app
from lvcd.errors import InputError

runner = CliRunner()
_Usage = namedtuple("_Usage", "total used free")


def _convert(tiny_weights, output, *options: str):
    args = ["convert", "--svd", str(tiny_weights["svd"]), "--lvcd", str(tiny_weights["lvcd"]), "-o", str(output),
            "--config", str(TINY_CONFIG), *options]  # fmt: skip
    return runner.invoke(app, args)


def _disk_with_free(monkeypatch, free: int) -> list:
    """``shutil.disk_usage`` of a disk with ``free`` bytes free; returns the folders it was asked about."""
    asked = []

    def usage(path):
        asked.append(str(path))
        return _Usage(10**12, 10**12 - free, free)

    monkeypatch.setattr(shutil, "disk_usage", usage)
    return asked


def _no_tensor_read(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the weights' tensors were read before the free space was checked")

    monkeypatch.setattr("lvcd.state_dict.WeightsFile.get", refuse)


def test_a_full_disk_is_refused_in_one_line_before_any_tensor_is_read(tmp_path, tiny_weights, monkeypatch):
    asked = _disk_with_free(monkeypatch, 1000)
    _no_tensor_read(monkeypatch)
    output = tmp_path / "new" / "sub" / "lvcd-fp16.safetensors"  # folders the write would create
    result = _convert(tiny_weights, output, "--dtype", "fp16")
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    (line,) = [text for text in result.stderr.splitlines() if text.startswith("error:")]
    assert line == (
        f"error: {output}: the converted weights (831 tensors, float16) need 16.65 MB and {tmp_path} has 1.00 KB "
        "free; free 16.65 MB there or choose another output location."
    )
    assert asked == [str(tmp_path)]  # the nearest folder that exists: where the temporary will be written
    assert list(tmp_path.iterdir()) == []  # no folder made, no temporary left
    with pytest.raises(InputError, match=r"the converted weights \(831 tensors, float32\) need 33\.19 MB"):
        lvcd.weights.convert(tiny_weights["svd"], tiny_weights["lvcd"], output, config=TINY_CONFIG)  # the library's


def test_an_output_to_overwrite_frees_nothing_until_the_new_one_is_complete(tmp_path, tiny_weights, monkeypatch):
    output = tmp_path / "lvcd.safetensors"
    output.write_bytes(b"x" * 20_000_000)  # bigger than the new file, but replaced only once that is written
    _disk_with_free(monkeypatch, 16_000_000)
    _no_tensor_read(monkeypatch)
    result = _convert(tiny_weights, output, "--dtype", "bf16", "--overwrite")
    assert result.exit_code == 2 and "need 16.65 MB and" in result.stderr and "has 16.00 MB free" in result.stderr
    assert output.stat().st_size == 20_000_000 and [p.name for p in tmp_path.iterdir()] == [output.name]


def test_the_size_said_is_the_size_written_and_exactly_that_much_room_is_enough(tmp_path, tiny_weights, monkeypatch):
    needed = 16_647_186  # the bf16 lvcd subset: 16.65 MB
    _disk_with_free(monkeypatch, needed)
    output = tmp_path / "out.safetensors"
    result = _convert(tiny_weights, output, "--dtype", "bf16")
    assert result.exit_code == 0, result.output
    assert output.stat().st_size == needed
    estimated = lvcd.weights.safetensors_size({"w": (2, 3)}, torch.float16, {"k": "v"})
    lvcd.weights.save_safetensors({"w": torch.zeros(2, 3, dtype=torch.float16)}, tmp_path / "w.safetensors",
                                  metadata={"k": "v"})  # fmt: skip
    assert (tmp_path / "w.safetensors").stat().st_size == estimated
