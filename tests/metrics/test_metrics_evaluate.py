"""Clip specs, manifests, FVD windows, the evaluation driver and `lvcd evaluate` on PNG folders and an mp4.

The CLI runs on frame folders in the layout `lvcd colorize` writes (00000.png, ...); an end-to-end test on real
`lvcd colorize` output is to be added once that command exists.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from lvcd.errors import InputError
from lvcd.metrics import (
    ALL_METRICS,
    DEFAULT_METRICS,
    PAPER_METRICS,
    ClipSpec,
    EvalSettings,
    MetricTools,
    evaluate_clips,
    format_table,
    fvd_windows,
    parse_metrics,
    parse_size,
    read_manifest,
    report_to_dict,
)
from lvcd.metrics.clips import resize_frames
from lvcd.metrics.flow import DISFlow
from lvcd.metrics.i3d import load_i3d
from lvcd.metrics.inception import FIDInceptionV3, load_inception

from .synthetic import dark_line_sketch, moving_texture, write_mp4, write_pngs


def test_parse_size_and_metrics():
    assert parse_size("256") == (256, 256)
    assert parse_size("256x448") == (256, 448)
    with pytest.raises(InputError):
        parse_size("big")
    assert parse_metrics("tc,psnr") == ("psnr", "tc")
    assert parse_metrics("all") == ALL_METRICS and "tc_mse" in ALL_METRICS
    assert parse_metrics(None) == parse_metrics("default") == DEFAULT_METRICS and "tc_mse" not in DEFAULT_METRICS
    assert parse_metrics("paper") == PAPER_METRICS == ("psnr", "ssim", "lpips", "fid", "fvd", "edmd", "tc")
    with pytest.raises(InputError, match="unknown metric"):
        parse_metrics("psnr,fvdd")
    with pytest.raises(InputError, match="^no metric given; choose from psnr"):
        parse_metrics(" , ")


def test_fvd_windows():
    assert fvd_windows(40) == [list(range(16)), list(range(16, 32))]
    assert fvd_windows(40, stride=8)[-1] == list(range(24, 40))
    assert fvd_windows(5, length=8) == [[0, 1, 2, 3, 4, 4, 4, 4]]


def test_resize_rounds_to_uint8_and_keeps_exact_sizes():
    frames = torch.randint(0, 256, (2, 3, 40, 60), dtype=torch.uint8)
    assert resize_frames(frames, (40, 60)) is frames
    resized = resize_frames(frames, (32, 32))
    assert resized.dtype == torch.uint8 and resized.shape == (2, 3, 32, 32)


def test_manifest_json_and_csv(tmp_path):
    (tmp_path / "m.json").write_text(
        json.dumps(
            {"clips": [{"name": "a", "pred": "p1", "gt": "/abs/g1"}, {"pred": "p2", "gt": "g2", "lineart": "l2"}]}
        )
    )
    specs = read_manifest(tmp_path / "m.json")
    assert specs[0] == ClipSpec("a", tmp_path / "p1", Path("/abs/g1"))
    assert specs[1].name == "p2" and specs[1].lineart == tmp_path / "l2"
    (tmp_path / "m.csv").write_text("name,pred,gt\nx,p,g\ny,q,h\n")
    assert [s.name for s in read_manifest(tmp_path / "m.csv")] == ["x", "y"]
    (tmp_path / "dup.json").write_text(json.dumps([{"pred": "p", "gt": "g"}, {"pred": "p", "gt": "h"}]))
    with pytest.raises(InputError, match="repeats clip names"):
        read_manifest(tmp_path / "dup.json")
    (tmp_path / "bad.json").write_text(json.dumps([{"pred": "p"}]))
    with pytest.raises(InputError, match="lacks gt"):
        read_manifest(tmp_path / "bad.json")
    (tmp_path / "typo.json").write_text(json.dumps([{"pred": "p", "gt": "g", "line_art": "l"}]))
    with pytest.raises(InputError, match="unknown field.s. line_art; the fields are name, pred, gt, lineart, labels"):
        read_manifest(tmp_path / "typo.json")  # would skip EDMD without a word
    (tmp_path / "extra.csv").write_text("name,pred,gt\nx,p,g,l\n")
    with pytest.raises(InputError, match=r"more values than the header has columns \('l'\)"):
        read_manifest(tmp_path / "extra.csv")


def _shot(tmp_path, frames=20, flicker=0.0, seed=0):
    gt = moving_texture(frames=frames, height=48, width=64, seed=seed)
    rng = np.random.default_rng(seed + 1)
    offsets = rng.normal(0, flicker * 255, (frames, 1, 1, 3))
    pred = np.clip(gt + offsets, 0, 255).astype(np.uint8)
    return write_pngs(tmp_path / f"pred{seed}", pred), write_pngs(tmp_path / f"gt{seed}", gt)


def test_evaluate_identical_clip_with_every_metric(tmp_path, tiny_torchscripts, lpips_files):
    from lvcd.metrics.lpips import load_lpips

    pred, gt = _shot(tmp_path, frames=20)
    lpips = load_lpips(lpips_files)
    tools = MetricTools(
        lpips=lpips,
        inception=load_inception(tiny_torchscripts["inception"], allow_torchscript=True),
        i3d=load_i3d(tiny_torchscripts["i3d"], allow_torchscript=True),
        sketch=dark_line_sketch,
        flow=DISFlow(),
    )
    settings = EvalSettings(size=(48, 64), fvd_clip_length=8, metrics=ALL_METRICS)
    report = evaluate_clips([ClipSpec("same", gt, gt)], tools, settings, progress=False)
    clip = report.clips[0].metrics
    assert clip["psnr"] == 100.0 and clip["ssim"] == pytest.approx(1.0)
    assert clip["lpips"] == 0.0 and clip["edmd_gt"] == 0.0 and clip["tc"] == 1.0 and clip["tc_mse"] == 1.0
    assert clip.get("edmd") is None and "--lineart" in report.skipped["edmd"]  # no input line art: only the variant
    assert clip.get("region") is None and "--labels" in report.skipped["region"]
    assert clip["fid"] == pytest.approx(0.0, abs=1e-6) and clip["fvd"] == pytest.approx(0.0, abs=1e-6)
    assert report.aggregate_samples == {"fid": 20, "fvd": 2}

    flicker = evaluate_clips(
        [ClipSpec("flicker", *_shot(tmp_path, frames=20, flicker=0.05))], tools, settings, progress=False
    )
    worse = flicker.clips[0].metrics
    assert worse["psnr"] < 40 and worse["ssim"] < 1 and worse["lpips"] > 0 and worse["tc"] > 1 and worse["tc_mse"] > 1
    assert worse["fid"] > 0 and worse["fvd"] > 0


def test_skipped_metrics_are_reported_not_computed(tmp_path):
    pred, gt = _shot(tmp_path, frames=4, flicker=0.02)
    tools = MetricTools(skipped={"lpips": "no weights"})
    report = evaluate_clips([ClipSpec("s", pred, gt)], tools, EvalSettings(metrics=("psnr", "lpips")), progress=False)
    data = report_to_dict(report)
    assert data["skipped"] == {"lpips": "no weights"}
    assert data["clips"][0]["metrics"]["lpips"] is None and data["clips"][0]["metrics"]["psnr"] > 20
    assert "skipped lpips: no weights" in format_table(report)


def test_frame_count_mismatch_is_an_input_error(tmp_path):
    pred, gt = _shot(tmp_path, frames=5)
    (gt / "00004.png").unlink()
    with pytest.raises(InputError, match="5 frames but the ground truth has 4"):
        evaluate_clips([ClipSpec("c", pred, gt)], MetricTools(), EvalSettings(metrics=("psnr",)), progress=False)


def test_a_damaged_frame_of_a_later_clip_stops_the_run_before_any_clip_is_scored(tmp_path, monkeypatch):
    """Clips are scored in manifest order; a truncated frame in the last one used to surface only when its turn came,
    after every earlier clip was scored (hours, with the network metrics), and all of it was lost."""
    import lvcd.metrics.evaluate as evaluate

    pred, gt = _shot(tmp_path, frames=5)
    broken_pred, broken_gt = _shot(tmp_path / "b", frames=5)
    data = (broken_gt / "00003.png").read_bytes()
    (broken_gt / "00003.png").write_bytes(data[: len(data) // 2])
    scored = []
    monkeypatch.setattr(evaluate, "load_clip", lambda spec, size: scored.append(spec.name))
    specs = [ClipSpec("good", pred, gt), ClipSpec("broken", broken_pred, broken_gt)]
    with pytest.raises(InputError, match=r"clip 'broken': .*00003.png: the image data is damaged") as refused:
        evaluate_clips(specs, MetricTools(), EvalSettings(metrics=("psnr",)), progress=False)
    assert scored == [] and "\n" not in str(refused.value)


# --- CLI --------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli():
    from lvcd.cli import app

    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["evaluate", "--no-progress", *map(str, args)])


def test_cli_on_png_folders_and_an_mp4_via_manifest(tmp_path, cli, tiny_torchscripts, lpips_files):
    pred_a, gt_a = _shot(tmp_path, frames=18, flicker=0.03, seed=0)
    gt_b_frames = moving_texture(frames=18, height=48, width=64, seed=5)
    write_pngs(tmp_path / "gt_b", gt_b_frames)
    write_mp4(tmp_path / "pred_b.mp4", gt_b_frames)
    manifest = tmp_path / "clips.json"
    manifest.write_text(
        json.dumps(
            [
                {"name": "folders", "pred": pred_a.name, "gt": gt_a.name},
                {"name": "video", "pred": "pred_b.mp4", "gt": "gt_b", "lineart": "gt_b"},
            ]
        )
    )
    out = tmp_path / "results" / "scores.json"
    result = cli(
        "--manifest",
        manifest,
        "--size",
        "48x64",
        "--json",
        out,
        "--lpips-weights",
        lpips_files[0],
        "--lpips-weights",
        lpips_files[1],
        "--inception-weights",
        tiny_torchscripts["inception"],
        "--i3d-weights",
        tiny_torchscripts["i3d"],
        "--allow-torchscript",
    )
    assert result.exit_code == 0, result.output
    assert "folders" in result.output and "video" in result.output and "ALL" in result.output
    data = json.loads(out.read_text())
    assert data["schema"] == "lvcd.evaluate/2" and list(data["skipped"]) == ["region"]  # no label maps given
    assert list(data["settings"]["size"]) == [48, 64] and data["settings"]["sketch_method"] == "xdog"
    assert list(data["aggregate"]["metrics"]) == list(DEFAULT_METRICS)
    assert data["aggregate"]["samples"] == {"fid": 36, "fvd": 2}
    video = data["clips"][1]["metrics"]
    assert video["psnr"] > 30  # a near-lossless mp4 of the ground truth
    assert video["edmd"] is not None and data["clips"][0]["metrics"]["edmd"] is None  # only the clip with line art
    assert data["aggregate"]["metrics"]["edmd"] == pytest.approx(video["edmd"])
    assert "edmd: over the 1 of 2 clips that have lineart" in data["aggregate"]["notes"]
    assert data["aggregate"]["metrics"]["fvd"] is not None
    assert data["clips"][0]["metrics"]["tc"] > data["clips"][1]["metrics"]["tc"]  # the flickering clip
    assert len(data["clips"][0]["per_frame"]["psnr"]) == 18
    assert [p.name for p in out.parent.iterdir()] == ["scores.json"]  # atomic: no temporary left


def test_cli_single_pair_skips_metrics_without_weights(tmp_path, cli):
    pred, gt = _shot(tmp_path, frames=4, flicker=0.02)
    result = cli("--pred", pred, "--gt", gt, "--metrics", "psnr,ssim,lpips,fid", "--size", "32")
    assert result.exit_code == 0, result.output
    assert "skipped lpips" in result.output and "skipped fid" in result.output
    assert math.isfinite(float(result.output.splitlines()[2].split()[2]))


def test_cli_user_errors_exit_2_with_one_line(tmp_path, cli):
    pred, gt = _shot(tmp_path, frames=5)
    (gt / "00004.png").unlink()
    result = cli("--pred", pred, "--gt", gt, "--metrics", "psnr")
    assert result.exit_code == 2
    assert result.output.strip().startswith("error:") and len(result.output.strip().splitlines()) == 1
    assert cli("--pred", pred).exit_code == 2
    assert cli("--pred", pred, "--gt", gt, "--inception-weights", tmp_path / "nope.pth").exit_code == 2
    assert cli("--pred", pred, "--gt", gt, "--flow", "raft").exit_code == 2


def test_build_tools_finds_weights_by_name_and_skips_the_rest(tmp_path, tiny_torchscripts, lpips_files):
    import shutil

    from lvcd.metrics import build_tools

    for file in lpips_files:
        shutil.copy(file, tmp_path / file.name)
    shutil.copy(tiny_torchscripts["inception"], tmp_path / "inception-2015-12-05.pt")
    tools = build_tools(("lpips", "fid", "fvd", "tc"), weights_dir=tmp_path, allow_torchscript=True)
    assert tools.lpips is not None and tools.inception is not None and tools.flow is not None
    assert set(tools.skipped) == {"fvd"} and "--i3d-weights" in tools.skipped["fvd"]
    # Not allowed: the TorchScript found is passed over (its metric skipped, saying why), never run
    tools = build_tools(("lpips", "fid", "tc"), weights_dir=tmp_path)
    assert (
        tools.inception is None
        and "inception-2015-12-05.pt in the weights folder is a TorchScript" in (tools.skipped["fid"])
    )
    torch.save(FIDInceptionV3().state_dict(), tmp_path / "pt_inception-2015-12-05-6726825d.pth")
    tools = build_tools(("fid",), weights_dir=tmp_path)  # the state dict beside it is taken instead
    assert tools.inception.source == "state_dict" and not tools.skipped


def test_metrics_without_a_tool_are_skipped(tmp_path):
    pred, gt = _shot(tmp_path, frames=3)
    report = evaluate_clips(
        [ClipSpec("s", pred, gt)], MetricTools(), EvalSettings(metrics=("psnr", "fid")), progress=False
    )
    assert set(report.skipped) == {"fid"} and report.clips[0].metrics["psnr"] > 0


def test_cli_runs_a_torchscript_file_only_when_allowed(tmp_path, cli, tiny_torchscripts):
    pred, gt = _shot(tmp_path, frames=4)
    args = ["--pred", pred, "--gt", gt, "--metrics", "psnr,fid", "--size", "32", "--inception-weights"]
    refused = cli(*args, tiny_torchscripts["inception"])
    assert refused.exit_code == 2 and len(refused.output.strip().splitlines()) == 1
    assert "is a TorchScript archive" in refused.output and "--allow-torchscript" in refused.output
    allowed = cli(*args, tiny_torchscripts["inception"], "--allow-torchscript")
    assert allowed.exit_code == 0, allowed.output


def test_choices_made_for_the_user_are_said_and_consent_is_asked_first(tmp_path, tiny_torchscripts, monkeypatch):
    """Both I3D files in the weights folder, no --allow-torchscript: the state dict runs and a note (printed with the
    results) says the original FVD network was passed over. A TorchScript file given without consent is refused
    before any other network loads."""
    import shutil

    import lvcd.metrics.lpips
    from lvcd.metrics import build_tools
    from lvcd.metrics.i3d import InceptionI3d

    folder = tmp_path / "weights"
    folder.mkdir()
    shutil.copy(tiny_torchscripts["i3d"], folder / "i3d_torchscript.pt")
    torch.save(InceptionI3d().state_dict(), folder / "i3d_pretrained_400.pt")
    tools = build_tools(("psnr", "fvd"), weights_dir=folder)
    assert tools.i3d.source == "state_dict" and "the two give different FVD values" in tools.notes[0]
    pred, gt = _shot(tmp_path, frames=3)
    report = evaluate_clips([ClipSpec("a", pred, gt)], MetricTools(notes=list(tools.notes)),
                            EvalSettings(size=(32, 32), metrics=("psnr",)), progress=False)  # fmt: skip
    assert f"note: {tools.notes[0]}" in format_table(report)

    def no_loading(*args, **kwargs):
        raise AssertionError("a network was loaded before consent was checked")

    monkeypatch.setattr(lvcd.metrics.lpips, "load_lpips", no_loading)
    with pytest.raises(InputError, match="TorchScript archive .FVD I3D."):
        build_tools(("lpips", "fvd"), lpips_weights=["alex.pth"], i3d_weights=tiny_torchscripts["i3d"])
