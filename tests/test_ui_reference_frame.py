"""The page's "frame the reference colours" field: the job is lvcd colorize --reference-frame's, its one progress bar
covers both passes, and a frame past the shot is one message before any work."""

from __future__ import annotations

import pytest
from PIL import Image

from conftest import TINY_CONFIG
from lvcd.errors import InputError
from lvcd.pipeline import LVCDPipeline
from lvcd.ui.jobs import JobSettings, check_settings, colorize_upload
from test_ui import _reference, _uploads


@pytest.fixture(scope="module")
def pipe(tiny_weights) -> LVCDPipeline:
    return LVCDPipeline.from_single_file(tiny_weights["svd"], tiny_weights["lvcd"], config=TINY_CONFIG, device="cpu")


def test_the_page_colours_from_the_frame_it_is_given(pipe, tmp_path):
    names = [f"f{index}.png" for index in range(4)]
    files, reference = _uploads(tmp_path / "up", names), str(_reference(tmp_path / "ref.png"))
    reports = []
    settings = JobSettings(steps=1, seed=11, reference_frame=2)
    result = colorize_upload(pipe, reference, files, settings, tmp_path / "out", report=lambda *r: reports.append(r))
    folder = tmp_path / "folder"
    folder.mkdir()
    for path in files:
        Image.open(path).save(folder / path.rsplit("/", 1)[-1])
    expected = pipe(reference, folder, num_steps=1, seed=11, reference_frame=2, output=tmp_path / "cli.mp4", fps=20,
                    progress=False)  # fmt: skip
    assert result.video.read_bytes() == expected.output_path.read_bytes()
    sampling = [text for _, _, text in reports if text.startswith("sampling")]
    assert [text.split(" · ")[1] for text in sampling] == ["window 1/2", "window 2/2"]  # both passes, one count
    bar = [done / total for done, total, _ in reports]
    assert bar == sorted(bar) and bar[-1] == pytest.approx(1)


def test_a_reference_frame_past_the_shot_is_said_before_any_work(pipe, tmp_path, monkeypatch):
    monkeypatch.setattr(LVCDPipeline, "__call__", lambda *a, **k: pytest.fail("the job started"))
    files = _uploads(tmp_path / "up", ["a.png", "b.png"])
    with pytest.raises(InputError, match=r"^Reference frame: 2 is past the last frame of this line art \(1"):
        colorize_upload(pipe, str(_reference(tmp_path / "ref.png")), files, JobSettings(reference_frame=2))
    with pytest.raises(InputError, match="Reference frame"):
        check_settings(reference_frame=-1)
    assert check_settings(reference_frame=3).reference_frame == 3 and check_settings().reference_frame == 0


def test_the_page_passes_its_field_to_the_job(pipe, tmp_path, monkeypatch):
    """The field is wired to the job's reference_frame: the Colorize button's inputs, in the order gradio hands them
    to the job function, end with it, and a job run with its value passes it to the pipeline."""
    import inspect
    from types import SimpleNamespace

    from lvcd.ui import build_app

    app = build_app(pipe, examples=False)
    (job,) = [f for f in app.fns.values() if f.name == "run"]
    names = list(inspect.signature(job.fn).parameters)[: len(job.inputs)]
    ids = [getattr(component, "elem_id", None) for component in job.inputs]
    assert (names[-1], ids[-1]) == ("reference_frame", "lvcd-reference-frame") and len(names) == len(ids) == 11
    seen = {}
    monkeypatch.setattr(type(pipe), "__call__", lambda self, *a, **k: seen.update(k) or 1 / 0)
    files = _uploads(tmp_path / "up", ["a.png", "b.png", "c.png"])
    values = [str(_reference(tmp_path / "ref.png")), files, 1, 5, "auto", 0, 0, 0, "euler", "auto", 2]
    job.fn(*values, SimpleNamespace(session_hash="page-k"), lambda *args, **kwargs: None)
    assert seen["reference_frame"] == 2 and seen["seed"] == 5
