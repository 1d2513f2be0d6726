"""`lvcd batch`: colorize every shot of a manifest, on this machine or on a Ray cluster (docs/batch.md)."""

from __future__ import annotations

from pathlib import Path

import typer

from lvcd.cli.options import packaged_model, parse_dtype
from lvcd.errors import InputError, LVCDError

EXAMPLES = """
Examples:

  lvcd batch film.csv -o out/ --svd svd.safetensors --lvcd lvcd.ckpt        # every GPU of this machine

  lvcd batch film.json -o /shared/out --ray --svd /shared/svd.safetensors --lvcd /shared/lvcd.ckpt

  lvcd batch film.csv -o out/ --evaluate gt.csv --weights-dir metric_weights/   # + FID/FVD over all shots

Re-running the same command skips finished shots and resumes interrupted ones. Exit code 1 when a shot failed.
"""


def batch(
    manifest: Path = typer.Argument(..., help="CSV or JSON list of shots: name, reference, lineart[, keyframes, ...]."),
    outdir: Path = typer.Option(..., "--output", "-o", help="Output folder: OUTDIR/<name>.mp4 per shot + report."),
    svd: Path | None = typer.Option(None, "--svd", help="svd.safetensors (default: the Hugging Face cache)."),
    lvcd_ckpt: Path | None = typer.Option(None, "--lvcd", help="LVCD's lvcd.ckpt (or its converted safetensors)."),
    model: str | None = typer.Option(
        None, "--model", help="'demo': the small model shipped in the package (synthetic cartoons, 64x64), no files."
    ),
    config: str | None = typer.Option(None, "--config", help="Model config: a preset name or a JSON file."),
    device: str | None = typer.Option(None, "--device", help="cpu, cuda or cuda:N (default: every GPU, else CPU)."),
    dtype: str | None = typer.Option(
        None, "--dtype", help="fp32, bf16 or fp16 (default: bf16 on GPU, fp16 before Ampere, fp32 on CPU)."
    ),
    vae_dtype: str | None = typer.Option(None, "--vae-dtype", help="fp32 (default, as officially), bf16 or fp16."),
    offload: bool = typer.Option(False, "--offload", help="Keep models not in use off the GPU (small GPUs)."),
    steps: int = typer.Option(25, "--steps", min=1, help="Euler steps per window (a shot's 'steps' overrides)."),
    seed: int = typer.Option(0, "--seed", min=0, max=2**64 - 1, help="Seed of every shot without its own 'seed'."),
    size: str | None = typer.Option(
        None, "--size", help="Processing size HxW (multiples of the model's step: 64 official, 16 demo); default: auto."
    ),
    overlap: int = typer.Option(4, "--overlap", min=0, max=13, help="Frames shared by consecutive windows."),
    polarity: str = typer.Option("auto", "--polarity", help="auto, dark-lines or bright-lines."),
    lineart_levels: str = typer.Option(
        "auto", "--lineart-levels", help="auto (scans on grey or grainy paper levelled), on or off."
    ),
    fps: float | None = typer.Option(None, "--fps", help="Video frame rate (default: the line-art video's, else 20)."),
    output_format: str = typer.Option("mp4", "--format", help="mp4, webm, gif, or png (a folder of frames)."),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Workers (default: one per GPU, one on CPU, all of a Ray cluster)."
    ),
    threads: int | None = typer.Option(None, "--threads", min=1, help="CPU threads of each CPU worker."),
    ray: bool = typer.Option(False, "--ray", help="Run the workers as Ray actors on the running Ray cluster."),
    ray_address: str | None = typer.Option(
        None, "--ray-address", help="Ray cluster address (implies --ray; default auto; 'local' starts one here)."
    ),
    gpus_per_worker: float | None = typer.Option(
        None, "--gpus-per-worker", help="Ray: GPUs per worker (default 1 if the cluster has GPUs, else 0)."
    ),
    cpus_per_worker: float = typer.Option(1, "--cpus-per-worker", help="Ray: CPUs per worker."),
    retries: int = typer.Option(
        2, "--retries", min=0, help="Workers a shot may lose (crash, node lost) before failing."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace outputs this batch did not make."),
    keep_work: bool = typer.Option(False, "--keep-work", help="Keep each shot's work directory after success."),
    evaluate: Path | None = typer.Option(
        None,
        "--evaluate",
        help="Ground-truth manifest (name, gt[, lineart]): score the batch with lvcd evaluate; EDMD's line art is "
        "the shot's own unless the entry gives lineart.",
    ),
    metrics: str = typer.Option(
        "default",
        "--metrics",
        help="With --evaluate: comma-separated from psnr,ssim,lpips,fid,fvd,edmd,edmd_gt,tc,tc_mse; or default "
        "(all but tc_mse, as lvcd evaluate), all, paper (the paper's seven).",
    ),
    eval_size: str = typer.Option("256", "--eval-size", help="With --evaluate: evaluation size N or HxW."),
    skip_frames: int = typer.Option(
        0,
        "--skip-frames",
        min=0,
        help="With --evaluate: leave out the first N frames of every shot, as lvcd evaluate --skip-frames: 1 drops "
        "frame 0, the reference itself in a shot coloured from frame 0 (a shot's reference_frame inside it is "
        "still scored). Default 0: every frame, as lvcd evaluate.",
    ),
    weights_dir: Path | None = typer.Option(None, "--weights-dir", help="With --evaluate: metric weights folder."),
    lpips_weights: list[Path] = typer.Option([], "--lpips-weights", help="With --evaluate: LPIPS files (twice)."),
    inception_weights: Path | None = typer.Option(None, "--inception-weights", help="With --evaluate: FID weights."),
    i3d_weights: Path | None = typer.Option(None, "--i3d-weights", help="With --evaluate: FVD weights."),
    allow_torchscript: bool = typer.Option(
        False, "--allow-torchscript", help="With --evaluate: run TorchScript metric files (programs, not only weights)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Colorize every shot of a manifest: one worker per GPU here, or Ray actors on a cluster. Restartable."""
    try:
        failed = _run(**locals())
    except LVCDError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    if failed:
        raise typer.Exit(1)


def _evaluation_plan(opts: dict, shots: list):
    """The ground truth of ``--evaluate`` and the evaluation's settings, checked before any shot runs (the metric
    networks are loaded later, by :func:`_evaluation_tools`, once the cheap checks have all passed): the options
    first, then the ground-truth manifest and its frames."""
    from lvcd.batch.evaluate import check_ground_truth, read_ground_truth, with_shot_lineart
    from lvcd.cli.evaluate import MAX_EVAL_SIDE
    from lvcd.metrics import EvalSettings, parse_metrics, parse_size
    from lvcd.metrics.clips import DEFAULT_SIZE
    from lvcd.metrics.evaluate import check_weight_options

    metrics = parse_metrics(opts["metrics"])
    if "region" in metrics and "region" in opts["metrics"].lower():
        raise InputError(
            "--metrics region needs region label maps, which a batch's ground-truth manifest does not give; score "
            "region with `lvcd evaluate --labels` on the outputs"
        )
    # a metric set (default, all) holds region: left out here rather than listed as skipped for want of --labels
    metrics = tuple(name for name in metrics if name != "region")
    check_weight_options(metrics, **_metric_weights(opts))  # each file given is there, before any network loads
    size = parse_size(opts["eval_size"], "--eval-size", minimum=32) or DEFAULT_SIZE  # lvcd evaluate --size's rules
    if max(size) > MAX_EVAL_SIDE:
        raise InputError(
            f"--eval-size {size[0]}x{size[1]}: at most {MAX_EVAL_SIDE} pixels a side (the paper evaluates at 256)"
        )
    truth = read_ground_truth(opts["evaluate"], [shot.name for shot in shots])
    # before any shot runs: a bad entry would otherwise show only after the batch
    check_ground_truth(truth, shots, opts["evaluate"], opts["skip_frames"])
    # after the check: a shot's own line art that does not open fails the shot, not the command
    truth = with_shot_lineart(truth, shots)
    return truth, EvalSettings(size=size, metrics=metrics, skip_frames=opts["skip_frames"])


def _evaluation_tools(opts: dict, settings):
    """The metric networks of ``--evaluate`` (slow: after every check that can refuse the command)."""
    from lvcd.metrics import build_tools

    return build_tools(
        settings.metrics,
        **_metric_weights(opts),
        weights_dir=opts["weights_dir"],
        allow_torchscript=opts["allow_torchscript"],
        size=settings.size,
    )


def _metric_weights(opts: dict) -> dict:
    """The weights files given for the metric networks, by ``build_tools``' argument names."""
    return {name: opts[name] for name in ("lpips_weights", "inception_weights", "i3d_weights")}


def _uses_ray(opts: dict) -> bool:
    return bool(opts["ray"] or opts["ray_address"])


def _pool(opts: dict, model):
    from lvcd.batch import InProcessPool, ProcessPool, RayPool, local_devices

    if _uses_ray(opts):
        return RayPool(
            model, opts["ray_address"] or "auto", opts["workers"], opts["gpus_per_worker"], opts["cpus_per_worker"]
        )
    devices = local_devices(opts["device"], opts["workers"])
    if len(devices) == 1:
        return InProcessPool(model.with_device(devices[0]), label=devices[0])
    return ProcessPool(model, devices, opts["threads"])


def _check_options(opts: dict) -> None:
    """The options that need neither the manifest nor the model, each refused in one line naming it."""
    from lvcd.batch import BatchLayout
    from lvcd.batch.layout import FORMATS
    from lvcd.batch.ray_pool import import_ray
    from lvcd.cli.checks import check_config, check_device, check_fps
    from lvcd.io.lineart_input import POLARITIES
    from lvcd.io.paper import LEVELS

    if opts["output_format"] not in FORMATS:
        raise InputError(f"--format {opts['output_format']!r} is not one of {', '.join(FORMATS)}")
    if opts["polarity"] not in POLARITIES:
        raise InputError(f"--polarity {opts['polarity']!r} is not one of {', '.join(POLARITIES)}")
    if opts["lineart_levels"] not in LEVELS:
        raise InputError(f"--lineart-levels {opts['lineart_levels']!r} is not one of {', '.join(LEVELS)}")
    for option, path in (("--svd", opts["svd"]), ("--lvcd", opts["lvcd_ckpt"])):
        if path is not None and not path.is_file():
            raise InputError(f"{option} {path}: file not found")
    if opts["outdir"].exists() and not opts["outdir"].is_dir():
        raise InputError(f"-o {opts['outdir']}: is a file; give a folder for the batch's outputs")
    check_config(opts["config"])
    check_device(opts["device"])
    parse_dtype(opts["dtype"])
    parse_dtype(opts["vae_dtype"], "--vae-dtype")
    # check_fps reads the output's kind off its path: a shot's output path in this format
    check_fps(opts["fps"], BatchLayout(opts["outdir"], opts["output_format"]).output("shot"))
    for option, share in (
        ("--gpus-per-worker", opts["gpus_per_worker"]),
        ("--cpus-per-worker", opts["cpus_per_worker"]),
    ):
        if share is not None and not share >= 0:  # here, not once the cluster is reached (Ray's own error there)
            raise InputError(f"{option} {share:g} is below 0; give a share of a device per worker, e.g. 1 or 0.5")
    if _uses_ray(opts):
        import_ray()  # the package there; the cluster is reached once the manifest has been checked


def _shots_left(shots: list, layout, identity: dict) -> list:
    """The shots not already complete in OUTDIR (read only: run_batch plans them again)."""
    from lvcd.batch.layout import is_complete, shot_fingerprint

    return [
        shot for shot in shots if not is_complete(layout, shot.name, shot_fingerprint(shot, identity, layout.format))
    ]


def _processing_size(shot, cfg) -> tuple[int, int] | None:
    """The shot's planned processing size (H, W); None when its line art does not open (the planning reports it)."""
    from lvcd.io import FrameSource, plan_size

    if shot.settings.size is not None:
        return shot.settings.size
    try:
        size_hw = FrameSource.open(shot.lineart).size_hw
    except LVCDError:
        return None
    return plan_size(size_hw, target_hw=cfg.train_size_hw, multiple=cfg.size_multiple).model_hw


def _check_memory(opts: dict, cfg, shots: list) -> None:
    """Workers on this machine: the shot of the largest processing size fits the workers of each device, each with
    its own model (the GPU's free memory, or the memory this machine has available for the CPU workers), before any
    worker loads the weights. Ray's workers run on other machines: their own check runs there, per shot."""
    from collections import Counter

    from lvcd.batch import local_devices
    from lvcd.cli.checks import check_cpu_memory, check_gpu_memory

    sizes = {shot.name: _processing_size(shot, cfg) for shot in shots}
    planned = [(hw[0] * hw[1], name, hw) for name, hw in sizes.items() if hw is not None]
    if not planned:
        return
    _, name, model_hw = max(planned)
    for device, workers in Counter(local_devices(opts["device"], opts["workers"])).items():  # each loads the model
        try:
            check_gpu_memory({**opts, "device": device}, cfg, model_hw, workers)
            check_cpu_memory({**opts, "device": device}, cfg, model_hw, workers)
        except InputError as err:
            raise InputError(f"shot {name!r}: {err}") from None


def _check_weights(model) -> None:
    """The weight files checked from their headers (missing, swapped, another model's, a config that does not fit),
    where they are on this machine (Ray workers elsewhere may hold them at paths this one lacks: left to them)."""
    from lvcd.weights import check_fit

    files = [path for path in (model.svd, model.lvcd) if path is not None]
    if model.svd is not None and all(Path(path).is_file() for path in files):  # (no --svd: the Hugging Face cache)
        check_fit(model.svd, model.lvcd, model.config)


def _run(**opts) -> bool:
    from lvcd.batch import BatchLayout, ModelSpec, ShotSettings, model_identity, read_shots
    from lvcd.batch.layout import claim_outdir
    from lvcd.batch.manifest import check_shot_rates, check_shot_sizes
    from lvcd.cli.checks import expected_config
    from lvcd.io.sizing import parse_size

    _check_options(opts)
    demo = packaged_model(opts["model"], opts["svd"], opts["lvcd_ckpt"])
    if demo is not None:  # one whole-model file, fp32 unless told otherwise (as lvcd colorize --model demo)
        opts["svd"], opts["dtype"] = demo, opts["dtype"] or "fp32"
    defaults = ShotSettings(
        steps=opts["steps"],
        seed=opts["seed"],
        size=parse_size(opts["size"], "--size"),
        overlap=opts["overlap"],
        polarity=opts["polarity"],
        lineart_levels=opts["lineart_levels"],
        fps=opts["fps"],
    )
    shots = read_shots(opts["manifest"], defaults)
    cfg = expected_config({"config": opts["config"], "svd": opts["svd"], "lvcd_ckpt": opts["lvcd_ckpt"]})
    if cfg is not None:
        check_shot_sizes(shots, cfg.size_multiple, cfg.video_frames)
    check_shot_rates(shots, opts["output_format"])
    dtype, vae_dtype = parse_dtype(opts["dtype"]), parse_dtype(opts["vae_dtype"], "--vae-dtype")
    svd, lvcd = (str(p) if p is not None else None for p in (opts["svd"], opts["lvcd_ckpt"]))
    model = ModelSpec(svd, lvcd, opts["config"], opts["device"], dtype, opts["offload"], opts["threads"], vae_dtype)
    identity = model_identity(svd, lvcd, opts["config"], dtype, vae_dtype)
    layout = BatchLayout(opts["outdir"], opts["output_format"])
    # OUTDIR held from here to the end (evaluation included): a batch running on it refuses this one now, before the
    # ground truth's and the line art's frames are opened, Ray is reached or the metric networks load
    with claim_outdir(layout, shots, identity) as claim:
        return _run_claimed(opts, shots, cfg, model, identity, layout, claim)


def _run_claimed(opts: dict, shots: list, cfg, model, identity: dict, layout, claim) -> bool:
    from lvcd.batch import BatchOptions, RayPool, run_batch

    evaluation = _evaluation_plan(opts, shots) if opts["evaluate"] is not None else None
    left = _shots_left(shots, layout, identity)
    if cfg is not None and not _uses_ray(opts):
        _check_memory(opts, cfg, left)
    pool = _pool(opts, model)
    options = BatchOptions(
        output_format=opts["output_format"],
        overwrite=opts["overwrite"],
        keep_work=opts["keep_work"],
        retries=opts["retries"],
        progress=not opts["quiet"],
        manifest=str(opts["manifest"]),
        scheduler="ray" if isinstance(pool, RayPool) else "local",
    )
    if left and (evaluation is not None or isinstance(pool, RayPool)):
        _check_weights(model)  # before Ray is reached and the metric networks load, not when the workers start
    try:
        if isinstance(pool, RayPool) and left:
            pool.connect()  # a cluster that is not there (or too small) said before the metric networks load
        tools = _evaluation_tools(opts, evaluation[1]) if evaluation is not None else None
        report = run_batch(shots, layout.outdir, pool, identity, options, claim=claim)
    except BaseException:
        if isinstance(pool, RayPool):
            pool.close()  # connected above; run_batch closes it once it has started it (a second close does nothing)
        raise
    typer.echo(f"{report.summary()}; report: {layout.report_path}")
    for name in report.failed:
        typer.echo(f"failed {name}: {report.shots[name]['error']}", err=True)
    if evaluation is not None:
        from lvcd.batch.evaluate import evaluate_batch
        from lvcd.metrics import format_table

        truth, settings = evaluation
        scores, notes = evaluate_batch(report, layout, truth, tools, settings, progress=not opts["quiet"])
        for note in notes:
            typer.echo(f"note: {note}", err=True)
        if scores is not None:
            typer.echo(format_table(scores))
            typer.echo(f"wrote {layout.evaluation_path}")
    return bool(report.failed) or report.count("pending") + report.count("running") > 0


def register(app: typer.Typer) -> None:
    app.command(
        "batch",
        help=(batch.__doc__ or "") + EXAMPLES,
        short_help="Colorize every shot of a manifest, here or on a Ray cluster (restartable).",
    )(batch)
