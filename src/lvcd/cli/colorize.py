"""`lvcd colorize`: colorize a shot of line art from one coloured reference frame."""

from __future__ import annotations

from pathlib import Path

import typer

from lvcd.cli.options import load_pipeline
from lvcd.errors import LVCDError

EXAMPLES = """
Examples:

  lvcd colorize --reference ref.png --lineart lineart/ -o shot.mp4 --svd svd.safetensors --lvcd lvcd.ckpt

  lvcd colorize --reference ref.png --lineart frames/ --from-color -o out/ --lineart-weights sk_model.pth

  lvcd colorize --reference ref.png --lineart shot.mp4 -o shot_color.webm --keyframe 40=key40.png --seed 7

  lvcd colorize --reference key48.png --lineart lineart/ -o shot.mp4 --reference-frame 48

  lvcd colorize ... --resume        # continue an interrupted job from its last finished window
"""


def colorize(
    reference: Path = typer.Option(
        ..., "--reference", "-r", help="The coloured reference: frame 0 of the shot (or --reference-frame), coloured."
    ),
    lineart: Path = typer.Option(
        ..., "--lineart", "-l", help="Line art of every frame: a folder of images (natural sort), a video or a GIF."
    ),
    output: Path = typer.Option(
        ...,
        "--output",
        "-o",
        help="shot.mp4 (.m4v/.mov/.mkv/.avi) / .webm / .gif writes a video; an image name is refused; any other "
        "name a folder of PNG frames.",
    ),
    svd: Path | None = typer.Option(
        None,
        "--svd",
        help="Stability's svd.safetensors (or one whole-model file from `lvcd convert`). Default: the Hugging Face cache.",
    ),
    lvcd_ckpt: Path | None = typer.Option(None, "--lvcd", help="LVCD's lvcd.ckpt (or its `lvcd convert` safetensors)."),
    model: str | None = typer.Option(
        None, "--model", help="'demo': the small model shipped in the package (synthetic cartoons, 64x64), no files."
    ),
    config: str | None = typer.Option(
        None, "--config", help="Model config: a preset name or a JSON config (default: the files' own, else svd-lvcd)."
    ),
    size: str | None = typer.Option(
        None,
        "--size",
        help="Processing size HxW (multiples of the model's step: 64 official, 16 demo). Default: near the "
        "trained area (320x576 official), aspect kept.",
    ),
    steps: int | None = typer.Option(
        None, "--steps", min=1, help="Sampler steps per window (default: the model config's, 25 officially)."
    ),
    sampler: str = typer.Option(
        "euler",
        "--sampler",
        help="euler (official, default), heun or dpmpp_2m (second order: similar quality in fewer --steps; "
        "heun calls the network twice a step).",
    ),
    overlap: int | None = typer.Option(
        None, "--overlap", min=0, max=13, help="Frames shared by consecutive windows (default: the config's, 4)."
    ),
    prev_reference: bool = typer.Option(
        True, "--prev-reference/--no-prev-reference", help="Prev-Reference Attention in later windows (paper §4.2)."
    ),
    blending: bool = typer.Option(True, "--blending/--no-blending", help="Overlapped Blending (paper §4.2)."),
    reference_mode: str = typer.Option(
        "first",
        "--reference-mode",
        help="first: every window follows the shot's reference (and keyframes); previous-sample: each window "
        "follows the previous window's last result (the paper's ablation; errors accumulate).",
    ),
    seed: int | None = typer.Option(
        None, "--seed", help="Random seed (printed when not given, for reproducing a run)."
    ),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda or cuda:N (default: cuda if available)."),
    dtype: str | None = typer.Option(
        None,
        "--dtype",
        help="fp32, bf16 or fp16 for the diffusion networks (default: bf16 on GPU, fp16 before Ampere, fp32 on CPU).",
    ),
    vae_dtype: str | None = typer.Option(
        None,
        "--vae-dtype",
        help="fp32 (default, as officially), bf16 or fp16 for the VAE: bf16 lowers the estimated GPU peak (0.5 GB at "
        "320x576, 2.3 GB at 576x1024; not measured).",
    ),
    offload: bool = typer.Option(False, "--offload", help="Keep models not in use off the GPU (for small GPUs)."),
    compile_networks: bool = typer.Option(
        False,
        "--compile",
        help="torch.compile the UNet and ControlNet: a slow first window, then (expected on a GPU; not measured yet) "
        "faster steps.",
    ),
    polarity: str = typer.Option(
        "auto",
        "--polarity",
        help="auto, dark-lines (dark lines on light paper) or bright-lines (light lines on black).",
    ),
    lineart_levels: str = typer.Option(
        "auto",
        "--lineart-levels",
        help="auto (scans on grey or grainy paper: each frame's paper to white, ink to black; clean line art "
        "untouched), on or off (the official reading).",
    ),
    from_color: bool = typer.Option(
        False, "--from-color", help="--lineart holds colour frames: extract their line art first."
    ),
    lineart_method: str = typer.Option(
        "informative",
        "--lineart-method",
        help="With --from-color: informative (sk_model.pth, as trained), informative-coarse (sk_model2.pth) or xdog "
        "(no weights).",
    ),
    lineart_weights: Path | None = typer.Option(None, "--lineart-weights", help="With --from-color: sk_model.pth."),
    reference_frame: int = typer.Option(
        0,
        "--reference-frame",
        min=0,
        help="Index of the frame --reference colours (a colour key inside the shot): the shot is coloured from it "
        "toward frame 0 and toward the end. Default 0, the official single pass.",
    ),
    keyframe: list[str] = typer.Option(
        [],
        "--keyframe",
        help="INDEX=IMAGE: a further coloured frame; the windows beyond it (away from the reference) use it as "
        "reference. Repeatable.",
    ),
    fps: float | None = typer.Option(
        None, "--fps", help="Frame rate of a video output (default: the input video's, else 20)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output."),
    work_dir: Path | None = typer.Option(
        None, "--work-dir", help="Where per-window state is kept (default: .<output>.lvcd-work next to the output)."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted job from its work directory."),
    keep_work: bool = typer.Option(False, "--keep-work", help="Keep the work directory after success."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Colorize line-art frames from one coloured reference frame (LVCD). Any length and frame size."""
    try:
        _run(**locals())
    except LVCDError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(getattr(err, "exit_code", 2)) from None


def _run(**opts) -> None:
    from lvcd.cli.checks import preflight_colorize
    from lvcd.cli.jobs import open_job, run_job

    output: Path = opts["output"]
    source, size, keyframes = preflight_colorize(opts)  # every input and the output location, before any weights
    # the weights files from their headers (missing, swapped, another model's said now); their tensors are read once
    # the shot's inputs are read and a --resume is matched to its work directory
    pipe = load_pipeline(
        opts["svd"],
        opts["lvcd_ckpt"],
        opts["config"],
        opts["device"],
        opts["dtype"],
        opts["offload"],
        opts["model"],
        opts["vae_dtype"],
        lazy=True,
    )
    if opts["compile_networks"]:
        pipe.compile()
    # the work directory (a file, another's folder, another job running on it, a --seed another job's) before every
    # line-art frame is read: that and the rest run in the job, which removes a work directory it made for nothing
    work, seed = open_job(opts["work_dir"] or output.parent / f".{output.name}.lvcd-work", opts["resume"], opts["seed"])

    def colorize_shot():
        extractor = _read_lineart(opts, source, keyframes)
        return pipe(
            opts["reference"],
            source,
            size=size,
            num_steps=opts["steps"],
            seed=seed,
            polarity="auto" if opts["from_color"] else opts["polarity"],
            lineart_levels=opts["lineart_levels"],
            keyframes=keyframes,
            extract_lineart=extractor,
            overlap=opts["overlap"],
            prev_reference=opts["prev_reference"],
            blending=opts["blending"],
            reference_mode=opts["reference_mode"],
            sampler=opts["sampler"],
            reference_frame=opts["reference_frame"],
            output=output,
            fps=opts["fps"],  # None: the line art's own rate, else 20
            overwrite=opts["overwrite"],
            work_dir=work,
            resume=opts["resume"],
            progress=not opts["quiet"],
        )

    result = run_job(work, seed, colorize_shot, keep_work=opts["keep_work"])
    plan = result.size_plan
    typer.echo(
        # the frame size as pictures are measured (width x height), the processing size as --size takes it (HxW)
        f"wrote {len(result.latents)} frame{'s' * (len(result.latents) != 1)} ({plan.input_hw[1]}x{plan.input_hw[0]} px, "
        f"processed at --size {plan.model_hw[0]}x{plan.model_hw[1]}, "
        f"line art {result.polarity}, seed {result.seed}) to {result.output_path}"
    )


def _read_lineart(opts: dict, source, keyframes: dict):
    """Every line-art frame checked (``check_lineart_frames``), scanned paper announced, the line-art extractor of
    --from-color made; returns the extractor (None without --from-color)."""
    from lvcd.cli.checks import check_lineart_frames

    check_lineart_frames(opts, source, keyframes)
    if not opts["from_color"] and opts["lineart_levels"] != "off":  # say it before the long job, not after
        from lvcd.hints import LineartFrames, resolve_levels, resolve_polarity

        frames = LineartFrames(source)
        levels = resolve_levels(frames, resolve_polarity(frames, opts["polarity"]), opts["lineart_levels"])
        if levels is not None:
            typer.echo(f"line art: {levels.describe()} (--lineart-levels off reads it as drawn)", err=True)
    if not opts["from_color"]:
        return None
    from lvcd.devices import default_device
    from lvcd.lineart import get_extractor

    # on the device the pipeline will use (the GPU when there is one), not the CPU by default
    extractor = get_extractor(
        opts["lineart_method"],
        weights=opts["lineart_weights"],
        device=default_device(opts["device"]),
        options=("--lineart-weights", "--lineart-method"),
    )
    if extractor.warning:
        typer.echo(f"warning: {extractor.warning}", err=True)
    return extractor


def register(app: typer.Typer) -> None:
    app.command(
        "colorize",
        help=(colorize.__doc__ or "") + EXAMPLES,
        short_help="Colorize line art from one coloured reference frame (any length, any size).",
    )(colorize)
