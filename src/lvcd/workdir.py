"""A job's work directory: settings fingerprint, hints, start state and one file per finished window.

Every file is written atomically, so a run killed at any point resumes from its last finished window and produces
output bit-identical to an uninterrupted run (the carried state is stored exactly, in float32).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from lvcd.errors import InputError
from lvcd.io.atomic import write_json_atomic
from lvcd.sampling import CarryState
from lvcd.weights import save_safetensors

SETTINGS = "settings.json"


def fingerprint(settings: dict, *arrays) -> str:
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for array in arrays:
        data = array.numpy() if isinstance(array, torch.Tensor) else array
        digest.update(memoryview(data.reshape(-1).view("uint8")) if data.flags.c_contiguous else data.tobytes())
    return digest.hexdigest()


class WorkDir:
    def __init__(self, path: str | os.PathLike, resume: bool):
        self.path = Path(path)
        self.resume = resume
        if self.path.exists() and not (self.path / SETTINGS).exists() and any(self.path.iterdir()):
            raise InputError(
                f"Work directory {self.path} exists and is not an lvcd work directory; choose an empty or new --work-dir."
            )
        if self.path.exists() and not resume:
            shutil.rmtree(self.path)  # a previous job's leftovers: start afresh
        self.path.mkdir(parents=True, exist_ok=True)

    @property
    def hints_path(self) -> Path:
        return self.path / "hints.npy"

    def bind(self, job_fingerprint: str) -> None:
        """Record this job; when resuming, refuse a work directory of another job."""
        settings = self.path / SETTINGS
        if settings.exists():
            recorded = json.loads(settings.read_text()).get("fingerprint")
            if recorded != job_fingerprint:
                raise InputError(
                    f"Work directory {self.path} belongs to a job with other inputs or settings; "
                    "run without --resume to start afresh, or give the same inputs and options."
                )
            return
        for stale in self.path.glob("window_*.safetensors"):
            stale.unlink()
        write_json_atomic(settings, {"fingerprint": job_fingerprint})

    def save_start(self, tensors: dict[str, torch.Tensor]) -> None:
        save_safetensors(tensors, self.path / "start.safetensors")

    def load_start(self) -> dict[str, torch.Tensor] | None:
        path = self.path / "start.safetensors"
        return load_file(str(path)) if path.exists() else None

    def save_window(self, index: int, new_latents: torch.Tensor, state: CarryState) -> None:
        tensors = {
            "new_latents": new_latents,
            "noise": state.noise,
            "prev_latents": state.prev_latents,
            "blend_history": state.blend_history,
        }
        save_safetensors(tensors, self.path / f"window_{index:06d}.safetensors")

    def finished_windows(self) -> int:
        count = 0
        while (self.path / f"window_{count:06d}.safetensors").exists():
            count += 1
        return count

    def load_window(self, index: int, device) -> tuple[torch.Tensor, CarryState]:
        data = load_file(str(self.path / f"window_{index:06d}.safetensors"), device=str(device))
        return data["new_latents"], CarryState(data["noise"], data.get("prev_latents"), data.get("blend_history"))

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
