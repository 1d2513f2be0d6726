"""The official weights through the Hugging Face cache: SVD (licence-gated) and LVCD's release.

>>> svd_path, lvcd_path = weights_files()            # doctest: +SKIP  (cached: no request; else downloaded)
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from lvcd.errors import WeightsError

SVD_REPO = ("stabilityai/stable-video-diffusion-img2vid", "svd.safetensors")
LVCD_REPO = ("luckyhzt/lvcd_pretrained_models", "lvcd.ckpt")


def hub_file(repo_and_file: tuple[str, str], cache_dir=None) -> str:
    """The local path of an official file: from the Hugging Face cache when it is there (no request at all), else
    downloaded (SVD needs its licence accepted and a login). One error, saying what to do, when neither works."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache

    repo_id, filename = repo_and_file
    # a cached file needs no request: the hub would ask for a newer revision first (retrying when offline)
    cached = try_to_load_from_cache(repo_id, filename, cache_dir=cache_dir)
    if isinstance(cached, str) and os.path.isfile(cached):
        return cached
    try:
        with _quiet_retries():
            return hf_hub_download(repo_id=repo_id, filename=filename, cache_dir=cache_dir)
    except Exception as err:  # noqa: BLE001 - every hub failure gets the same guidance
        raise WeightsError(
            f"Could not get {filename} from huggingface.co/{repo_id} ({type(err).__name__}: {err}). "
            "SVD is licence-gated: accept its licence on the model page, then `hf auth login` (or set HF_TOKEN). "
            "Offline (HF_HUB_OFFLINE=1) only files already in the cache are found. "
            "Alternatively download the files yourself and give them with --svd/--lvcd "
            "(Python: LVCDPipeline.from_single_file)."
        ) from err


@contextmanager
def _quiet_retries() -> Iterator[None]:
    """huggingface_hub's own warnings off while a file is fetched: without a network it logs two lines per retry
    (about ten over some 20 s) before its error, which lvcd reports in one line; its download bar stays."""
    hub_logger = logging.getLogger("huggingface_hub")
    previous = hub_logger.level
    hub_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        hub_logger.setLevel(previous)


def weights_files(svd=None, lvcd=None, cache_dir=None) -> tuple[str, str | None]:
    """The files to load: ``svd`` and ``lvcd`` as given; without ``svd``, the official SVD file from the Hugging Face
    cache, and the official lvcd.ckpt too unless ``lvcd`` is given (a fine-tuned one, say). ``svd`` alone is a
    whole-model file (``lvcd convert --subset full``)."""
    if svd is not None:
        return str(svd), None if lvcd is None else str(lvcd)
    return hub_file(SVD_REPO, cache_dir), str(lvcd) if lvcd is not None else hub_file(LVCD_REPO, cache_dir)
