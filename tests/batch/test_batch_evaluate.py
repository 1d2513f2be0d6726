"""`lvcd batch --evaluate` after the batch, without a model (fast): each clip read through once to check it and once to
score it, and a clip found unusable only then left out with a note while the others are scored."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lvcd.batch.evaluate import evaluate_batch
from lvcd.batch.layout import BatchLayout
from lvcd.batch.report import BatchReport, new_entry
from lvcd.io import frames as frames_module
from lvcd.metrics import EvalSettings, MetricTools


def _frames(folder: Path, count: int, value: int) -> Path:
    folder.mkdir(parents=True)
    for index in range(count):
        Image.fromarray(np.full((16, 16, 3), value + index, np.uint8)).save(folder / f"{index:03d}.png")
    return folder


def _finished_batch(tmp_path: Path, gt_frames: dict[str, int]) -> tuple[BatchReport, BatchLayout, dict]:
    """A finished PNG batch of two-frame shots and, per shot, its ground truth of ``gt_frames[name]`` frames."""
    layout = BatchLayout(tmp_path / "out", "png")
    entries = {}
    truth = {}
    for name, count in gt_frames.items():
        _frames(layout.output(name), 2, 100)
        entries[name] = {**new_entry(name, name), "status": "done", "frames": 2}
        truth[name] = (_frames(tmp_path / "gt" / name, count, 90), None)
    return BatchReport("film.json", layout.outdir, "local", entries), layout, truth


def _count_reads(monkeypatch) -> tuple[Counter, Counter]:
    """How often each folder of frames is read through to check it, and each frame file decoded."""
    checked, decoded = Counter(), Counter()
    check_intact, load_image = frames_module._FolderSource.check_intact, frames_module.load_image

    def counted_check(source):
        checked[source.path] += 1
        return check_intact(source)

    def counted_load(path):
        decoded[Path(path)] += 1
        return load_image(path)

    monkeypatch.setattr(frames_module._FolderSource, "check_intact", counted_check)
    monkeypatch.setattr(frames_module, "load_image", counted_load)
    return checked, decoded


def test_each_clip_is_checked_once_and_decoded_once_after_the_batch(tmp_path, monkeypatch):
    """The batch checked every clip itself, then lvcd evaluate's scoring checked it again before decoding it: every
    frame file of every prediction and ground truth was read through twice before it was scored."""
    report, layout, truth = _finished_batch(tmp_path, {"a": 2, "b": 2})
    checked, decoded = _count_reads(monkeypatch)
    settings = EvalSettings(size=(16, 16), metrics=("psnr",))
    evaluation, notes = evaluate_batch(report, layout, truth, MetricTools(), settings, progress=False)
    assert [clip.spec.name for clip in evaluation.clips] == ["a", "b"] and notes == []
    folders = [layout.output("a"), layout.output("b"), truth["a"][0], truth["b"][0]]
    assert checked == Counter({folder: 1 for folder in folders})
    assert decoded == Counter({folder / f"{index:03d}.png": 1 for folder in folders for index in range(2)})
    assert report.evaluation["clips"] == 2 and layout.evaluation_path.is_file()


def test_a_clip_found_unusable_when_scored_is_left_out_with_a_note_and_the_others_scored(tmp_path):
    report, layout, truth = _finished_batch(tmp_path, {"a": 2, "b": 1, "c": 2})
    report.shots["c"]["status"] = "failed"
    settings = EvalSettings(size=(16, 16), metrics=("psnr",))
    evaluation, notes = evaluate_batch(report, layout, truth, MetricTools(), settings, progress=False)
    assert [clip.spec.name for clip in evaluation.clips] == ["a"]
    assert notes == [
        "not evaluated (no output): c",
        "not evaluated: clip 'b': the prediction has 2 frames but the ground truth has 1 frames; metrics compare "
        "frame t with frame t, so give frame-aligned sequences of equal length",
    ]
    assert report.evaluation["clips"] == 1 and report.evaluation["notes"] == notes


def _batch_cli_without_model(monkeypatch, tmp_path: Path, *args: str):
    """``lvcd batch`` on a shots manifest (line art of three frames per shot) with ``--evaluate``, where the batch
    itself only writes each shot's output (ground truth and line art fixed, frame 0 the reference's colour): no
    model runs, the evaluation is the real one."""
    import json

    from typer.testing import CliRunner

    from lvcd.cli import app

    shots = []
    for name in ("a", "b"):
        lineart = tmp_path / "lineart" / name
        lineart.mkdir(parents=True)
        for index in range(3):
            frame = np.full((16, 16, 3), 255, np.uint8)
            frame[:, 4 + 3 * index] = 0  # a vertical line that moves: line art of its own for every frame
            Image.fromarray(frame).save(lineart / f"{index:03d}.png")
        Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(tmp_path / f"{name}_ref.png")
        shots.append({"name": name, "reference": f"{name}_ref.png", "lineart": f"lineart/{name}"})
        _frames(tmp_path / "gt" / name, 3, 90)
    (tmp_path / "shots.json").write_text(json.dumps(shots))
    (tmp_path / "gt.json").write_text(json.dumps([{"name": s["name"], "gt": f"gt/{s['name']}"} for s in shots]))

    def finished_batch(shots, outdir, pool, identity, options, claim=None):
        layout = BatchLayout(outdir, options.output_format)
        entries = {}
        for shot in shots:
            folder = layout.output(shot.name)
            folder.mkdir(parents=True)
            for index, value in enumerate((90, 200, 30)):  # frame 0 exact, the others far off
                Image.fromarray(np.full((16, 16, 3), value, np.uint8)).save(folder / f"{index:03d}.png")
            entries[shot.name] = {**new_entry(shot.name, folder.name), "status": "done", "frames": 3}
        return BatchReport(options.manifest, layout.outdir, "local", entries)

    monkeypatch.setattr("lvcd.batch.run_batch", finished_batch)
    monkeypatch.setattr("lvcd.cli.batch._pool", lambda opts, model: None)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app,
        ["batch", "shots.json", "-o", "out", "--model", "demo", "--format", "png", "--evaluate", "gt.json", "-q"]
        + ["--eval-size", "32", *args],
    )
    assert result.exit_code == 0, result.output
    return result, json.loads((tmp_path / "out" / "evaluation.json").read_text())


def test_batch_evaluate_skips_the_first_frames_as_lvcd_evaluate_does(monkeypatch, tmp_path):
    """lvcd batch --evaluate had no --skip-frames: frame 0 (the reference itself) could not be left out. Now it
    has lvcd evaluate's option, with lvcd evaluate's default (0: every frame scored)."""
    import typer

    from lvcd.cli import app

    commands = typer.main.get_command(app).commands
    defaults = {
        name: next(p.default for p in commands[name].params if "--skip-frames" in p.opts)
        for name in ("batch", "evaluate")
    }
    assert defaults == {"batch": 0, "evaluate": 0}

    _, every = _batch_cli_without_model(monkeypatch, tmp_path / "every", "--metrics", "psnr")
    _, skipped = _batch_cli_without_model(monkeypatch, tmp_path / "skipped", "--metrics", "psnr", "--skip-frames", "1")
    assert every["settings"]["skip_frames"] == 0 and skipped["settings"]["skip_frames"] == 1
    assert [clip["frames"] for clip in every["clips"]] == [3, 3]
    assert [clip["frames"] for clip in skipped["clips"]] == [2, 2]
    # the exact frame 0 (infinite PSNR, capped) no longer lifts the mean
    assert skipped["aggregate"]["metrics"]["psnr"] < every["aggregate"]["metrics"]["psnr"]


def test_batch_evaluate_takes_edmd_line_art_from_the_shots_manifest(monkeypatch, tmp_path):
    """The ground-truth manifest names no line art, the shots manifest does: EDMD was skipped ("no input line art");
    now each shot is scored against the line art it was coloured from."""
    result, evaluation = _batch_cli_without_model(monkeypatch, tmp_path, "--metrics", "paper")
    assert "edmd" not in evaluation["skipped"] and "no input line art" not in result.output, result.output
    assert [clip["metrics"]["edmd"] >= 0 for clip in evaluation["clips"]] == [True, True]
    assert evaluation["aggregate"]["metrics"]["edmd"] >= 0
    assert [Path(clip["lineart"]) for clip in evaluation["clips"]] == [
        (tmp_path / "lineart" / name).resolve() for name in ("a", "b")
    ]


def test_line_art_given_in_the_ground_truth_manifest_is_kept(tmp_path):
    from lvcd.batch.evaluate import with_shot_lineart
    from lvcd.batch.manifest import ShotSettings, ShotSpec

    shots = [ShotSpec(name, tmp_path / "ref.png", tmp_path / f"{name}_lines", (), ShotSettings()) for name in "ab"]
    truth = {"a": (tmp_path / "gt_a", tmp_path / "own_lines"), "b": (tmp_path / "gt_b", None)}
    assert with_shot_lineart(truth, shots) == {
        "a": (tmp_path / "gt_a", tmp_path / "own_lines"),
        "b": (tmp_path / "gt_b", tmp_path / "b_lines"),
    }


def test_skip_frames_that_leave_a_shot_nothing_are_refused_before_the_batch(tmp_path):
    from lvcd.batch.evaluate import check_ground_truth
    from lvcd.batch.manifest import ShotSettings, ShotSpec
    from lvcd.errors import InputError

    lineart = _frames(tmp_path / "lines", 2, 0)
    shots = [ShotSpec("a", tmp_path / "ref.png", lineart, (), ShotSettings())]
    truth = {"a": (_frames(tmp_path / "gt", 2, 90), None)}
    check_ground_truth(truth, shots, "gt.csv", skip_frames=1)
    with pytest.raises(InputError, match=r"gt.csv, shot 'a' has 2 frames, and skipping the first 2 \(--skip-frames\)"):
        check_ground_truth(truth, shots, "gt.csv", skip_frames=2)
