"""`lvcd ui`: a local web page (gradio) to colorize a shot: upload the coloured reference and the line art, get a video.

The page only wires widgets; the work is ``colorize_upload``, a plain function (tested without a browser).

    >>> from lvcd.pipeline import LVCDPipeline                                  # doctest: +SKIP
    >>> build_app(LVCDPipeline.from_single_file("svd.safetensors", "lvcd.ckpt")).launch()  # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from lvcd.cli.options import parse_size
from lvcd.errors import InputError
from lvcd.io import IMAGE_SUFFIXES, VIDEO_SUFFIXES, natural_key

POLARITIES = ("auto", "dark-lines", "bright-lines")


def _lineart_source(files: Sequence[str | os.PathLike], workspace: Path) -> Path:
    """Uploaded files -> one video/GIF path, or a folder of the images in natural order of their names."""
    paths = [Path(f) for f in files or []]
    if not paths:
        raise InputError("Upload the line art: the drawings of every frame (images), or one video or GIF.")
    videos = [p for p in paths if p.suffix.lower() in VIDEO_SUFFIXES or p.suffix.lower() == ".gif"]
    if videos:
        if len(paths) > 1:
            raise InputError("Upload either one video/GIF or a set of images, not both.")
        return videos[0]
    unknown = [p.name for p in paths if p.suffix.lower() not in IMAGE_SUFFIXES]
    if unknown:
        raise InputError(f"Not an image or video: {', '.join(unknown[:3])}.")
    folder = workspace / "lineart"
    folder.mkdir()
    for path in sorted(paths, key=lambda p: natural_key(p.name)):
        (folder / path.name).symlink_to(path.resolve())
    return folder


def colorize_upload(
    pipe,
    reference: str | os.PathLike | None,
    lineart_files: Sequence[str | os.PathLike],
    steps: int = 25,
    seed: int | None = None,
    polarity: str = "auto",
    size: str = "auto",
    fps: float = 20.0,
    output_dir: str | os.PathLike | None = None,
) -> Path:
    """Colorize uploaded files with ``pipe`` (an LVCDPipeline); returns the mp4 path."""
    if not reference:
        raise InputError("Upload the coloured reference frame (frame 0 of the shot, coloured).")
    if polarity not in POLARITIES:
        raise InputError(f"Polarity must be one of {', '.join(POLARITIES)}.")
    output_dir = Path(output_dir or tempfile.mkdtemp(prefix="lvcd-ui-"))
    with tempfile.TemporaryDirectory(prefix="lvcd-ui-in-") as workspace:
        source = _lineart_source(lineart_files, Path(workspace))
        output = output_dir / "colorized.mp4"
        seed = None if seed is None or seed < 0 else int(seed)
        result = pipe(
            reference, source, size=parse_size(size), num_steps=int(steps), seed=seed, polarity=polarity,
            output=output, fps=float(fps), overwrite=True,
        )  # fmt: skip
    return result.output_path


def build_app(pipe, title: str = "lvcd: line-art video colorization"):
    """The gradio page for ``pipe``. Needs ``pip install 'lvcd[ui]'``."""
    try:
        import gradio as gr
    except ImportError as err:
        raise InputError("The web UI needs gradio: pip install 'lvcd[ui]'.") from err
    from lvcd.errors import LVCDError

    def run(reference, lineart_files, steps, seed, polarity, size, fps, progress=gr.Progress(track_tqdm=True)):  # noqa: B008
        try:
            path = colorize_upload(pipe, reference, lineart_files, steps, seed, polarity, size, fps)
        except LVCDError as err:
            raise gr.Error(str(err)) from None
        return str(path), str(path)

    with gr.Blocks(title=title) as app:
        gr.Markdown(
            f"# {title}\nUpload the **coloured reference** (frame 0 of the shot, coloured) and the **line art** of "
            "every frame (images, named in order, or one video/GIF). Any length and frame size."
        )
        with gr.Row():
            with gr.Column():
                reference = gr.Image(label="Coloured reference (frame 0)", type="filepath")
                lineart = gr.File(label="Line art: images or one video/GIF", file_count="multiple", type="filepath")
                with gr.Accordion("Options", open=False):
                    steps = gr.Slider(1, 50, value=25, step=1, label="Steps per window")
                    seed = gr.Number(value=-1, precision=0, label="Seed (-1: random)")
                    polarity = gr.Radio(list(POLARITIES), value="auto", label="Line polarity")
                    size = gr.Textbox(value="auto", label="Processing size HxW (multiples of 64) or auto")
                    fps = gr.Number(value=20, label="Frames per second")
                button = gr.Button("Colorize", variant="primary")
            with gr.Column():
                video = gr.Video(label="Colorized shot")
                download = gr.File(label="Download")
        button.click(run, [reference, lineart, steps, seed, polarity, size, fps], [video, download])
    return app
