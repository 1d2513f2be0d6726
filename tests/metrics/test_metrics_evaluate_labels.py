"""`lvcd evaluate` with region label maps: a synthetic root (`lvcd data synth`) found automatically, --labels,
a manifest 'labels' column, per-clip and pooled region accuracy, and one-line errors for bad label maps."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from lvcd.metrics import load_label_maps, with_root_inputs
from lvcd.metrics.clips import ClipSpec
from lvcd.metrics.labels import root_inputs

from .synthetic import write_pngs

SHOT = "heldout_0000000"
SIZE = 32
FRAMES = 15


@pytest.fixture(scope="module")
def synth_root(tmp_path_factory) -> Path:
    """A one-shot synthetic root written by `lvcd data synth`'s writer: img_32, draw_32, label_32."""
    from lvcd.data.synth_set import write_synthetic_set

    root = tmp_path_factory.mktemp("synth")
    write_synthetic_set(root, split="heldout", shots=1, num_frames=FRAMES, size_hw=(SIZE, SIZE), progress=False)
    return root


@pytest.fixture(scope="module")
def cli():
    from lvcd.cli import app

    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["evaluate", "--no-progress", *map(str, args)])


def _frames(folder: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(f).convert("RGB")) for f in sorted(folder.glob("*.png"))])


def _labels(root: Path) -> np.ndarray:
    return np.stack([np.asarray(Image.open(f)) for f in sorted((root / f"label_{SIZE}" / SHOT).glob("*.png"))])


def _recoloured(root: Path, tmp_path: Path) -> tuple[Path, int]:
    """A prediction with the largest region's colour replaced in every frame; returns it and that label."""
    frames, labels = _frames(root / f"img_{SIZE}" / SHOT), _labels(root)
    ids, counts = np.unique(labels, return_counts=True)
    largest = int(ids[counts.argmax()])
    frames[labels == largest] = 255 - frames[labels == largest]  # far from the true colour (> 0.1)
    return write_pngs(tmp_path / "recoloured", frames), largest


def _run(cli, *args) -> dict:
    out = Path(args[args.index("--json") + 1])
    result = cli(*args, "--overwrite")  # the tests score into one file, run after run
    assert result.exit_code == 0, result.output
    return json.loads(out.read_text())


def test_root_inputs_are_found_beside_the_ground_truth(synth_root, tmp_path):
    gt = synth_root / f"img_{SIZE}" / SHOT
    assert root_inputs(gt) == {
        "lineart": synth_root / f"draw_{SIZE}" / SHOT,
        "labels": synth_root / f"label_{SIZE}" / SHOT,
    }
    assert root_inputs(tmp_path) == {} and root_inputs(synth_root / f"img_{SIZE}") == {}
    given = ClipSpec("s", gt, gt, lineart=tmp_path)
    assert with_root_inputs(given).lineart == tmp_path  # a path given is kept
    assert with_root_inputs(given).labels == synth_root / f"label_{SIZE}" / SHOT


def test_label_maps_load_as_ids_and_resize_nearest(synth_root):
    folder = synth_root / f"label_{SIZE}" / SHOT
    labels = load_label_maps(folder, (SIZE, SIZE))
    assert labels.dtype == torch.int64 and labels.shape == (FRAMES, SIZE, SIZE)
    assert torch.equal(labels, torch.from_numpy(_labels(synth_root).astype(np.int64)))
    doubled = load_label_maps(folder, (2 * SIZE, 2 * SIZE))
    assert torch.equal(doubled[:, ::2, ::2], labels) and set(doubled.unique().tolist()) == set(labels.unique().tolist())


def test_cli_on_a_synthetic_root_scores_region_edmd_and_tc(synth_root, cli, tmp_path):
    gt = synth_root / f"img_{SIZE}" / SHOT
    perfect = write_pngs(tmp_path / "perfect", _frames(gt))
    recoloured, _ = _recoloured(synth_root, tmp_path)
    manifest = tmp_path / "clips.json"
    manifest.write_text(json.dumps([{"name": "perfect", "pred": str(perfect), "gt": str(gt)},
                                    {"name": "recoloured", "pred": str(recoloured), "gt": str(gt)}]))  # fmt: skip
    out = tmp_path / "scores.json"
    data = _run(cli, "--manifest", manifest, "--size", SIZE, "--metrics", "psnr,edmd,edmd_gt,tc,region", "--json", out)
    assert data["skipped"] == {}
    good, bad = data["clips"]
    assert good["labels"] == str(synth_root / f"label_{SIZE}" / SHOT)  # found beside the ground truth
    assert good["lineart"] == str(synth_root / f"draw_{SIZE}" / SHOT)
    assert good["metrics"]["region"] == 1.0 and good["metrics"]["tc"] == 1.0 and good["metrics"]["edmd_gt"] == 0.0
    assert good["metrics"]["edmd"] is not None  # the paper's form: against the root's line art
    assert good["details"]["region_correct_area"] == good["details"]["region_area"] > 0
    assert good["samples"]["region"] == good["details"]["region_regions"] >= FRAMES * 2
    assert 0.0 < bad["metrics"]["region"] < 0.8  # the largest region of every frame is wrong
    assert bad["details"]["region_correct"] < bad["details"]["region_regions"]
    pooled = (good["details"]["region_correct_area"] + bad["details"]["region_correct_area"]) / (
        good["details"]["region_area"] + bad["details"]["region_area"]
    )
    assert data["aggregate"]["metrics"]["region"] == pytest.approx(pooled)  # pooled by area, not a mean of clips
    assert data["aggregate"]["samples"]["region"] == 2 * good["details"]["region_regions"]


def test_cli_labels_option_and_no_root_inputs(synth_root, cli, tmp_path):
    gt = write_pngs(tmp_path / "gt", _frames(synth_root / f"img_{SIZE}" / SHOT))  # outside the root: nothing found
    recoloured, _ = _recoloured(synth_root, tmp_path)
    labels = synth_root / f"label_{SIZE}" / SHOT
    out = tmp_path / "scores.json"
    base = ("--pred", recoloured, "--gt", gt, "--size", SIZE, "--metrics", "psnr,region", "--json", out)
    with_labels = _run(cli, *base, "--labels", labels)["clips"][0]
    assert with_labels["labels"] == str(labels) and 0 < with_labels["metrics"]["region"] < 0.8
    assert with_labels["details"]["region_margin_px"] == 1
    without = _run(cli, *base)
    assert without["clips"][0]["metrics"]["region"] is None and "--labels" in without["skipped"]["region"]
    in_root = ("--pred", recoloured, "--gt", synth_root / f"img_{SIZE}" / SHOT, "--size", SIZE, "--json", out)
    assert "region" in _run(cli, *in_root, "--no-root-inputs", "--metrics", "region")["skipped"]
    upscaled = _run(cli, *in_root, "--metrics", "region", "--size", 2 * SIZE)["clips"][0]
    assert upscaled["details"]["region_margin_px"] == 2  # one label-map pixel, scaled with the frames
    assert any("label maps resized from 32x32" in note for note in upscaled["notes"])
    assert upscaled["metrics"]["region"] == pytest.approx(with_labels["metrics"]["region"], abs=0.05)


def _one_line_error(result, *fragments: str) -> None:
    assert result.exit_code == 2, result.output
    message = result.output.strip()
    assert message.startswith("error:") and len(message.splitlines()) == 1, message
    for fragment in fragments:
        assert fragment in message, message


def test_cli_label_errors_are_one_line(synth_root, cli, tmp_path):
    gt = synth_root / f"img_{SIZE}" / SHOT
    pred = write_pngs(tmp_path / "pred", _frames(gt))
    labels = synth_root / f"label_{SIZE}" / SHOT
    common = ("--pred", pred, "--gt", gt, "--metrics", "psnr,region", "--size", SIZE)

    short = tmp_path / "short"
    shutil.copytree(labels, short)
    sorted(short.glob("*.png"))[-1].unlink()
    _one_line_error(cli(*common, "--labels", short), "15 frames but there are 14 label maps")

    small = tmp_path / "small"
    small.mkdir()
    for file in sorted(labels.glob("*.png")):
        Image.open(file).resize((16, 16), Image.NEAREST).save(small / file.name)
    _one_line_error(cli(*common, "--labels", small), "label maps are 16x16", "32x32")

    rgb = tmp_path / "rgb"
    write_pngs(rgb, _frames(gt))
    _one_line_error(cli(*common, "--labels", rgb), "not a label map")

    _one_line_error(cli(*common, "--labels", labels / "000000.png"), "not a folder")
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps([{"pred": str(pred), "gt": str(gt), "labels": str(short)}]))
    _one_line_error(cli("--manifest", manifest, "--labels", labels), "not both")
    _one_line_error(cli("--manifest", manifest, "--metrics", "region"), "there are 14 label maps")
