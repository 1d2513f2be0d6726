"""`lvcd train`: fine-tune LVCD from a TOML/JSON config (single device, or data parallel via `accelerate launch`)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from lvcd.errors import Interrupted, LVCDError


def train_command(
    config: Path = typer.Option(
        ..., "--config", "-c", help="Training config (.toml or .json); see examples/train_config.toml."
    ),
    resume: str | None = typer.Option(
        None,
        "--resume",
        help="Continue from a checkpoint folder (…/checkpoints/step_001500) or 'latest' in output_dir.",
    ),
    output_dir: Path | None = typer.Option(None, "--output-dir", "-o", help="Override output_dir."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Override train.max_steps."),
    overrides: list[str] = typer.Option(
        [], "--set", help="Override any setting: --set train.batch_size=1 --set optim.learning_rate=1e-5 (TOML values)."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Fine-tune LVCD: ControlNet + UNet spatial/temporal self-attention, v-prediction loss, AdamW.

    Multi-GPU / multi-node: `accelerate launch [--num_processes N ...] -m lvcd.cli train --config FILE`.
    """
    from lvcd.train.config import load_train_config

    try:
        items = list(overrides)
        if output_dir is not None:
            items.append(f"output_dir={json.dumps(str(output_dir))}")
        if max_steps is not None:
            items.append(f"train.max_steps={max_steps}")
        train_config = load_train_config(config, items)
        from lvcd.train.loop import train

        try:
            result = train(train_config, resume=resume, progress=progress)
        except BaseException as err:
            _say_how_to_continue(err, Path(train_config.output_dir), resume, "lvcd.safetensors")
            raise
    except LVCDError as err:
        if isinstance(err, Interrupted):  # the guard says it (exit code 130 or 143) and ignores further stops
            raise
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    if not result.is_main_process:
        return
    if result.checkpoint is not None:
        typer.echo(f"Trained steps {result.start_step}..{result.step}; last checkpoint {result.checkpoint}")
    else:
        typer.echo(f"Nothing to do: the run is already at step {result.step} of {train_config.train.max_steps}.")


def train_vae_command(
    config: Path = typer.Option(..., "--config", "-c", help="VAE training config (.toml); see examples/demo/vae.toml."),
    resume: str | None = typer.Option(None, "--resume", help="A checkpoint folder, or 'latest' in output_dir."),
    overrides: list[str] = typer.Option([], "--set", help="Override any setting: --set train.max_steps=100."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Train the VAE (first stage of training from scratch), measure its scale factor, write base.safetensors.

    Example: `lvcd train-vae --config examples/demo/vae.toml` (see examples/demo/README.md for the whole recipe).
    """
    from lvcd.train.config import load_train_config
    from lvcd.train.vae import VAETrainConfig, train_vae

    try:
        vae_config = load_train_config(config, list(overrides), root_cls=VAETrainConfig)
        try:
            result = train_vae(vae_config, resume=resume, progress=progress)
        except BaseException as err:
            _say_how_to_continue(err, Path(vae_config.output_dir), resume, "vae.safetensors")
            raise
    except LVCDError as err:
        if isinstance(err, Interrupted):  # the guard says it (exit code 130 or 143) and ignores further stops
            raise
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"Trained steps {result.start_step}..{result.step}; base weights {result.base_path}")


def _say_how_to_continue(err: BaseException, output_dir: Path, resume: str | None, weights_name: str) -> None:
    """A Ctrl-C or SIGTERM (``err``) as one Interrupted line that says how to go on: resume the newest checkpoint of
    output_dir, or, before the first one, start over (``--resume latest`` then starts afresh, saying so)."""
    from lvcd.cli.guard import interruption
    from lvcd.train.checkpoint import list_checkpoints

    stopped = interruption(err)
    if stopped is None:
        return
    what, code = stopped
    found = list_checkpoints(output_dir, weights_name)
    if found:
        message = (
            f"interrupted ({what}); run the same command with --resume latest to continue from its checkpoint of "
            f"step {found[-1][0]}."
        )
    elif resume is not None and resume != "latest":
        message = f"interrupted ({what}) before this run's first checkpoint; run the same command to resume {resume}."
    else:
        message = (
            f"interrupted ({what}) before the first checkpoint, so there is nothing to continue; run the same command "
            "with --resume latest to start the run over from step 0."
        )
    raise Interrupted(message, code) from None


def register(app: typer.Typer) -> None:
    app.command("train")(train_command)
    app.command("train-vae")(train_vae_command)
