"""The ``lvcd`` command line: one typer app, one module per sub-command.

Each module ``lvcd.cli.<name>`` defines ``register(app)``, which adds its command(s).
"""

from __future__ import annotations

import importlib

import typer

from lvcd.cli.guard import OneLineUsageErrors, guard_app, run_app

app = typer.Typer(
    name="lvcd",
    cls=OneLineUsageErrors,  # click's usage errors on one line, like every other lvcd error
    help="Colorize line-art animation from one colored reference frame (LVCD).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain help: wraps at any width, nothing cut off, no type column for flags
    context_settings={"max_content_width": 120},
)

COMMAND_MODULES = ("colorize", "demo", "batch", "lineart", "evaluate", "convert", "data", "train", "ui")


def _register_all() -> None:
    # Command modules import only light dependencies at top level (torch etc. load inside the commands),
    # so `lvcd --help` stays fast.
    for name in COMMAND_MODULES:
        importlib.import_module(f"lvcd.cli.{name}").register(app)


_register_all()
guard_app(app)  # one-line errors, no traceback, clean interruption, for every command


def main() -> None:
    run_app(app)
