"""`lvcd data prepare | index | inspect` through the typer app, with the tiny official-format svd weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from lvcd.cli import app

from .conftest import TINY_CONFIG

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, ["data", *map(str, args)])


def prepare_args(video, root, svd, *extra):
    return ("prepare", video, "-o", root, "--svd", svd, "--config", TINY_CONFIG, "--size", "32x64"), (
        "--lineart-method",
        "xdog",
        "--seed",
        "7",
        "--batch-size",
        "4",
        "--quiet",
        *extra,
    )


def test_prepare_sharded_then_index_and_inspect(tmp_path, synthetic_mp4, tiny_weights):
    root = tmp_path / "root"
    head, tail = prepare_args(synthetic_mp4, root, tiny_weights["svd"])
    first = invoke(*head, *tail, "--shard", "0", "--num-shards", "2")
    assert first.exit_code == 0, first.output
    assert "1 of 2 clip(s)" in first.output and "lvcd data index" in first.output
    second = invoke(*head, *tail, "--shard", "1", "--num-shards", "2")
    assert second.exit_code == 0, second.output
    index = json.loads((root / "train_clips_hist.json").read_text())
    assert sorted(index) == ["synth_shot/000000-000019", "synth_shot/000028-000045"]
    latent = load_file(str(root / "lat_32" / "synth_shot" / "000003.safetensors"))["latent"]
    assert latent.shape == (4, 4, 8)

    merged = invoke("index", root)
    assert merged.exit_code == 0 and "2 clip(s)" in merged.output
    resumed = invoke(*head, *tail)  # single-process resume over the sharded root: nothing left to do
    assert resumed.exit_code == 0 and "0 frame(s) written, 38 already done" in resumed.output
    summary = invoke("inspect", root, "--size", "32x64")
    assert summary.exit_code == 0 and "2 clip(s), 38 frame(s), 10 training sample(s)" in summary.output
    other_height = invoke("inspect", root)  # 320x576 by default: this root has no frames at that height
    assert (
        other_height.exit_code == 2
        and "no frames at height 320 (img_320/ is missing; it holds img_32)" in other_height.output
    )
    no_frames = invoke("inspect", root, "--size", "32x64", "--num-frames", "0")
    assert no_frames.exit_code == 2 and "--num-frames 0" in no_frames.output


def test_synth_writes_only_into_a_new_folder_or_a_root(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    refused = invoke("synth", tmp_path / "mine", "--shots", "1", "--frames", "15", "--size", "32x32", "--quiet")
    assert refused.exit_code == 2 and "not an lvcd training root" in refused.output
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
    (tmp_path / "a_file").write_text("x")
    on_file = invoke("synth", tmp_path / "a_file", "--shots", "1", "--frames", "15", "--size", "32x32", "--quiet")
    assert on_file.exit_code == 2 and "is a file, not a folder" in on_file.output
    made = invoke("synth", tmp_path / "root", "--shots", "1", "--frames", "15", "--size", "32x32", "--quiet")
    extended = invoke("synth", tmp_path / "root", "--shots", "2", "--frames", "15", "--size", "32x32", "--quiet")
    assert made.exit_code == 0 and extended.exit_code == 0, extended.output  # a root is extended


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--size", "32by64"), "HEIGHTxWIDTH"),
        (("--size", "30x64"), "multiples of 8"),
        (("--shard", "2", "--num-shards", "2"), "Shard 2 of 2"),
        (("--config", "no-such-preset"), "--config no-such-preset"),
        (
            ("--lineart-method", "informative", "--lineart-weights", "missing.pth"),
            "missing.pth does not exist: give sk_model.pth",
        ),
        (("--long-scenes", "drop", "--min-frames", "30", "--max-frames", "20"), "empty"),
    ],
)
def test_prepare_user_errors_exit_2(tmp_path, synthetic_mp4, tiny_weights, args, message):
    head, tail = prepare_args(synthetic_mp4, tmp_path / "root", tiny_weights["svd"])
    result = invoke(*head, *tail, *args)
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and message in result.output
    assert not (tmp_path / "root" / "img_32").exists()


def test_missing_inputs_and_weights_exit_2(tmp_path, synthetic_mp4, monkeypatch):
    no_svd = invoke("prepare", synthetic_mp4, "-o", tmp_path / "root")
    assert no_svd.exit_code == 2 and "--svd is required" in no_svd.output
    bad_svd = invoke("prepare", synthetic_mp4, "-o", tmp_path / "root", "--svd", tmp_path / "svd.safetensors")
    assert bad_svd.exit_code == 2 and "not a file" in bad_svd.output
    missing = invoke("prepare", tmp_path / "nope.mp4", "-o", tmp_path / "root", "--svd", synthetic_mp4)
    assert missing.exit_code == 2 and "does not exist" in missing.output
    monkeypatch.setenv("LVCD_LINEART_WEIGHTS", str(tmp_path / "no_weights_here"))
    no_lineart = invoke("prepare", synthetic_mp4, "-o", tmp_path / "root", "--svd", synthetic_mp4)
    assert no_lineart.exit_code == 2 and "--lineart-weights" in no_lineart.output
    no_index = invoke("index", tmp_path)
    assert no_index.exit_code == 2 and "no shard indexes" in no_index.output
    no_root = invoke("inspect", tmp_path / "absent")
    assert no_root.exit_code == 2 and "not a folder" in no_root.output


def test_a_run_with_no_clips_says_why_fails_and_leaves_no_root(tmp_path, tiny_weights):
    """A 10-frame shot cannot give a 15-frame clip: an error naming the input and the numbers, and nothing left."""
    shot = tmp_path / "short shot"
    shot.mkdir()
    frames = sorted((Path(__file__).parents[1] / "fixtures" / "data" / "shot").glob("*.png"))[:10]
    for frame in frames:
        (shot / frame.name).write_bytes(frame.read_bytes())
    root = tmp_path / "root"
    head, tail = prepare_args(shot, root, tiny_weights["svd"])
    result = invoke(*head, *tail)
    assert result.exit_code == 2, result.output
    assert "no clips" in result.output and "short shot: 10 frames, 0 cuts, longest scene 10" in result.output
    assert "--min-frames 15" in result.output and "Traceback" not in result.output
    assert not root.exists()  # no lvcd_data.json, no scene cache: the root this run started is taken back


def test_a_bad_input_leaves_nothing_in_a_new_root_and_nothing_new_in_a_used_one(tmp_path, tiny_weights):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 200)  # a header, then nothing decodable
    root = tmp_path / "root"
    head, tail = prepare_args(broken, root, tiny_weights["svd"])
    result = invoke(*head, *tail)
    assert result.exit_code == 2 and "broken.mp4" in result.output
    assert not root.exists()
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    result = invoke(*head, *tail)
    assert result.exit_code == 2
    assert [p.name for p in root.iterdir()] == ["notes.txt"]
