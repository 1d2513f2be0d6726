"""`lvcd demo`: the packaged demo model colorizes a held-out synthetic shot; side-by-side video and scores."""

from __future__ import annotations

from pathlib import Path

import typer

from lvcd.errors import InputError, LVCDError


def demo_command(
    output: Path = typer.Option(Path("demo.mp4"), "--output", "-o", help="Video (.mp4/.webm/.gif) or PNG folder."),
    shot: int = typer.Option(0, "--shot", help="Which held-out shot (0..23 are the benchmark's)."),
    frames: int = typer.Option(45, "--frames", help="Frames in the shot (any length)."),
    steps: int = typer.Option(25, "--steps", help="Sampling steps (the official 25)."),
    seed: int = typer.Option(0, "--seed", help="Sampling seed."),
    fps: float = typer.Option(12.0, "--fps", help="Frame rate of the video."),
    device: str | None = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)."),
    scores_json: Path | None = typer.Option(None, "--json", help="Also write the scores to this JSON file."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing output (and an existing --json file)."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Colorize a held-out synthetic shot with the demo model (shipped in the package, no download).

    Writes line art | lvcd | ground truth side by side, and prints PSNR, SSIM and region accuracy next to two
    baselines (the reference copied to every frame; every region filled with the reference's mean colour).
    """
    from lvcd.cli.checks import check_device, check_fps, check_output, check_report_output
    from lvcd.data.synthetic import split_seed
    from lvcd.demo.run import run_demo
    from lvcd.seeds import check_seed

    try:
        if frames < 2:
            raise LVCDError("--frames must be at least 2 (the reference and one frame to colorize).")
        if steps < 1:
            raise LVCDError("--steps must be at least 1.")
        check_device(device)
        check_seed(seed, "--seed")
        try:
            split_seed("heldout", shot)  # a shot index out of range is said before the model loads
        except ValueError as err:
            raise InputError(f"--shot {shot}: {err}") from None
        check_output(output, {}, overwrite, resume=False)
        check_fps(fps, output)
        if scores_json is not None:
            if Path(scores_json).expanduser().resolve() == Path(output).expanduser().resolve():
                raise InputError(f"--json {scores_json} is the output video too; give the scores a file of their own.")
            check_report_output(scores_json, {"--output": output}, overwrite)
        report = run_demo(output, shot, frames, steps, seed, fps, overwrite, device, progress=not quiet)
    except (LVCDError, ValueError) as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"Wrote {report.output} (line art | lvcd | ground truth), {report.frames} frames of held-out shot {shot}"
    )
    typer.echo(f"colorized in {report.seconds:.1f} s; scores over frames 1..{report.frames - 1}:")
    typer.echo(report.table())
    if scores_json is not None:
        from lvcd.io.atomic import write_json_atomic

        document = {"shot_seed": report.shot_seed, "frames": report.frames, "steps": steps, "scores": report.scores}
        write_json_atomic(scores_json, document, indent=1)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)
