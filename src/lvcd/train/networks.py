"""The networks of a fine-tuning run: the UNet + ControlNet it trains, the frozen encoders that condition them, and
the module data parallelism wraps.

    >>> net, encoders, info = load_training_models(config)     # doctest: +SKIP
    >>> info["controlnet_init"], len(info["trainable"])         # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lvcd.config import LVCDConfig, get_config
from lvcd.errors import LVCDError, WeightsError
from lvcd.model import PART_PREFIXES, Conditioning, LVCDModel
from lvcd.train.config import TrainConfig, TrainConfigError
from lvcd.train.loss import diffusion_loss
from lvcd.train.trainable import build_from_scratch, init_controlnet_from_unet, set_trainable
from lvcd.weights import LoadReport, WeightsFile, open_model


def model_config_setting(value: str) -> LVCDConfig:
    """The model config a ``model.config`` setting names (a preset or a JSON file); an unknown name, a missing or
    unreadable file is one TrainConfigError line."""
    try:
        return get_config(value)
    except LVCDError:
        raise
    except (ValueError, KeyError, TypeError, OSError) as err:
        detail = " ".join(str(err).split()) or type(err).__name__
        raise TrainConfigError(f"model.config {value!r}: {detail}") from None


def resolve_model_config(section) -> LVCDConfig:
    """``model.config`` if given, else the config the ``model.svd`` file carries (our files do), else svd-lvcd."""
    if section.config:
        return model_config_setting(section.config)
    if section.svd and Path(section.svd).is_file():
        carried = WeightsFile(section.svd, "svd").model_config()
        if carried is not None:
            return carried
    return get_config(None)


def load_training_models(config: TrainConfig) -> tuple[LVCDModel, LVCDModel, dict[str, Any]]:
    """(denoiser model: UNet + ControlNet, frozen encoders: CLIP + conditioner VAE encoder, info), fp32 on CPU.

    Without ``model.lvcd`` the ControlNet is initialised from the UNet (official ``init_from_unet``); with it, the
    ControlNet and the UNet attention start from those weights (unless ``controlnet_from_unet = true``). With
    ``model.from_scratch`` both networks start from a seeded random init and ``model.svd`` only gives the encoders.
    """
    section = config.model
    if not section.svd:
        raise TrainConfigError(
            "model.svd is required: the path of svd.safetensors (or of a base file of `lvcd train-vae`)."
        )
    model_config = resolve_model_config(section)
    # Every file checked from its headers before any tensor is read: the encoders, then the UNet + ControlNet.
    pending_encoders = open_model(section.svd, None, config=model_config, parts=("clip", "cond_encoder"), strict=True)
    if section.from_scratch:
        net = build_from_scratch(model_config, seed=config.seed)
        info: dict[str, Any] = {"controlnet_init": "random (from scratch)"}
    else:
        from_unet = section.controlnet_from_unet if section.controlnet_from_unet is not None else section.lvcd is None
        pending = open_model(section.svd, section.lvcd, config=model_config, parts=("unet", "controlnet"), strict=False)
        _check_training_fit(pending.report, section, model_config)
        net = pending.load()
        info = {"controlnet_init": "unet" if from_unet else "weights"}
        if from_unet:
            init_controlnet_from_unet(net, seed=config.seed)
    encoders = pending_encoders.load()
    info["trainable"] = set_trainable(net, config.train.trainable)
    return net, encoders, info


def _check_training_fit(report: LoadReport, section, model_config: LVCDConfig) -> None:
    """The UNet + ControlNet key report (from the files' headers) fits ``model_config``; without ``model.lvcd`` the
    ControlNet's keys may be missing (it starts from the UNet). A WeightsError naming the files otherwise."""
    allowed = PART_PREFIXES["controlnet"] if section.lvcd is None else None
    missing = [k for k in report.missing if allowed is None or not k.startswith(allowed)]
    if missing or report.unexpected or report.shape_mismatch:
        files = " + ".join(str(f) for f in (section.svd, section.lvcd) if f is not None)
        report = dataclasses.replace(report, missing=missing)  # those no init provides
        raise WeightsError(
            f"The training weights ({files}) do not fit the '{model_config.name}' model: {report.describe()}. "
            "Give model.config the config these files were made with, or the files of this model."
        )


class TrainingModule(nn.Module):
    """What data parallelism wraps: the UNet + ControlNet and the loss (conditioning comes in precomputed)."""

    def __init__(self, net: LVCDModel):
        super().__init__()
        self.net = net

    def forward(self, latents, concat, crossattn, vector, hint, sigma, noise) -> tuple[torch.Tensor, torch.Tensor]:
        out = diffusion_loss(self.net, latents, Conditioning(concat, crossattn, vector, hint), sigma=sigma, noise=noise)
        return out.loss, out.frame_losses
