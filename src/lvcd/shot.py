"""One shot resolved for sampling: its images as model tensors, its settings (``ShotJob``), its fingerprint and its
start state (the first window's noise and the references' latents). One function per concern; ``LVCDPipeline``
strings them together.
"""

from __future__ import annotations

import json
import operator
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from lvcd.config import LVCDConfig
from lvcd.errors import InputError
from lvcd.hints import HintStore, HintView
from lvcd.io import SizePlan, fit_image, load_image, to_rgb_uint8
from lvcd.longvideo import WindowPlan
from lvcd.model import LVCDModel
from lvcd.sampling import ReferenceLatents, SamplingSchemes, encode_reference
from lvcd.seeds import draw_seed
from lvcd.workdir import WorkDir, fingerprint_with_parts


@dataclass(frozen=True, kw_only=True)
class ShotJob:
    """A shot's resolved inputs and settings, as the sampler needs them."""

    windows: WindowPlan
    plan: SizePlan
    hints: HintStore | HintView  # a view for one pass of a shot coloured from a frame inside it
    images: dict[int, torch.Tensor]  # frame index -> (1, 3, H, W) in [-1, 1]: the reference (0) and keyframes
    polarity: str
    num_steps: int
    seed: int | None
    initial_noise: torch.Tensor | None  # (window, 4, h, w)
    reference_noise: torch.Tensor | None  # (1, 4, h, w)
    prev_attn_steps: int | None
    work: WorkDir
    progress: bool
    callback: Callable | None = None  # called with a pipeline.SamplingProgress after every step; may raise to cancel
    schemes: SamplingSchemes = SamplingSchemes()  # prev-reference attention, blending, reference mode
    sampler: str = "euler"  # a name in lvcd.diffusion.SAMPLERS
    levelled: bool = False  # the hints were levelled (lvcd.io.paper): recorded so a refused resume can say so
    # a shot coloured from a reference inside it runs in two passes from that frame: 1 toward the end, -1 toward frame
    # 0 (pass frame i is shot frame reference_frame + direction * i; hints and images are the pass's)
    reference_frame: int = 0
    direction: int = 1


def whole_number(value, what: str, low: int, high: int | None = None, hint: str = "") -> int:
    """``value`` as an int when it is a whole number (numpy integers too, not a bool) in ``low..high``; else a
    one-line InputError naming ``what``."""
    try:
        number = None if isinstance(value, bool) else operator.index(value)
    except TypeError:
        number = None
    if number is None or number < low or (high is not None and number > high):
        span = f"from {low} to {high}" if high is not None else f"of at least {low}"
        raise InputError(f"{what} must be a whole number {span}{hint}, got {value!r}.")
    return number


def _brief(value) -> str:
    """A value for an error message: its type, and its repr when that is short (one line)."""
    if isinstance(value, np.ndarray):
        return f"a numpy array {value.shape}"
    text = " ".join(repr(value).split())
    return f"{type(value).__name__} {text}" if len(text) <= 40 else type(value).__name__


def check_callback(callback) -> None:
    if callback is not None and not callable(callback):
        raise InputError(f"callback must be a function taking a SamplingProgress, or None; got {_brief(callback)}.")


def reference_tensor(image, plan: SizePlan, what: str, *, stacklevel: int = 2) -> torch.Tensor:
    """Any image -> (1, 3, H, W) in [-1, 1] at the processing size. Float inputs at the processing size are kept exact.
    ``stacklevel``: the warning's (a reference of another aspect ratio), as ``warnings.warn`` counts it from here."""
    if isinstance(image, (str, os.PathLike)):
        image = load_image(image)
    if isinstance(image, torch.Tensor) and image.is_floating_point():
        tensor = image.detach().float().cpu()
        tensor = tensor[None] if tensor.ndim == 3 else tensor
        if tensor.ndim != 4 or tensor.shape[:2] != (1, 3) or not tensor.numel():
            raise InputError(f"The {what} tensor must be (3, H, W) in [0, 1], got {tuple(image.shape)}.")
        values = tensor.numpy()  # on the CPU already: read with numpy, not as tensor ops a GPU would wait on
        finite = bool(np.isfinite(values).all())
        if not finite or values.min() < -1e-3 or values.max() > 1 + 1e-3:
            raise InputError(
                f"The {what} tensor must hold values in [0, 1] (it holds {values.min():g} to {values.max():g}"
                f"{'' if finite else ', and NaN or inf'})."
            )
        if tuple(tensor.shape[-2:]) == plan.model_hw and plan.is_identity:
            return tensor * 2 - 1
        image = (tensor[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    try:
        rgb = to_rgb_uint8(image)
    except (TypeError, ValueError) as err:
        raise InputError(
            f"The {what} is not an image ({err}); give a file path, a PIL image, an array or a tensor in [0, 1]."
        ) from err
    if rgb.shape[:2] != plan.input_hw:  # a reference of another size: bring it to the line art's size first
        (h, w), (hi, wi) = rgb.shape[:2], plan.input_hw
        if abs(w / h - wi / hi) > 0.01 * wi / hi:
            warnings.warn(
                f"The {what} is {w}x{h} but the line art is {wi}x{hi} (another aspect ratio): it is stretched to the "
                "line art's size. Give the coloured version of the shot's frame for the best colour transfer.",
                stacklevel=stacklevel,
            )
        rgb = np.asarray(Image.fromarray(rgb).resize(plan.input_hw[::-1], Image.Resampling.BICUBIC))
    fitted = fit_image(rgb, plan)
    return torch.from_numpy(fitted).permute(2, 0, 1)[None].float() / 127.5 - 1


def keyframe_indices(keyframes) -> dict[int, object]:
    """``{frame index: image}`` from a mapping whose keys are frame indices (ints, or digit strings as in JSON)."""
    if keyframes is not None and not isinstance(keyframes, Mapping):
        raise InputError(
            f"keyframes must be a dict {{frame index: image}}, got {type(keyframes).__name__}; give {{40: image}}."
        )
    resolved: dict[int, object] = {}
    for key, image in dict(keyframes or {}).items():
        if image is None:
            raise InputError(f"Keyframe {key!r} is None; give an image (a path, a PIL image, an array or a tensor).")
        text = str(key).strip()
        if isinstance(key, bool) or not (isinstance(key, int) or text.isdigit()):
            raise InputError(
                f"Keyframe key {key!r} is not a frame index; give {{40: image}}, frame 0 being the reference."
            )
        if int(text) in resolved:
            raise InputError(f"Keyframe {int(text)} is given twice; give one image per frame.")
        resolved[int(text)] = image
    return dict(sorted(resolved.items()))


def warn_unused_keyframes(
    keyframes: dict[int, object], windows: WindowPlan, *, stacklevel: int = 2, origin: int = 0, direction: int = 1
) -> None:
    """A keyframe takes over from the first window that starts at or after it: one after the last window's start
    changes nothing, which is said rather than silently ignored (``stacklevel`` as ``warnings.warn`` counts it).
    ``keyframes`` are indexed in a pass that runs from shot frame ``origin`` by ``direction`` (1: toward the end, -1:
    toward frame 0); the warning names shot frames."""
    last_start = max((window.first_new_frame for window in windows.windows), default=0)
    late = [origin + direction * index for index in keyframes if index > last_start]
    if late:
        last = origin + direction * last_start
        toward = "frame 0" if direction < 0 else "the end"
        windows_text = "windows that start at or after it" if origin == 0 else f"windows toward {toward} from it on"
        warnings.warn(
            f"keyframe{'s' if len(late) > 1 else ''} {', '.join(map(str, late))} change{'' if len(late) > 1 else 's'} nothing: a keyframe guides the "
            f"{windows_text}, and the last one starts at frame {last}; give keyframes at or "
            f"{'after' if direction < 0 else 'before'} frame {last}.",
            stacklevel=stacklevel,
        )


def start_noise_shape(windows: WindowPlan, plan: SizePlan, config: LVCDConfig) -> tuple[int, ...]:
    """Shape of the first window's noise: (window frames, 4, H/8, W/8)."""
    return (windows.window_size, config.vae.z_channels, *(s // config.vae.downsample_factor for s in plan.model_hw))


def reference_noise_shape(plan: SizePlan, config: LVCDConfig) -> tuple[int, ...]:
    """Shape of the reference's VAE eps: (1, 4, H/8, W/8)."""
    return (1, config.vae.z_channels, *(s // config.vae.downsample_factor for s in plan.model_hw))


def check_noise(noise, what: str) -> None:
    """``noise`` (``initial_noise`` or ``reference_noise``) None, or a float tensor of finite values: else a one-line
    InputError (NaN noise would make every frame NaN, silently)."""
    if noise is None:
        return
    if not isinstance(noise, torch.Tensor) or not noise.is_floating_point():
        kind = f"a {noise.dtype} tensor" if isinstance(noise, torch.Tensor) else _brief(noise)
        raise InputError(f"{what} must be a float torch tensor, got {kind}; give e.g. torch.from_numpy(array).float().")
    if not bool(torch.isfinite(noise).all()):
        raise InputError(f"{what} holds NaN or infinite values; give finite noise (e.g. from torch.randn).")


def check_noise_shape(noise: torch.Tensor | None, what: str, shape: tuple[int, ...]) -> None:
    if noise is not None and tuple(noise.shape) != shape:
        raise InputError(f"{what} must have shape {shape} for this shot, got {tuple(noise.shape)}.")


def resolve_seed(job: ShotJob) -> int | None:
    """The job's seed; when some noise must be drawn (the first window's or the reference's not given, or a
    keyframe's VAE sample, which is always drawn) and no seed was given, the one a resumed job recorded in its work
    directory, else a fresh random one (recorded by ``WorkDir.bind`` and reported back)."""
    draws = job.initial_noise is None or job.reference_noise is None or any(index != 0 for index in job.images)
    if job.seed is None and draws:
        recorded = job.work.recorded_seed() if job.work.resume else None
        return recorded if recorded is not None else draw_seed()
    return job.seed


def _job_settings(
    job: ShotJob, seed: int | None, config: LVCDConfig, dtype: torch.dtype, vae_dtype: torch.dtype
) -> dict:
    settings = {
        "steps": job.num_steps, "seed": seed, "overlap": job.windows.overlap, "prev_attn_steps": job.prev_attn_steps,
        "plan": [job.plan.input_hw, job.plan.model_hw], "polarity": job.polarity, "config": config.name,
        "dtype": str(dtype), "keyframes": sorted(job.images), **job.schemes.as_dict(),
    }  # fmt: skip
    if job.sampler != "euler":  # absent for Euler: work directories of earlier versions stay resumable
        settings["sampler"] = job.sampler
    if job.schemes.reference_mode == "previous-sample" and vae_dtype != torch.float32:
        # each window's reference is decoded and encoded again: the VAE's dtype shapes the windows (with the first
        # frame as reference it encodes the start state alone, which the work directory keeps); absent for fp32
        settings["vae dtype"] = str(vae_dtype)
    if job.reference_frame:  # absent for a shot coloured from its frame 0, as before
        settings["reference frame"] = job.reference_frame
        settings["pass"] = "toward the end" if job.direction == 1 else "toward frame 0"
    return settings


def _job_arrays(job: ShotJob) -> dict[str, list]:
    """The job's arrays by what they are, in the fingerprint's order."""
    arrays = {"line art": [job.hints], "reference": [job.images[0]]}
    arrays["keyframe images"] = [job.images[i] for i in sorted(job.images) if i != 0]
    arrays["given noise"] = [t.float().cpu() for t in (job.initial_noise, job.reference_noise) if t is not None]
    return arrays


def job_identity(
    job: ShotJob, seed: int | None, config: LVCDConfig, dtype: torch.dtype, vae_dtype: torch.dtype = torch.float32
) -> tuple[str, dict[str, str]]:
    """Everything that determines the result, hashed (a resumed job must match it exactly), and what that hash
    covers part by part (settings as text, arrays as short digests, whether the line art was levelled), kept beside it
    so that a resume refused for another job can say what differs."""
    settings = _job_settings(job, seed, config, dtype, vae_dtype)
    whole, parts = fingerprint_with_parts(settings, _job_arrays(job))
    parts = _as_text(settings) | parts
    parts["line-art levels"] = "levelled" if job.levelled else "as drawn"
    return whole, parts


def settings_identity(
    job: ShotJob, seed: int | None, config: LVCDConfig, dtype: torch.dtype, vae_dtype: torch.dtype = torch.float32
) -> dict[str, str]:
    """``job_identity``'s parts but the line art's (which needs every frame read): what a resumed job can be matched
    on before its hints are built. ``job.hints`` is not read."""
    settings = _job_settings(job, seed, config, dtype, vae_dtype)
    arrays = {name: group for name, group in _job_arrays(job).items() if name != "line art"}
    _, parts = fingerprint_with_parts(settings, arrays)
    return _as_text(settings) | parts


def _as_text(settings: dict) -> dict[str, str]:
    """Settings as the parts of a job's identity hold them: text as it is, the rest as JSON."""
    return {name: v if isinstance(v, str) else json.dumps(v, default=str) for name, v in settings.items()}


def draw_start_noise(job: ShotJob, shape: tuple[int, ...], generator: torch.Generator | None) -> torch.Tensor:
    """The first window's noise: the given one, else drawn first from the seeded generator (the official order)."""
    if job.initial_noise is not None:
        return job.initial_noise.float().cpu()
    return torch.randn(shape, generator=generator, dtype=torch.float32)  # not torch's default dtype: a seed's noise


def encode_references(
    model: LVCDModel, job: ShotJob, device: torch.device, generator: torch.Generator | None
) -> dict[str, torch.Tensor]:
    """CLIP embedding, mode and sample latents of the reference and each keyframe, in frame order (the reference's
    VAE eps is ``job.reference_noise`` when given, else the generator's next draws)."""
    encoded = {}
    for index in sorted(job.images):
        eps = job.reference_noise if index == 0 else None
        ref = encode_reference(model, job.images[index].to(device), index, noise=eps, generator=generator)
        encoded.update(
            {
                f"ref{index}.crossattn": ref.crossattn,
                f"ref{index}.mode": ref.mode_latent,
                f"ref{index}.sample": ref.sample_latent,
            }
        )
    return encoded


def references_of(start: dict[str, torch.Tensor], frames, device: torch.device) -> list[ReferenceLatents]:
    """The ``ReferenceLatents`` of a start state (see :func:`encode_references`), on ``device``."""
    return [
        ReferenceLatents(i, *(start[f"ref{i}.{name}"].to(device) for name in ("crossattn", "mode", "sample")))
        for i in sorted(frames)
    ]
