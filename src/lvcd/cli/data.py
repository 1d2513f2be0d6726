"""`lvcd data`: build an LVCD training set (`prepare`), merge shard indexes (`index`), summarise a root (`inspect`)."""

from __future__ import annotations

import dataclasses
from enum import Enum
from pathlib import Path

import typer

from lvcd.cli.options import parse_size
from lvcd.errors import InputError, LVCDError

data_app = typer.Typer(
    name="data",
    help="Prepare training data: scene split, resized frames, line art and VAE latents in the official layout.",
    no_args_is_help=True,
    rich_markup_mode=None,  # plain help, as the main app's
)


class LineartMethod(str, Enum):
    informative = "informative"
    informative_coarse = "informative-coarse"
    xdog = "xdog"


class LongScenes(str, Enum):
    split = "split"
    drop = "drop"


LINEART_OPTIONS = ("--lineart-weights", "--lineart-method")  # as `lvcd colorize` names them


MAX_DATA_SIDE = 4096  # training frames larger than this would not fit a batch on any GPU (the paper trains at 320x576)


def _required_size(text: str) -> tuple[int, int]:
    size = parse_size(text)
    if size is None:
        raise InputError("--size must be HEIGHTxWIDTH, e.g. 320x576.")
    if max(size) > MAX_DATA_SIDE:
        raise InputError(
            f"--size {size[0]}x{size[1]}: training frames have at most {MAX_DATA_SIDE} pixels a side (the paper trains "
            "at 320x576); give a smaller size."
        )
    return size


_SYSTEM_ENTRIES = {"lost+found", "Thumbs.db", "desktop.ini"}  # what a fresh volume or a file browser puts there


def _check_root_folder(output: Path, inputs: list[Path] = ()) -> None:
    """A training root goes into a new or empty folder, a root to extend or resume, or a folder that holds only the
    INPUTs it is made from: never among other files, which it would not delete but would mix its own into."""
    from lvcd.data.layout import META_NAME
    from lvcd.io.paths import is_within

    if output.exists() and not output.is_dir():
        raise InputError(f"{output} is a file, not a folder: give a new folder, or a root to extend.")
    if not output.is_dir() or (output / META_NAME).is_file():
        return
    others = [
        entry.name
        for entry in sorted(output.iterdir())
        # hidden names: temporaries and probes of shards starting beside this one, .DS_Store, .nfs*; a volume's own
        if not (entry.name.startswith(".") or entry.name in _SYSTEM_ENTRIES)
        and not any(is_within(given, entry) for given in inputs)
    ]
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise InputError(
            f"{output} holds other files ({shown}) and is not an lvcd training root (no {META_NAME}); give a new or "
            "empty folder, or a root to extend."
        )


def _vae_advice(vae: Path) -> str:
    """Where the file --vae wants comes from: the base.safetensors of a `lvcd train-vae` run (its checkpoints hold
    only the bare VAE being trained, without the first_stage_model names and the measured scale factor)."""
    from lvcd.train.checkpoint import CHECKPOINTS_DIR
    from lvcd.train.vae import BASE_NAME

    run = vae.parent.parent.parent
    if vae.parent.parent.name == CHECKPOINTS_DIR:  # RUN/checkpoints/step_N/vae.safetensors
        base = run / BASE_NAME
        if base.is_file():
            return f"it looks like a checkpoint of the `lvcd train-vae` run {run}: give that run's {base}."
        return (
            f"it looks like a checkpoint of the `lvcd train-vae` run {run}, which has no {BASE_NAME} yet: train-vae "
            "writes it when the run finishes (run it again with --resume latest to finish), then give that file."
        )
    return f"give the {BASE_NAME} that `lvcd train-vae` writes in its output_dir."


def _open_vae_file(vae: Path):
    """--vae holds a VAE under the model's names (first_stage_model.*) that fits the model config the file carries
    (else the official one), read from the file's header before any work; a file without one is refused with where
    `lvcd train-vae` writes the right file. Returns the pending model (``.load(device)`` reads its tensors)."""
    from lvcd.errors import WeightsError
    from lvcd.model import PART_PREFIXES
    from lvcd.weights import WeightsFile, open_model

    advice = _vae_advice(vae)
    weights = WeightsFile(vae, "VAE", advice[0].upper() + advice[1:])
    if not any(key.startswith(PART_PREFIXES["first_stage"]) for key in weights.keys()):
        raise InputError(f"--vae {vae} holds no VAE under the model's names (first_stage_model.*); {advice}")
    try:
        carried = weights.model_config()
    except WeightsError:
        raise InputError(f"--vae {vae} carries an unreadable model config; {advice}") from None
    pending = open_model(vae, None, config=carried, parts=("first_stage",), strict=False)
    if not pending.report.ok:
        which = "the model config it carries" if carried is not None else "no model config, so the official one"
        raise InputError(
            f"--vae {vae}: its VAE does not fit '{pending.model.config.name}' (it names {which}; "
            f"{'; '.join(pending.report.lines(limit=1))}); {advice}"
        )
    return pending


def _fail(err: Exception) -> None:
    typer.echo(f"error: {err}", err=True)
    raise typer.Exit(2) from None


@data_app.command("prepare")
def prepare(
    inputs: list[Path] = typer.Argument(
        ..., metavar="INPUT...", help="Video files, folders of frames, or folders of videos."
    ),
    output: Path = typer.Option(
        ...,
        "--output",
        "-o",
        help="Training root: a new or empty folder, a root to extend or resume, or a folder holding only the INPUTs.",
    ),
    svd: Path | None = typer.Option(
        None, "--svd", help="Required: svd.safetensors (its first_stage_model VAE encodes the latents)."
    ),
    config: str | None = typer.Option(
        None, "--config", help="Model preset name or sgm JSON config (default: the file's own, else svd-lvcd)."
    ),
    size: str = typer.Option("320x576", "--size", help="Training size HEIGHTxWIDTH (official: 320x576)."),
    lineart_method: LineartMethod = typer.Option(
        LineartMethod.informative,
        "--lineart-method",
        help="Line-art extractor (the official sketches are 'informative').",
    ),
    lineart_weights: Path | None = typer.Option(None, "--lineart-weights", help="sk_model.pth (or its folder)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the latents' posterior noise (per frame: seed + frame name)."),
    shard: int = typer.Option(0, "--shard", help="This process's shard, 0 <= shard < --num-shards."),
    num_shards: int = typer.Option(1, "--num-shards", help="How many processes/GPUs share the work."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda[:N] for the VAE and the line-art network."),
    batch_size: int = typer.Option(8, "--batch-size", help="Frames per VAE batch."),
    threshold: float = typer.Option(
        30.0, "--threshold", help="Scene cut: RMSE of 1,000-colour histograms, in pixels of the frame at 64x115."
    ),
    min_frames: int = typer.Option(15, "--min-frames", help="Shortest clip kept."),
    max_frames: int = typer.Option(200, "--max-frames", help="Longest clip kept."),
    long_scenes: LongScenes = typer.Option(
        LongScenes.split, "--long-scenes", help="Scenes over --max-frames: split or drop."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Scene-split INPUTs into clips and write frames, line art and latents to OUTPUT (resumable, shardable)."""
    from lvcd.cli.checks import check_device
    from lvcd.data.inputs import collect_inputs
    from lvcd.data.prepare import Lazy, PrepareOptions, prepare_dataset
    from lvcd.data.scenes import SceneSplitConfig
    from lvcd.io.paths import check_not_input, check_output_location

    try:
        if svd is None:
            raise InputError("--svd is required: the path of svd.safetensors, whose VAE encodes the training latents.")
        if not svd.is_file():
            raise InputError(f"--svd {svd} is not a file: give the path of svd.safetensors.")
        options = PrepareOptions(
            size_hw=_required_size(size),
            seed=seed,
            batch_size=batch_size,
            scene=SceneSplitConfig(
                threshold=threshold, min_frames=min_frames, max_frames=max_frames, long_scenes=long_scenes.value
            ),
            shard=shard,
            num_shards=num_shards,
            lineart_method=lineart_method.value,
            progress=not quiet,
        )
        method, weights = lineart_method.value, lineart_weights
        collect_inputs(inputs)  # fail on a bad input now, not after loading anything
        check_device(device)
        for given in inputs:  # a root may hold its raw inputs, but is never written into one
            check_not_input(output, {"INPUT": given}, contains_ok=True)
        check_not_input(output, {"--svd": svd, "--lineart-weights": lineart_weights}, contains_ok=True)
        check_output_location(output / "lvcd_data.json")
        _check_root_folder(output, inputs)
        from lvcd.lineart.extractor import check_method

        # found, and checked from its header (readable; the generator's, not another network's), now rather than
        # when the network loads for the first frame, after a long scan
        weights = check_method(method, weights, LINEART_OPTIONS) or weights

        from lvcd.weights import check_fit

        try:  # the VAE of --svd checked against the config from the file's header now, before a long scan; it loads
            # only if latents are to be written
            model_config = check_fit(svd, None, config, parts=("first_stage",))
        except LVCDError:
            raise
        except (FileNotFoundError, ValueError) as err:  # a config that does not exist or does not parse
            raise InputError(f"--config {config}: {err}") from err
        from lvcd.data.prepare import vae_record

        # what identifies the VAE goes into the root's record: another one in a shard or resume is refused
        options = dataclasses.replace(options, vae=vae_record(svd, model_config.vae.scale_factor))

        def load_vae():
            from lvcd.weights import load_first_stage

            return load_first_stage(svd, config=model_config, device=device)

        def load_lineart():
            from lvcd.lineart import get_extractor

            extractor = get_extractor(method, weights=weights, device=device, options=LINEART_OPTIONS)
            if getattr(extractor, "warning", None):
                typer.echo(f"warning: {extractor.warning}", err=True)
            return extractor

        report = prepare_dataset(inputs, output, encoder=Lazy(load_vae), lineart=Lazy(load_lineart), options=options)
    except LVCDError as err:
        _fail(err)
    typer.echo(
        f"Shard {shard}/{num_shards}: {report.clips_in_shard} of {report.clips_total} clip(s) from {report.videos} video(s); "
        f"{report.frames_written} frame(s) written, {report.frames_skipped} already done."
    )
    if report.index_path is not None:
        typer.echo(f"Index: {report.index_path}")
    else:
        typer.echo(
            f"{report.clips_missing} clip(s) of the root are in other shards; `lvcd data index {output}` once all are done."
        )


@data_app.command("synth")
def synth(
    output: Path = typer.Argument(..., help="Root to create or extend (the layout `lvcd train` reads)."),
    split: str = typer.Option("train", "--split", help="Seed range: train, heldout (benchmark) or long."),
    shots: int = typer.Option(100, "--shots", help="How many shots to write."),
    first: int = typer.Option(0, "--first", help="Index of the first shot in the split."),
    frames: int = typer.Option(45, "--frames", help="Frames per shot (at least 15)."),
    size: str = typer.Option("64x64", "--size", help="Frame size HEIGHTxWIDTH (multiples of 8)."),
    vae: Path | None = typer.Option(
        None, "--vae", help="A weights file with a VAE (first_stage_model): also write the latents."
    ),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda[:N] for the VAE."),
    seed: int = typer.Option(0, "--seed", help="Seed of the latents' posterior noise."),
    workers: int = typer.Option(1, "--workers", help="Processes generating shots (same files as with 1)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Write synthetic cartoon shots (colour frames, line art, region labels; latents with --vae) to OUTPUT.

    Example: `lvcd data synth synth-train --shots 800 --size 64x64`, then after training the VAE,
    `lvcd data synth synth-train --shots 800 --size 64x64 --vae runs/demo-vae/base.safetensors` adds the latents.
    """
    from lvcd.cli.checks import check_device
    from lvcd.data.synth_set import check_synth_options, write_synthetic_set

    try:
        size_hw = _required_size(size)
        check_synth_options(split, shots, frames, size_hw, first, workers)  # before the VAE loads
        _check_root_folder(output)
        if vae is not None and not vae.is_file():
            raise InputError(f"--vae {vae} is not a file: give the weights file written by `lvcd train-vae`.")
        check_device(device)  # before any shot is drawn, as `prepare` does
        model = None
        if vae is not None:
            model = _open_vae_file(vae).load(device).first_stage_model
        report = write_synthetic_set(
            output,
            split,
            shots,
            frames,
            size_hw,
            first=first,
            vae=model,
            vae_weights=vae,
            seed=seed,
            progress=not quiet,
            workers=workers,
        )
    except (LVCDError, ValueError) as err:
        _fail(err)
    typer.echo(
        f"{report.root}: {report.shots} shot(s) in the index; {report.written} written, {report.skipped} already complete"
        + (f", {report.latents_written} latent(s) written" if vae is not None else "")
    )


@data_app.command("index")
def index(
    root: Path = typer.Argument(..., help="Training root written by `lvcd data prepare` (one or more shards)."),
    allow_partial: bool = typer.Option(
        False, "--allow-partial", help="Index the finished clips even if some are missing."
    ),
) -> None:
    """Merge the shard indexes of ROOT into train_clips_hist.json."""
    from lvcd.data.root import write_index

    try:
        path, written, missing = write_index(root, allow_partial=allow_partial)
    except LVCDError as err:
        _fail(err)
    typer.echo(f"Wrote {path}: {written} clip(s)" + (f", {missing} still missing" if missing else ""))


@data_app.command("inspect")
def inspect(
    root: Path = typer.Argument(..., help="Training root (ours or the official Animation_video)."),
    size: str = typer.Option("320x576", "--size", help="Training size HEIGHTxWIDTH."),
    num_frames: int = typer.Option(15, "--num-frames", help="Frames per training sample (reference included)."),
) -> None:
    """Summarise a training root: clips, frames and training samples."""
    from lvcd.data.dataset import build_samples
    from lvcd.data.layout import DatasetLayout

    try:
        height, _ = _required_size(size)
        if num_frames < 2:
            raise InputError(f"--num-frames {num_frames}: a training sample is the reference and at least one frame.")
        if not root.is_dir():
            raise InputError(f"{root} is not a folder.")
        layout = DatasetLayout(root, height)
        clips = layout.read_index()
        if clips and not layout.image_dir.is_dir():
            held = sorted(p.name for p in root.glob("img_*") if p.is_dir())
            raise InputError(
                f"{root} has no frames at height {height} ({layout.image_dir.name}/ is missing; it holds "
                f"{', '.join(held) or 'none'}): give the --size it was prepared at."
            )
    except LVCDError as err:
        _fail(err)
    lengths = sorted(len(frames) for frames in clips.values())
    samples = build_samples(clips, num_frames)
    typer.echo(
        f"{root}: {len(clips)} clip(s), {sum(lengths)} frame(s), {len(samples)} training sample(s) of {num_frames} frames"
    )
    if lengths:
        typer.echo(f"clip length: min {lengths[0]}, median {lengths[len(lengths) // 2]}, max {lengths[-1]}")


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
