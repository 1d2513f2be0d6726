"""Fixtures for the training tests: a synthetic clip dataset and small configs over the tiny weights."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset

from lvcd.train.config import (
    CheckpointSection,
    DataSection,
    LogSection,
    ModelSection,
    OptimSection,
    TrainConfig,
    TrainSection,
)

TINY_CONFIG = Path(__file__).parents[1] / "fixtures" / "tiny" / "tiny_config.json"


def smooth_field(shape: tuple[int, ...], generator: torch.Generator, scale: float = 1.0) -> torch.Tensor:
    """Low-frequency random values: a coarse grid upsampled, so there is something learnable."""
    *lead, height, width = shape
    coarse = torch.randn((math.prod(lead) or 1, 1, max(1, height // 4), max(1, width // 4)), generator=generator)
    fine = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=False)
    return (fine * scale).reshape(shape)


class SyntheticClips(Dataset):
    """Items shaped like ``LVCDClipDataset``'s: ``latents`` (T, 4, h, w) scaled, reference first; ``control_hint``
    (T, 3, H, W) lines ~1; ``reference`` (3, H, W) in [-1, 1]; micro-conditioning values per frame."""

    def __init__(self, num_clips: int = 1, num_frames: int = 4, size: tuple[int, int] = (64, 64), seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        height, width = size
        self.items = []
        for _ in range(num_clips):
            latents = smooth_field((num_frames, 4, height // 8, width // 8), generator, scale=0.8)
            lines = (smooth_field((num_frames, 1, height, width), generator).abs() < 0.15).float()
            reference = smooth_field((3, height, width), generator, scale=0.6).clamp(-1, 1)
            self.items.append(
                {
                    "latents": latents,
                    "control_hint": lines.expand(-1, 3, -1, -1).contiguous(),
                    "reference": reference,
                    "fps_id": torch.full((num_frames,), 6, dtype=torch.int64),
                    "motion_bucket_id": torch.full((num_frames,), 160, dtype=torch.int64),
                    "cond_aug": torch.zeros(num_frames),
                }
            )

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return dict(self.items[index])


def tiny_train_config(weights: dict[str, Path], output_dir: Path, **train_overrides) -> TrainConfig:
    """Fine-tune the tiny model from its LVCD weights, on CPU, fp32, no workers."""
    train_fields = {
        "batch_size": 1,
        "gradient_accumulation_steps": 1,
        "max_steps": 2,
        "mixed_precision": "no",
        "gradient_checkpointing": False,
    }
    optim_fields = {}
    for key, value in train_overrides.items():
        if key in ("learning_rate", "warmup_steps", "max_grad_norm"):
            optim_fields[key] = value
        else:
            train_fields[key] = value
    return TrainConfig(
        output_dir=str(output_dir),
        seed=0,
        model=ModelSection(svd=str(weights["svd"]), lvcd=str(weights["lvcd"]), config=str(TINY_CONFIG)),
        data=DataSection(root="", size=(64, 64), num_frames=4, nframe_range=(4, 200), num_workers=0),
        train=TrainSection(**train_fields),
        optim=OptimSection(**optim_fields),
        checkpoint=CheckpointSection(every=1000),
        log=LogSection(every=1, trackers=("csv",)),
    )


@pytest.fixture
def no_model_loading(monkeypatch):
    """Fail the test if the training loop gets as far as loading models (refusals must come first)."""

    def refuse(*args, **kwargs):
        raise AssertionError("models were loaded before the refusal")

    monkeypatch.setattr("lvcd.train.loop.load_training_models", refuse)


@pytest.fixture(autouse=True, scope="package")
def single_thread():
    """The tiny model's ops are far too small to share out: one thread is several times faster on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_parts(tiny_weights):
    """(UNet + ControlNet, CLIP + conditioner VAE encoder) of the tiny model, fp32, CPU."""
    from lvcd.weights import load_model

    net, report = load_model(
        tiny_weights["svd"], tiny_weights["lvcd"], config=TINY_CONFIG, parts=("unet", "controlnet")
    )
    assert report.ok
    encoders, report = load_model(tiny_weights["svd"], None, config=TINY_CONFIG, parts=("clip", "cond_encoder"))
    assert report.ok
    return net, encoders
