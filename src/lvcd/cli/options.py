"""Option parsing shared by the commands (dtypes, loading the model from files or the hub).

Sizes are parsed by the library's one parser, :func:`lvcd.io.sizing.parse_size` (re-exported here for the commands).
"""

from __future__ import annotations

from pathlib import Path

from lvcd.errors import InputError
from lvcd.io.sizing import parse_size

__all__ = ["DTYPES", "load_pipeline", "parse_dtype", "parse_size"]

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def parse_dtype(text: str | None, option: str = "--dtype"):
    """'fp32' | 'bf16' | 'fp16' -> torch dtype; None -> None (the pipeline's default)."""
    if not text:
        return None
    if text not in DTYPES:
        raise InputError(f"{option} {text!r} is not one of {', '.join(DTYPES)}.")
    import torch

    return getattr(torch, DTYPES[text])


def packaged_model(model: str | None, svd, lvcd) -> Path | None:
    """The weights file of ``--model`` (only 'demo', shipped in the package; None without ``--model``); one line for
    another name or for ``--model`` given with ``--svd``/``--lvcd``."""
    if model is None:
        return None
    if model != "demo":
        raise InputError(f"--model {model!r}: the only packaged model is 'demo'; give --svd/--lvcd for others.")
    if svd is not None or lvcd is not None:
        raise InputError("--model demo replaces --svd/--lvcd: give one or the other.")
    from lvcd.demo import demo_weights_path

    return demo_weights_path()


def load_pipeline(
    svd,
    lvcd,
    config=None,
    device=None,
    dtype: str | None = None,
    offload: bool = False,
    model: str | None = None,
    vae_dtype: str | None = None,
    lazy: bool = False,
):
    """The pipeline from local files, the packaged demo model (``model="demo"``), or (no --svd) the Hugging Face cache.
    ``lazy``: the files are checked now and their tensors read when the first shot needs them (``from_single_file``)."""
    from lvcd.hub import weights_files
    from lvcd.pipeline import LVCDPipeline

    kwargs = {"config": config, "device": device, "dtype": parse_dtype(dtype), "offload": offload, "lazy": lazy}
    if vae_dtype is not None:
        kwargs["vae_dtype"] = parse_dtype(vae_dtype, "--vae-dtype")
    if packaged_model(model, svd, lvcd) is not None:
        if kwargs["dtype"] is None:
            kwargs.pop("dtype")
        return LVCDPipeline.from_pretrained("demo", **kwargs)
    return LVCDPipeline.from_single_file(*weights_files(svd, lvcd), **kwargs)
