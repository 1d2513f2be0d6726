"""`lvcd ui`: serve the colorization web page locally (gradio)."""

from __future__ import annotations

from pathlib import Path

import typer

from lvcd.cli.options import load_pipeline
from lvcd.errors import LVCDError


def ui(
    svd: Path | None = typer.Option(None, "--svd", help="svd.safetensors (default: the Hugging Face cache)."),
    lvcd_ckpt: Path | None = typer.Option(None, "--lvcd", help="lvcd.ckpt or its `lvcd convert` safetensors."),
    model: str | None = typer.Option(
        None, "--model", help="'demo': the small model shipped in the package (synthetic cartoons, 64x64), no files."
    ),
    config: str | None = typer.Option(None, "--config", help="Preset name or JSON of sgm hyper-parameters."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda or cuda:N (default: cuda if available)."),
    dtype: str | None = typer.Option(
        None, "--dtype", help="fp32, bf16 or fp16 (default: bf16 on GPU, fp16 before Ampere, fp32 on CPU)."
    ),
    vae_dtype: str | None = typer.Option(None, "--vae-dtype", help="fp32 (default, as officially), bf16 or fp16."),
    offload: bool = typer.Option(False, "--offload", help="Keep models not in use off the GPU."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to serve on (0.0.0.0 exposes it to your network)."),
    port: int = typer.Option(7860, "--port", min=1, max=65535, help="Port to serve on."),
    max_upload_mb: float = typer.Option(100.0, "--max-upload-mb", min=0.001, help="Largest accepted upload (MB)."),
    max_side: int = typer.Option(1024, "--max-side", min=64, help="Largest processing size, pixels a side."),
    max_steps: int = typer.Option(50, "--max-steps", min=1, help="Most denoising steps a page may ask for."),
    max_queue: int = typer.Option(16, "--max-queue", min=1, help="Most jobs waiting; further requests are refused."),
    max_frames: int = typer.Option(1000, "--max-frames", min=1, help="Most line-art frames of one shot."),
    max_megapixels: float = typer.Option(
        33.2, "--max-megapixels", min=0.001, help="Largest uploaded frame, megapixels (a job's memory grows with it)."
    ),
    examples: bool = typer.Option(True, "--examples/--no-examples", help="Offer a procedural example shot."),
) -> None:
    """Serve a web page to colorize shots: upload the coloured reference and the line art, get a video back."""
    try:
        from lvcd.cli.checks import check_serve_address
        from lvcd.ui import PageLimits, launch_page

        check_serve_address(host, port)  # before the weights load
        pipe = load_pipeline(svd, lvcd_ckpt, config, device, dtype, offload, model=model, vae_dtype=vae_dtype)
    except LVCDError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    limits = PageLimits(
        max_upload_mb=max_upload_mb,
        max_side=max_side,
        max_steps=max_steps,
        max_frames=max_frames,
        max_frame_pixels=round(max_megapixels * 1e6),
    )
    launch_page(pipe, host=host, port=port, limits=limits, examples=examples, max_queue=max_queue)


def register(app: typer.Typer) -> None:
    app.command("ui")(ui)
