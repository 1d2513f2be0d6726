"""`lvcd lineart`: extract line art (dark lines on white PNGs) from colour frames, a video or an image; or clean up
scanned line art (``--method levels``) as `lvcd colorize` reads it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path

import typer

from lvcd.errors import InputError, LVCDError, first_line, out_of_memory


class Method(str, Enum):
    informative = "informative"
    informative_coarse = "informative-coarse"
    xdog = "xdog"
    levels = "levels"


def _frame_names(input_path: Path, source, to_folder: bool) -> list[str | None]:
    """Output stems: folders give file stems, videos/animations zero-padded indices, a still image its own stem.

    Decided before any frame is extracted, as `lvcd colorize` decides (:attr:`lvcd.hints.LineartFrames.names`): when
    the stems cannot all name a PNG of one folder (two differ only in case, one is hidden), the frames are numbered
    (``None``: the writer's ``00000.png, 00001.png, ...``), with a warning when the output is a folder of PNGs.
    """
    names = [input_path.stem] if input_path.is_file() and len(source) == 1 else [str(name) for name in source.names]
    from lvcd.io.writers import frame_names_problem

    clash = frame_names_problem(names)
    if clash is None:
        return list(names)
    if to_folder:
        typer.echo(f"warning: {clash}; the output frames are numbered 00000.png, 00001.png, ... instead.", err=True)
    return [None] * len(names)


@contextmanager
def _writer_faults(output: Path) -> Iterator[None]:
    """A writer's own fault (a ValueError or the like, not a user error or an OSError, which lvcd.cli.guard words
    with its path) as one line instead of a traceback."""
    try:
        yield
    except (LVCDError, OSError):
        raise
    except Exception as err:
        if out_of_memory(err):
            raise
        raise LVCDError(
            f"{output}: writing the output failed ({type(err).__name__}: {first_line(err)}); "
            "choose another output (a folder of PNGs, or a .mp4, .webm or .gif file) and run it again."
        ) from None


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
    from lvcd.io.timing import DEFAULT_FPS
    from lvcd.io.writers import open_writer, output_kind
    from lvcd.lineart import get_extractor
    from lvcd.lineart.extractor import LINEART_CLI_OPTIONS, check_method

    try:
        if not input_path.exists():
            raise InputError(f"Input {input_path} does not exist; give a folder of frames, a video or an image.")
        if method is Method.levels and weights is not None:
            raise InputError("--method levels takes no --weights: it cleans up line art, no network runs.")
        check_files({"--weights": weights})
        check_device(device)
        if method is not Method.levels:  # its weights found now, not after every frame is read
            check_method(method.value, weights, LINEART_CLI_OPTIONS)
        check_not_input(output, {"INPUT": input_path, "--weights": weights})
        to_folder = output_kind(output) == "png"
        source = FrameSource.open(input_path)
        check_frame_size(source.size_hw, f"INPUT {input_path}")
        if not (output.exists() and not overwrite):
            check_output_location(output)
        # Opened first so that an existing output is refused before the frames are read and any weights load.
        with open_writer(output, fps=source.fps or DEFAULT_FPS, overwrite=overwrite, inputs=(input_path,)) as writer:
            extractor = None
            if method is not Method.levels:  # a damaged weights file is said before the frames are read too
                extractor = get_extractor(method.value, weights=weights, device=device, options=LINEART_CLI_OPTIONS)
            # Every frame's size and data before the first is extracted, as lvcd colorize checks them: a bad frame
            # late in the shot would otherwise cost all the work before it.
            source.check_uniform_size()  # headers only for folders; one pass without colour conversion for videos
            source.check_intact()
            # a GIF's held drawings, a variable frame rate: kept (a video's are read by the pass above)
            writer.set_frame_durations(source.frame_durations)
            names = _frame_names(input_path, source, to_folder)

            def write(frame, name: str | None) -> None:
                with _writer_faults(output):
                    writer.write(frame, name=name)

            if extractor is None:
                _write_levelled(source, names, write)
                with _writer_faults(output):
                    writer.close()
                typer.echo(f"Wrote {writer.frames_written} levelled line-art frame(s) to {output}")
                return
            if extractor.warning:
                typer.echo(f"warning: {extractor.warning}", err=True)
            frames = zip(names, source, strict=False)
            for name, frame in tqdm(frames, total=len(names), unit="frame", desc=f"lineart ({method.value})"):
                write(extractor(frame), name)
            with _writer_faults(output):
                writer.close()  # here, so that its faults are one line too (leaving the block closes nothing more)
    except LVCDError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"Wrote {writer.frames_written} line-art frame(s) to {output}")


def _write_levelled(source, names: list[str | None], write: Callable) -> None:
    """Each frame's paper to white and ink to black (lvcd.io.paper), dark lines on white, polarity detected once."""
    import numpy as np
    from tqdm import tqdm

    from lvcd.hints import LineartFrames, frame_to_hint, resolve_polarity

    polarity = resolve_polarity(LineartFrames(source), "auto")
    for name, frame in tqdm(zip(names, source, strict=False), total=len(names), unit="frame", desc="lineart (levels)"):
        hint = frame_to_hint(frame, polarity, levels=True)
        write(np.rint((1.0 - hint) * 255.0).astype(np.uint8), name)


def register(app: typer.Typer) -> None:
    app.command("lineart")(lineart)
