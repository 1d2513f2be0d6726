"""`lvcd evaluate`: score colorized clips against their ground truth (PSNR, SSIM, LPIPS, FID, FVD, EDMD, TC, region)."""

from __future__ import annotations

from pathlib import Path

import typer

from lvcd.errors import InputError, LVCDError

MAX_EVAL_SIDE = 4096  # every clip is held whole at the evaluation size: far beyond the paper's 256 at this side


def evaluate(
    pred: Path | None = typer.Option(None, "--pred", help="Generated frames: a folder of images, a video or a GIF."),
    gt: Path | None = typer.Option(None, "--gt", help="Ground-truth frames, frame-aligned with --pred."),
    manifest: Path | None = typer.Option(
        None,
        "--manifest",
        help="JSON or CSV list of clips {name, pred, gt[, lineart][, labels]} instead of --pred/--gt.",
    ),
    lineart: Path | None = typer.Option(
        None, "--lineart", help="The input line art the clip was drawn from: the reference of edmd (the paper's EDMD)."
    ),
    labels: Path | None = typer.Option(
        None, "--labels", help="A folder of region label maps (8- or 16-bit PNGs, one per frame): adds region accuracy."
    ),
    root_inputs: bool = typer.Option(
        True,
        "--root-inputs/--no-root-inputs",
        help="When the ground truth is ROOT/img_H/<clip> of an lvcd data root, use ROOT/draw_H/<clip> as line art "
        "and ROOT/label_H/<clip> as label maps unless given.",
    ),
    size: str = typer.Option("256", "--size", help="Evaluation size: N for NxN (the paper: 256) or HxW."),
    skip_frames: int = typer.Option(
        0,
        "--skip-frames",
        min=0,
        help="Leave out the first N frames of every clip, e.g. 1 for lvcd output, whose frame 0 is the reference "
        "itself (default 0: every frame is scored).",
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write per-clip and aggregate results to this JSON."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --json file."),
    metrics: str = typer.Option(
        "default",
        "--metrics",
        help="Comma-separated from psnr,ssim,lpips,fid,fvd,edmd,edmd_gt,tc,tc_mse,region; or default (all but "
        "tc_mse), all, paper (the paper's seven).",
    ),
    lpips_weights: list[Path] = typer.Option(
        [], "--lpips-weights", help="LPIPS files; repeat for lpips v0.1 alex.pth and alexnet-owt-7be5be79.pth."
    ),
    inception_weights: Path | None = typer.Option(
        None, "--inception-weights", help="pt_inception-2015-12-05-6726825d.pth or inception-2015-12-05.pt (FID)."
    ),
    i3d_weights: Path | None = typer.Option(
        None, "--i3d-weights", help="i3d_torchscript.pt or i3d_pretrained_400.pt (FVD)."
    ),
    weights_dir: Path | None = typer.Option(
        None,
        "--weights-dir",
        help="Folder searched for the metric weight files by their usual names (default: $LVCD_METRIC_WEIGHTS).",
    ),
    sketch_method: str | None = typer.Option(
        None,
        "--sketch-method",
        help="EDMD sketch extractor: informative, informative-coarse or xdog "
        "(default: informative with --sketch-weights, else xdog).",
    ),
    sketch_weights: Path | None = typer.Option(None, "--sketch-weights", help="sk_model.pth for EDMD sketches."),
    flow: str = typer.Option(
        "auto",
        "--flow",
        help="Optical flow for TC: raft (the paper's; needs --raft-weights or a RAFT file in --weights-dir), "
        "dis (OpenCV, no weights) or auto (raft when its weights are found, else dis).",
    ),
    raft_weights: Path | None = typer.Option(
        None,
        "--raft-weights",
        help="RAFT-large weights: raft-things.pth (the authors'), raft_large_*.pth "
        "(torchvision's) or a TorchScript export.",
    ),
    raft_iters: int | None = typer.Option(
        None, "--raft-iters", min=1, help="RAFT update iterations (default 20, as the authors' demo)."
    ),
    allow_torchscript: bool = typer.Option(
        False,
        "--allow-torchscript",
        help="Run TorchScript weight files (inception-2015-12-05.pt, i3d_torchscript.pt, RAFT exports): they are "
        "programs, not only weights; without this flag only plain state dicts load.",
    ),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda (cuda:N)."),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Frames per network call."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar on stderr."),
) -> None:
    """Score generated clips against ground truth as the LVCD paper does, at 256x256 by default.

    Metrics whose weights are not given are skipped (with the reason); the others are computed.
    See docs/metrics.md for where to obtain the weight files.
    """
    from lvcd.cli.checks import check_device, check_report_output
    from lvcd.metrics import (
        ClipSpec,
        EvalSettings,
        build_tools,
        evaluate_clips,
        format_table,
        parse_metrics,
        parse_size,
        read_manifest,
        report_to_dict,
        with_root_inputs,
        write_json_atomic,
    )
    from lvcd.metrics.clips import DEFAULT_SIZE
    from lvcd.metrics.evaluate import check_inputs, check_weight_options

    try:
        if manifest is not None:
            if pred is not None or gt is not None or lineart is not None or labels is not None:
                raise InputError("give either --manifest or --pred/--gt[/--lineart/--labels], not both")
            specs = read_manifest(manifest)
        else:
            if pred is None or gt is None:
                raise InputError("give --pred and --gt (frame folders or videos), or --manifest")
            specs = [ClipSpec(name=pred.name or str(pred), pred=pred, gt=gt, lineart=lineart, labels=labels)]
        added = 0
        if root_inputs:
            found = [with_root_inputs(spec) for spec in specs]
            added = sum((a.lineart, a.labels) != (b.lineart, b.labels) for a, b in zip(found, specs, strict=True))
            specs = found
        if json_out is not None:
            given = [p for spec in specs for p in (spec.pred, spec.gt, spec.lineart, spec.labels)]
            given += [manifest, inception_weights, i3d_weights, sketch_weights, raft_weights, *lpips_weights]
            check_report_output(json_out, given, overwrite)
        check_device(device)
        size_hw = parse_size(size, minimum=32) or DEFAULT_SIZE
        if max(size_hw) > MAX_EVAL_SIDE:
            raise InputError(
                f"--size {size_hw[0]}x{size_hw[1]}: at most {MAX_EVAL_SIDE} pixels a side (the paper evaluates at 256)."
            )
        settings = EvalSettings(
            size=size_hw, metrics=parse_metrics(metrics), batch_size=batch_size, skip_frames=skip_frames
        )
        # Before any network loads: the files given for the metrics, then every clip (frame counts, damaged frames)
        networks = {
            "lpips_weights": lpips_weights, "inception_weights": inception_weights, "i3d_weights": i3d_weights,
            "sketch_method": sketch_method, "sketch_weights": sketch_weights, "flow": flow,
            "raft_weights": raft_weights,
        }  # fmt: skip
        check_weight_options(settings.metrics, **networks)
        check_inputs(specs, settings, progress)
        tools = build_tools(
            settings.metrics,
            **networks,
            weights_dir=weights_dir,
            raft_iters=raft_iters,
            device=device,
            allow_torchscript=allow_torchscript,
            size=size_hw,
        )
        report = evaluate_clips(specs, tools, settings, progress=progress, inputs_checked=True)
        if json_out is not None:
            write_json_atomic(json_out, report_to_dict(report), allow_nan=False)
    except LVCDError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(format_table(report))
    if added:
        typer.echo(f"inputs: line art / label maps taken from the data root of the ground truth for {added} clip(s)")
    if json_out is not None:
        typer.echo(f"Wrote {json_out}")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
