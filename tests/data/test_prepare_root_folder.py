"""`lvcd data prepare -o`: where a training root may be written (a new or empty folder, a root, or a folder holding
only the inputs), checked before anything is read or loaded."""

from __future__ import annotations

import shutil

from typer.testing import CliRunner

from lvcd.cli import app

from .conftest import TINY_CONFIG


def prepare(video, root, svd):
    command = ["data", "prepare", str(video), "-o", str(root), "--svd", str(svd), "--config", str(TINY_CONFIG)]
    options = ["--size", "32x64", "--lineart-method", "xdog", "--batch-size", "4", "--quiet"]
    return CliRunner().invoke(app, [*command, *options])


def test_a_root_is_never_written_among_other_files(tmp_path, synthetic_mp4, tiny_weights):
    """A folder of other work got the root's folders and files mixed in among its own (nothing was deleted, but
    nothing said so either): refused in one line naming what it holds; the folder is left as it was."""
    work = tmp_path / "project"
    (work / "renders").mkdir(parents=True)
    (work / "notes.txt").write_text("mine")
    refused = prepare(synthetic_mp4, work, tiny_weights["svd"])
    assert refused.exit_code == 2, refused.output
    assert "holds other files (notes.txt, renders)" in refused.output and "not an lvcd training root" in refused.output
    assert sorted(p.name for p in work.iterdir()) == ["notes.txt", "renders"]


def test_a_root_may_hold_the_videos_it_is_made_from_and_is_extended(tmp_path, synthetic_mp4, tiny_weights):
    root = tmp_path / "root"
    (root / "raw").mkdir(parents=True)
    video = shutil.copy(synthetic_mp4, root / "raw" / "shot.mp4")
    made = prepare(root / "raw", root, tiny_weights["svd"])  # its only entry is the input's folder
    assert made.exit_code == 0, made.output
    (root / "notes.txt").write_text("added by the user later")
    again = prepare(video, root, tiny_weights["svd"])  # a root now: resumed, whatever else it holds
    assert again.exit_code == 0, again.output


def test_hidden_and_system_entries_do_not_count_as_other_files(tmp_path, synthetic_mp4, tiny_weights):
    """A fresh volume's lost+found, a file browser's .DS_Store, and the probes and temporaries of shards starting at
    the same instant (each refused the others) are not other work."""
    root = tmp_path / "mnt"
    (root / "lost+found").mkdir(parents=True)
    for name in (".DS_Store", ".lvcd-probe-a42e133c", ".lvcd_data.json.partial-0123abcd"):
        (root / name).write_text("")
    made = prepare(synthetic_mp4, root, tiny_weights["svd"])
    assert made.exit_code == 0, made.output


def test_weights_that_do_not_fit_are_refused_before_anything_is_written(tmp_path, synthetic_mp4, tiny_weights):
    """The VAE was checked only when the first latents were encoded, after frames and line art were written (a root
    of 18 files left behind): the file's header is checked against the config first."""
    command = ["data", "prepare", str(synthetic_mp4), "-o", str(tmp_path / "root"), "--svd", str(tiny_weights["svd"])]
    refused = CliRunner().invoke(app, [*command, "--size", "32x64", "--lineart-method", "xdog", "--quiet"])
    assert refused.exit_code == 2 and "do not fit the 'svd-lvcd' model" in refused.output, refused.output
    assert not (tmp_path / "root").exists()
