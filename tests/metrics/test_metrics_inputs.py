"""What `lvcd evaluate` scores and says about it: frames of other sizes or aspect ratios than the ground truth, leaving
out the first frames (--skip-frames), and the flow and sketch extractor named where they are not the paper's."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lvcd.errors import InputError
from lvcd.metrics import ClipSpec, EvalSettings, MetricTools, evaluate_clips, format_table, report_to_dict

from .synthetic import moving_texture, write_pngs


@pytest.fixture(scope="module")
def cli():
    from lvcd.cli import app

    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["evaluate", "--no-progress", *map(str, args)])


def _resized(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    from lvcd.metrics.clips import resize_frames

    tensor = torch.from_numpy(frames).permute(0, 3, 1, 2)
    return resize_frames(tensor, (height, width)).permute(0, 2, 3, 1).numpy()


def test_a_prediction_of_another_aspect_ratio_is_refused_in_one_line(tmp_path, cli):
    """Both used to be stretched to 256x256 without a word, so pixels that do not correspond were compared."""
    gt_frames = moving_texture(frames=3, height=48, width=64)
    gt = write_pngs(tmp_path / "gt", gt_frames)
    pred = write_pngs(tmp_path / "pred", _resized(gt_frames, 48, 48))
    message = r"clip 'pred': the prediction is 48x48 but the ground truth is 64x48 .* resize one to the other's size"
    with pytest.raises(InputError, match=message):
        evaluate_clips([ClipSpec("pred", pred, gt)], MetricTools(), EvalSettings(metrics=("psnr",)), progress=False)
    result = cli("--pred", pred, "--gt", gt, "--metrics", "psnr")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "another aspect ratio" in result.output


def test_a_prediction_of_another_size_and_the_same_aspect_is_scored_with_a_note(tmp_path):
    """The same pictures at 128x96 and 64x48 both resized to 256x256 score below the same pictures at one size, so
    the report says the sizes differ."""
    gt_frames = moving_texture(frames=3, height=48, width=64)
    gt = write_pngs(tmp_path / "gt", gt_frames)
    bigger = write_pngs(tmp_path / "bigger", _resized(gt_frames, 96, 128))
    settings = EvalSettings(metrics=("psnr",))
    same = evaluate_clips([ClipSpec("same", gt, gt)], MetricTools(), settings, progress=False)
    assert same.clips[0].notes == []
    report = evaluate_clips([ClipSpec("bigger", bigger, gt)], MetricTools(), settings, progress=False)
    assert report.clips[0].metrics["psnr"] < 50  # identical pictures, yet far from the 100 dB of one size
    note = "the prediction is 128x96 but the ground truth 64x48: each was resized to 256x256 from its own size"
    assert note in report.clips[0].notes[0] and f"note (bigger): {note}" in format_table(report)


def _reference_then_shot(tmp_path) -> tuple:
    """A prediction whose frame 0 is the ground truth's exactly (the reference frame) and the rest off by 20 levels."""
    gt_frames = moving_texture(frames=6, height=48, width=64)
    pred_frames = np.clip(gt_frames.astype(int) + 20, 0, 255).astype(np.uint8)
    pred_frames[0] = gt_frames[0]
    return write_pngs(tmp_path / "pred", pred_frames), write_pngs(tmp_path / "gt", gt_frames)


def test_skip_frames_leaves_out_the_reference_frame_everywhere(tmp_path, cli):
    """lvcd's output starts with the reference itself; scoring it flatters PSNR, SSIM and LPIPS, and no option left
    it out."""
    pred, gt = _reference_then_shot(tmp_path)
    metrics = ("psnr", "ssim", "tc")
    settings = EvalSettings(size=(48, 64), metrics=metrics, skip_frames=1)
    tools = MetricTools(flow=lambda a, b: torch.zeros(a.shape[0], 2, *a.shape[-2:]))
    skipped = evaluate_clips([ClipSpec("shot", pred, gt)], tools, settings, progress=False)
    every = evaluate_clips([ClipSpec("shot", pred, gt)], tools, EvalSettings(size=(48, 64), metrics=metrics), False)
    assert skipped.clips[0].frames == 5 and len(skipped.clips[0].per_frame["psnr"]) == 5
    assert skipped.clips[0].per_frame["psnr"] == every.clips[0].per_frame["psnr"][1:]
    assert skipped.clips[0].metrics["psnr"] < every.clips[0].metrics["psnr"]
    assert report_to_dict(skipped)["settings"]["skip_frames"] == 1
    assert "frames: the first 1 of every clip left out (--skip-frames)" in format_table(skipped)

    out = tmp_path / "scores.json"
    result = cli(
        "--pred", pred, "--gt", gt, "--metrics", "psnr", "--size", "48x64", "--skip-frames", "1", "--json", out
    )
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["settings"]["skip_frames"] == 1 and data["clips"][0]["frames"] == 5
    assert data["clips"][0]["metrics"]["psnr"] == pytest.approx(skipped.clips[0].metrics["psnr"])


def test_skipping_every_frame_is_refused_in_one_line(tmp_path, cli):
    pred, gt = _reference_then_shot(tmp_path)
    result = cli("--pred", pred, "--gt", gt, "--metrics", "psnr", "--skip-frames", "6")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "has 6 frames, and skipping the first 6 (--skip-frames) leaves none to score" in result.output


def test_the_table_says_when_flow_and_sketches_are_not_the_papers(tmp_path, cli):
    """With no RAFT or informative-drawings weights, TC ran on OpenCV DIS flow and EDMD on XDoG sketches, which only
    the JSON recorded; the printed values looked like the paper's."""
    pred, gt = _reference_then_shot(tmp_path)
    result = cli("--pred", pred, "--gt", gt, "--metrics", "psnr,tc,edmd_gt", "--size", "64")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "tc flow: dis (the paper uses RAFT; values not comparable with its tables)" in lines
    assert "edmd sketches: xdog (the paper: informative-drawings; not comparable)" in lines
    quiet = cli("--pred", pred, "--gt", gt, "--metrics", "psnr", "--size", "64")  # neither metric: neither line
    assert "tc flow" not in quiet.output and "edmd sketches" not in quiet.output
