"""`lvcd batch --evaluate` after the batch, without a model (fast): each clip read through once to check it and once to
score it, and a clip found unusable only then left out with a note while the others are scored."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
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
