"""Re-create the tiny fixture weights bit-exactly from ``weights_manifest.json``.

The fixtures define every tensor by a formula instead of storing 137 MB of random numbers:

    rs = numpy.random.RandomState(crc32(f"{seed}:{key}"))      # MT19937, frozen by NEP 19
    u  = rs.random_sample((4,) + shape)                        # float64 in [0, 1)
    z  = ((u[0] + u[1]) + (u[2] + u[3]) - 2) * sqrt(3)         # Irwin-Hall(4): mean 0, variance 1
    w  = float32(z * std + mean)

and this module writes the two files in the official formats: ``tiny_svd.safetensors`` (like
Stability's ``svd.safetensors``) and ``tiny_lvcd.ckpt`` (a Lightning-style pickle holding
``{'state_dict': ...}``, like ``lvcd.ckpt``).

    >>> paths = materialize("tests/fixtures/tiny/weights_manifest.json", "/tmp/tiny")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zlib
from pathlib import Path

import numpy as np

_SQRT3 = math.sqrt(3.0)


def make_tensor(seed: int, key: str, shape, mean: float, std: float) -> np.ndarray:
    shape = tuple(int(s) for s in shape)
    rs = np.random.RandomState(zlib.crc32(f"{seed}:{key}".encode()) & 0xFFFFFFFF)
    u = rs.random_sample((4,) + shape)
    z = ((u[0] + u[1]) + (u[2] + u[3]) - 2.0) * _SQRT3
    return np.asarray(z * float(std) + float(mean), dtype=np.float64).astype(np.float32).reshape(shape)


def sha256_of(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array, dtype="<f4").tobytes()).hexdigest()


def materialize(manifest_path: str | os.PathLike, out_dir: str | os.PathLike, verify: bool = True) -> dict[str, Path]:
    """Write ``tiny_svd.safetensors`` and ``tiny_lvcd.ckpt`` into ``out_dir``; return their paths.

    Files already present with the right content (checked by hash when ``verify``) are kept.
    """
    import torch
    from safetensors.numpy import save_file

    manifest = json.loads(Path(manifest_path).read_text())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    svd_path, ckpt_path = out / "tiny_svd.safetensors", out / "tiny_lvcd.ckpt"
    done = out / ".complete"
    if svd_path.exists() and ckpt_path.exists() and done.exists():
        return {"svd": svd_path, "lvcd": ckpt_path}
    seed = manifest["seed"]
    arrays = {}
    for key, spec in manifest["tensors"].items():
        arrays[key] = make_tensor(seed, key, spec["shape"], spec["mean"], spec["std"])
        if verify and sha256_of(arrays[key]) != spec["sha256"]:
            raise RuntimeError(f"Tiny weight {key} does not match its manifest hash; the generator formula drifted.")
    svd_keys = manifest["files"]["tiny_svd.safetensors"]
    ckpt_keys = manifest["files"]["tiny_lvcd.ckpt"]
    save_file({k: arrays[k] for k in svd_keys}, str(svd_path))
    torch.save({"state_dict": {k: torch.from_numpy(arrays[k].copy()) for k in ckpt_keys}}, ckpt_path)
    done.write_text("ok\n")
    return {"svd": svd_path, "lvcd": ckpt_path}
