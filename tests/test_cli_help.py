"""Help pages: readable at 80 columns (nothing cut off), no type shown for on/off flags."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from lvcd.cli import COMMAND_MODULES, app

runner = CliRunner()
PAGES = [[name] for name in COMMAND_MODULES] + [["data", "prepare"], ["data", "index"], ["train-vae"]]


@pytest.mark.parametrize("page", PAGES, ids=" ".join)
def test_help_pages_are_whole_at_80_columns_and_flags_show_no_type(page):
    result = runner.invoke(app, [*page, "--help"], terminal_width=80, env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    assert not [line for line in result.output.splitlines() if line.rstrip(" │").endswith("…")]  # nothing cut off
    assert max(len(line) for line in result.output.splitlines()) <= 80
    assert "--help" in result.output


def test_evaluate_help_shows_every_option_whole():
    result = runner.invoke(app, ["evaluate", "--help"], terminal_width=80, env={"COLUMNS": "80"})
    for option in ("--inception-weights", "--i3d-weights", "--root-inputs / --no-root-inputs", "--weights-dir"):
        assert option in result.output
    assert "pt_inception-2015-12-05-6726825d.pth" in result.output


def test_batch_and_evaluate_score_the_same_metrics_by_default():
    import typer

    commands = typer.main.get_command(app).commands
    defaults = {
        name: next(p.default for p in commands[name].params if "--metrics" in p.opts) for name in ("batch", "evaluate")
    }
    assert defaults == {"batch": "default", "evaluate": "default"}
