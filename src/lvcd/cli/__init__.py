"""The ``lvcd`` command line: one typer app, one module per sub-command.

Each module ``lvcd.cli.<name>`` defines ``register(app)``, which adds its command(s).
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="lvcd",
    help="Colorize line-art animation from one colored reference frame (LVCD).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

COMMAND_MODULES = ("colorize", "lineart", "evaluate", "convert", "data", "train")


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"lvcd.cli.{name}")
        except ModuleNotFoundError as err:
            # Only tolerate the command module itself being absent (e.g. mid-development),
            # never a missing dependency inside an existing module.
            if err.name != f"lvcd.cli.{name}":
                raise
            continue
        module.register(app)


_register_all()


def main() -> None:
    app()
