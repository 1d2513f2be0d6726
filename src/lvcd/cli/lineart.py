"""`lvcd lineart`: extract line art (dark lines on white PNGs) from colour frames, a video or an image; or clean up
scanned line art (``--method levels``) as `lvcd colorize` reads it."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from lvcd.errors import InputError, LVCDError


class Method(str, Enum):
    informative = "informative"
    informative_coarse = "informative-coarse"
    xdog = "xdog"
    levels = "levels"


def _frame_names(input_path: Path, source) -> list[str]:
    """Output stems: folders give file stems, videos/animations zero-padded indices, a still image its own stem."""
    if input_path.is_file() and len(source) == 1:
        return [input_path.stem]
    return list(source.names)


def lineart(
    input_path: Path = typer.Argument(
        ..., metavar="INPUT", show_default=False, help="A folder of colour frames, a video/GIF, or an image."
    ),
    output: Path = typer.Option(
        ..., "--output", "-o", help="Output folder of PNGs (one per frame, same stems), or a .mp4/.webm/.gif file."
    ),
    method: Method = typer.Option(
        Method.informative,
        "--method",
        help="informative: what LVCD was trained on (needs sk_model.pth); informative-coarse: sk_model2.pth; "
        "xdog: no weights, but outside the training distribution; levels: INPUT is line art already (scans, photos "
        "of drawings): its paper to white, its ink to black, as lvcd colorize levels it (--lineart-levels on).",
    ),
    weights: Path | None = typer.Option(
        None,
        "--weights",
        help="sk_model.pth / sk_model2.pth (or a folder holding it); default: $LVCD_LINEART_WEIGHTS "
        "or ~/.cache/lvcd/lineart/.",
    ),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda (cuda:N)."),
    overwrite: bool = typer.Option(
        False,
        "--overwrite",
        help="Replace an existing output (the old folder/file is deleted once the new one is complete).",
    ),
) -> None:
    """Extract line art (dark lines on white, same size and names) from colour frames, as LVCD's notebook does;
    with --method levels, clean up scanned line art instead (to check what lvcd colorize will see, or to keep).

    OUT is a folder of PNGs (or a .mp4/.webm/.gif), written to a hidden temporary path and renamed when complete.
    """
    from tqdm import tqdm

    from lvcd.cli.checks import check_device, check_files, check_frame_size
    from lvcd.io.frames import FrameSource
    from lvcd.io.paths import check_not_input, check_output_location
    from lvcd.io.writers import open_writer
    from lvcd.lineart import get_extractor

    try:
        if not input_path.exists():
            raise InputError(f"Input {input_path} does not exist; give a folder of frames, a video or an image.")
        check_files({"--weights": weights})
        check_device(device)
        check_not_input(output, {"INPUT": input_path, "--weights": weights})
        source = FrameSource.open(input_path)
        check_frame_size(source.size_hw, f"INPUT {input_path}")
        if not (output.exists() and not overwrite):
            check_output_location(output)
        # Opened first so that an existing output is refused before any weights are loaded.
        with open_writer(output, fps=source.fps or 20.0, overwrite=overwrite, inputs=(input_path,)) as writer:
            if method is Method.levels:
                if weights is not None:
                    raise InputError("--method levels takes no --weights: it cleans up line art, no network runs.")
                _write_levelled(source, _frame_names(input_path, source), writer)
                typer.echo(f"Wrote {writer.frames_written} levelled line-art frame(s) to {output}")
                return
            extractor = get_extractor(method.value, weights=weights, device=device)
            if extractor.warning:
                typer.echo(f"warning: {extractor.warning}", err=True)
            names = _frame_names(input_path, source)
            frames = zip(names, source, strict=False)
            for name, frame in tqdm(frames, total=len(names), unit="frame", desc=f"lineart ({method.value})"):
                writer.write(extractor(frame), name=name)
    except LVCDError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"Wrote {writer.frames_written} line-art frame(s) to {output}")


def _write_levelled(source, names: list[str], writer) -> None:
    """Each frame's paper to white and ink to black (lvcd.io.paper), dark lines on white, polarity detected once."""
    import numpy as np
    from tqdm import tqdm

    from lvcd.hints import LineartFrames, frame_to_hint, resolve_polarity

    polarity = resolve_polarity(LineartFrames(source), "auto")
    for name, frame in tqdm(zip(names, source, strict=False), total=len(names), unit="frame", desc="lineart (levels)"):
        hint = frame_to_hint(frame, polarity, levels=True)
        writer.write(np.rint((1.0 - hint) * 255.0).astype(np.uint8), name=name)


def register(app: typer.Typer) -> None:
    app.command("lineart")(lineart)
