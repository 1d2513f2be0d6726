"""Option parsing shared by the commands (sizes, dtypes, loading the model from files or the hub)."""

from __future__ import annotations

from lvcd.errors import InputError

DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def parse_size(text: str | None) -> tuple[int, int] | None:
    """'320x576' (height x width) -> (320, 576); empty or 'auto' -> None."""
    text = (text or "").strip().lower()
    if text in ("", "auto"):
        return None
    parts = text.replace("*", "x").split("x")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        raise InputError(f"Size {text!r} is not HEIGHTxWIDTH, e.g. 320x576.")
    return int(parts[0]), int(parts[1])


def parse_dtype(text: str | None):
    """'fp32' | 'bf16' | 'fp16' -> torch dtype; None -> None (the pipeline's default)."""
    if not text:
        return None
    if text not in DTYPES:
        raise InputError(f"dtype {text!r} is not one of {', '.join(DTYPES)}.")
    import torch

    return getattr(torch, DTYPES[text])


def load_pipeline(svd, lvcd, config=None, device=None, dtype: str | None = None, offload: bool = False):
    """The pipeline from local files, or (no --svd) from the Hugging Face cache."""
    from lvcd.pipeline import LVCDPipeline

    kwargs = {"config": config, "device": device, "dtype": parse_dtype(dtype), "offload": offload}
    if svd is None:
        return LVCDPipeline.from_pretrained(**kwargs)
    return LVCDPipeline.from_single_file(svd, lvcd, **kwargs)
