"""`lvcd convert`: rewrite the official weights as one safetensors file (no pickle, optionally fp16/bf16).

    lvcd convert --svd svd.safetensors --lvcd lvcd.ckpt -o lvcd-fp16.safetensors --dtype fp16
    lvcd convert --svd svd.safetensors --lvcd lvcd.ckpt -o lvcd-full.safetensors --subset full

``--subset lvcd`` (default) keeps what LVCD trained (ControlNet + the UNet's self-attention projections, the
831 tensors of lvcd.ckpt): a small file to use in place of lvcd.ckpt, next to svd.safetensors.
``--subset full`` writes the whole model: one file that replaces both.
The files are checked and the output's size computed from their headers first: a disk without room for it is said
(how much is needed and free) before any tensor is read, and only the tensors written are read.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer

from lvcd.cli.options import parse_dtype
from lvcd.errors import LVCDError


class Subset(str, Enum):
    lvcd = "lvcd"
    full = "full"


class DType(str, Enum):
    fp32 = "fp32"
    fp16 = "fp16"
    bf16 = "bf16"


_USE_HINT = {
    Subset.lvcd: "use it in place of lvcd.ckpt, together with svd.safetensors",
    Subset.full: "use it alone, in place of svd.safetensors + lvcd.ckpt",
}


def _count_tensors(path: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return len(list(f.keys()))


def convert(
    svd: Path = typer.Option(..., "--svd", help="The official svd.safetensors (Stability SVD img2vid)."),
    lvcd: Path = typer.Option(..., "--lvcd", help="The official lvcd.ckpt (or an earlier `lvcd convert` output)."),
    output: Path = typer.Option(..., "--output", "-o", help="The .safetensors file to write."),
    subset: Subset = typer.Option(
        Subset.lvcd,
        "--subset",
        help="lvcd: only the LVCD-trained tensors (a small file replacing lvcd.ckpt); full: the whole model in one file.",
    ),
    dtype: DType = typer.Option(DType.fp32, "--dtype", help="Precision of the stored tensors."),
    config: str | None = typer.Option(
        None,
        "--config",
        help="Model config: a preset name or a JSON config (default: the config the files carry, else svd-lvcd).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output file."),
) -> None:
    """Convert the official weights (Lightning pickle lvcd.ckpt + svd.safetensors) to one safetensors file."""

    from lvcd.cli.checks import check_config, check_weights_files
    from lvcd.config import get_config
    from lvcd.io.atomic import check_no_other_writer
    from lvcd.io.paths import check_not_input, check_output_location
    from lvcd.io.space import human_size
    from lvcd.weights import check_converted_name
    from lvcd.weights import convert as convert_weights

    try:
        check_config(config)
        try:
            model_config = get_config(config) if config is not None else None  # None: the files' own config
        except (ValueError, FileNotFoundError) as err:  # config errors are user errors here
            raise LVCDError(str(err)) from err
        if output.exists() and output.is_dir():
            raise LVCDError(f"Output {output} is a folder; give the path of the .safetensors file to write.")
        check_weights_files(svd, lvcd)
        config_file = Path(config) if config is not None and Path(config).is_file() else None
        check_not_input(output, {"--svd": svd, "--lvcd": lvcd, "--config": config_file})
        check_converted_name(output)
        if output.exists() and not overwrite:
            raise LVCDError(f"{output} exists; pass --overwrite or choose another output name.")
        check_output_location(output)
        check_no_other_writer(output, "--output")  # before reading gigabytes; checked again when writing
        typer.echo(f"Reading {svd} and {lvcd} ...", err=True)
        written = convert_weights(
            svd,
            lvcd,
            output,
            subset=subset.value,
            dtype=parse_dtype(dtype.value),
            config=model_config,
            overwrite=overwrite,
        )
    except LVCDError as err:
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(2) from None
    typer.echo(
        f"Wrote {written}: {_count_tensors(written)} tensors, {human_size(written.stat().st_size)}, {dtype.value} "
        f"(subset {subset.value}; {_USE_HINT[subset]})"
    )


def register(app: typer.Typer) -> None:
    app.command("convert")(convert)
