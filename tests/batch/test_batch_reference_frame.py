"""A manifest's ``reference_frame``: the shot is coloured from that frame both ways, as ``lvcd colorize
--reference-frame`` colours it; its windows toward frame 0 count as finished work; shots without it keep the
fingerprint they always had."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace

import pytest
from typer.testing import CliRunner

from lvcd.batch.layout import _stat, shot_fingerprint
from lvcd.batch.manifest import ShotSettings, read_shots
from lvcd.batch.shot import finished_windows
from lvcd.cli import app
from lvcd.errors import InputError

from .conftest import assert_same_frames, batch_cli, model_args, read_report, shot_entries, write_manifest


def test_a_shot_coloured_from_a_frame_inside_it_equals_colorize(film, tiny_weights, tmp_path):
    shot = {**film["shot15"], "reference_frame": 6}
    result = batch_cli(tiny_weights, write_manifest(tmp_path / "film.json", [shot]), tmp_path / "out")
    assert result.exit_code == 0, result.output
    entry = shot_entries(read_report(tmp_path / "out"))["shot15"]
    assert (entry["status"], entry["frames"], entry["windows"]) == ("done", 15, 2)  # one window each way
    single = tmp_path / "single"
    args = ["colorize", *model_args(tiny_weights), "--quiet", "--reference", shot["reference"], "--lineart"]
    args += [shot["lineart"], "-o", str(single), "--seed", str(shot["seed"]), "--steps", "1", "--reference-frame", "6"]
    assert CliRunner().invoke(app, args).exit_code == 0
    assert_same_frames(tmp_path / "out" / "shot15", single, 15)


def test_a_reference_frame_past_the_shot_fails_that_shot_in_one_line(film, tiny_weights, tmp_path):
    shots = [{**film["shot2"], "reference_frame": 2}, film["shot1"]]
    result = batch_cli(tiny_weights, write_manifest(tmp_path / "film.json", shots), tmp_path / "out")
    entries = shot_entries(read_report(tmp_path / "out"))
    assert entries["shot1"]["status"] == "done"
    assert (
        entries["shot2"]["status"] == "failed" and "reference_frame 2 is outside the shot" in entries["shot2"]["error"]
    )
    assert result.exit_code != 0


def test_windows_toward_frame_0_count_as_finished(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    for name in ("backward-settings.json", "backward-window_000000.safetensors", "backward-window_000001.safetensors"):
        (work / name).write_bytes(b"")
    assert finished_windows(work) == 2  # stopped in the pass toward frame 0: no settings.json yet
    for name in ("settings.json", "window_000000.safetensors"):
        (work / name).write_bytes(b"")
    assert finished_windows(work) == 3


def test_the_manifest_field_and_the_fingerprint(tmp_path, film):
    manifest = write_manifest(tmp_path / "m.json", [{**film["shot15"], "reference_frame": "6"}, film["shot2"]])
    inside, first = read_shots(manifest)
    assert (inside.settings.reference_frame, first.settings.reference_frame) == (6, 0)
    identity = {"svd": None}
    earlier = asdict(first)  # how a shot's fingerprint was computed before the field existed
    del earlier["settings"]["reference_frame"]
    payload = {"shot": earlier, "inputs": [_stat(p) for p in first.inputs], "model": identity, "format": "png"}
    expected = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    assert shot_fingerprint(first, identity, "png") == expected  # earlier batches still count their shots done
    moved = replace(first, settings=replace(first.settings, reference_frame=1))
    assert shot_fingerprint(moved, identity, "png") != expected
    write_manifest(manifest, [{**film["shot2"], "reference_frame": -1}])
    with pytest.raises(InputError, match="reference_frame"):
        read_shots(manifest)
    assert ShotSettings().reference_frame == 0
