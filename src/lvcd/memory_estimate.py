"""Peak accelerator memory of a shot, estimated on the meta device (no GPU, no weights, seconds on a CPU).

The pipeline runs in three phases, each with its own parts of the model on the accelerator (``lvcd.placement``: by
default the conditioner only while it is used, with ``offload`` every part only while it is used):

- ``conditioning``: CLIP embedding and VAE encoding of the reference (and keyframes), once per shot;
- ``sampling``: one denoiser call of a window (ControlNet + UNet, 19 frames), repeated for every step and window;
- ``decoding``: the temporal VAE decoder on one chunk of latents (10 frames, as the official code).

Each phase is run once on the meta device at the shot's processing size under :class:`LiveTensorBytes`, which
follows every tensor the phase creates and keeps the peak of those alive at once. The estimate of a phase is the
resident weights plus that peak; the shot's estimate is the largest phase.

What it leaves out, so a GPU's ``max_memory_allocated`` is at least this: the caching allocator's rounding, the
kernels' workspaces (cuDNN, cuBLAS), the CUDA context (about 0.5 GB, not counted by ``max_memory_allocated``), and
small state kept across phases (the shot's latents: 46 KB a frame at 320x576). Attention is counted as the fused
kernels allocate (``lvcd.models.attention_kernels`` on meta), as on a GPU.

    >>> estimate = estimate_shot_memory(get_config("svd-lvcd"), (320, 576))      # doctest: +SKIP
    >>> estimate.peak_phase, estimate.peak_bytes / 1e9                            # doctest: +SKIP
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from lvcd.config import LVCDConfig
from lvcd.decoding import DECODE_CHUNK
from lvcd.longvideo import plan_windows
from lvcd.memory import weight_bytes
from lvcd.model import PART_ATTRIBUTES, Conditioning, LVCDModel
from lvcd.placement import PHASE_PARTS, parts_on_accelerator

PHASES = tuple(PHASE_PARTS)


class LiveTensorBytes(TorchDispatchMode):
    """Peak bytes of the tensors created inside the block and alive at the same time.

    A tensor counts from the op that creates it until its storage is freed; a view or an in-place result shares
    its input's storage and is not new memory. Tensors that existed before the block (weights, inputs) are not
    counted. Use it on the meta device: the same bookkeeping, no data.
    """

    def __init__(self) -> None:
        super().__init__()
        self._live: dict[int, tuple[StorageWeakRef, int]] = {}
        self.current = 0
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for key in [key for key, (ref, _) in self._live.items() if ref.expired()]:
            self.current -= self._live.pop(key)[1]
        inputs = {_storage_key(t) for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)}
        for tensor in pytree.tree_leaves(out):
            if isinstance(tensor, torch.Tensor):
                key = _storage_key(tensor)
                if key not in inputs and key not in self._live:
                    storage = tensor.untyped_storage()
                    self._live[key] = (StorageWeakRef(storage), storage.nbytes())
                    self.current += storage.nbytes()
        self.peak = max(self.peak, self.current)
        return out


def _storage_key(tensor: torch.Tensor) -> int:
    return StorageWeakRef(tensor.untyped_storage()).cdata


def peak_bytes_of(work: Callable[[], object]) -> int:
    """Peak bytes of the tensors ``work()`` creates and holds at once (run it on meta tensors)."""
    with torch.no_grad(), LiveTensorBytes() as live:
        work()
    return live.peak


@dataclass(frozen=True)
class ShotMemoryEstimate:
    size_hw: tuple[int, int]
    dtype: str
    vae_dtype: str
    offload: bool
    # per part: unet, controlnet, clip (CLIP and the conditioner's VAE encoder), first_stage
    weights_bytes: dict[str, int]
    activations_bytes: dict[str, int]  # per phase: the peak of the tensors it creates
    resident_bytes: dict[str, int]  # per phase: the weights on the accelerator during it

    def phase_bytes(self, phase: str) -> int:
        return self.resident_bytes[phase] + self.activations_bytes[phase]

    @property
    def peak_phase(self) -> str:
        return max(PHASES, key=self.phase_bytes)

    @property
    def peak_bytes(self) -> int:
        return self.phase_bytes(self.peak_phase)

    def as_dict(self) -> dict:
        return {
            **asdict(self),
            "phase_bytes": {phase: self.phase_bytes(phase) for phase in PHASES},
            "peak_phase": self.peak_phase,
            "peak_bytes": self.peak_bytes,
        }


def meta_model(config: LVCDConfig, dtype: torch.dtype, vae_dtype: torch.dtype) -> LVCDModel:
    """The whole model on the meta device, cast as ``lvcd.weights.load_model`` casts it (VAE parts in vae_dtype)."""
    with torch.device("meta"):
        model = LVCDModel(config)
    model.to(dtype=dtype)
    model.first_stage_model.to(dtype=vae_dtype)
    model.cond_encoder.to(dtype=vae_dtype)
    return model.eval().requires_grad_(False)


def part_weight_bytes(model: LVCDModel) -> dict[str, int]:
    """``lvcd.memory.weight_bytes`` by the part names of ``PHASE_PARTS``."""
    by_attribute = weight_bytes(model)
    parts = {name for names in PHASE_PARTS.values() for name in names}
    return {name: by_attribute[PART_ATTRIBUTES[name]] for name in sorted(parts)}


@functools.lru_cache(maxsize=64)  # a few seconds of meta-device work per call; its arguments are all hashable
def estimate_shot_memory(
    config: LVCDConfig,
    size_hw: tuple[int, int],
    dtype: torch.dtype = torch.bfloat16,
    vae_dtype: torch.dtype = torch.float32,
    offload: bool = False,
    decode_chunk: int = DECODE_CHUNK,
    previous_sample: bool = False,
) -> ShotMemoryEstimate:
    """Estimated peak accelerator memory of colorizing a shot at processing size ``size_hw`` (multiples of 8).

    ``previous_sample``: ``reference_mode="previous-sample"``, where each window's reference is the previous
    window's last frame decoded and encoded again: CLIP and the VAE stay on the accelerator while sampling."""
    from lvcd.sampling import encode_reference, prepared_layouts, reference_from_sample

    height, width = size_hw
    model = meta_model(config, dtype, vae_dtype)
    window = plan_windows(2 * config.video_frames, video_frames=config.video_frames)  # has a prev-reference window
    frames, latent_hw, chunk = window.window_size, (height // 8, width // 8), decode_chunk

    with torch.device("meta"):
        reference = torch.empty(1, 3, height, width)
        eps = torch.empty(1, config.vae.z_channels, *latent_hw)
        cond = Conditioning(
            concat=torch.empty(frames, 4, *latent_hw),
            crossattn=torch.empty(frames, 1, config.unet.context_dim),
            vector=torch.empty(frames, config.unet.adm_in_channels),
            hint=torch.empty(frames, 1, height, width),
        )
        x, sigma = torch.empty(frames, 4, *latent_hw), torch.ones(frames)
        latents = torch.empty(chunk, 4, *latent_hw, dtype=vae_dtype)
        last_latent = torch.empty(1, 4, *latent_hw)
    layout = prepared_layouts(model, window, "meta")[1]  # later windows' layout: Prev-Reference Attention

    def sampling() -> None:
        model.denoise(x, sigma, model.with_hint_features(cond), layout)

    activations = {
        "conditioning": peak_bytes_of(lambda: encode_reference(model, reference, 0, noise=eps)),
        "sampling": peak_bytes_of(sampling),
        "decoding": peak_bytes_of(lambda: model.vae.decode(latents, num_frames=chunk).clamp(-1, 1).float()),
    }
    parts = dict(PHASE_PARTS)
    if previous_sample:  # as LVCDPipeline._sample: the re-encoding between windows runs in the sampling phase
        parts["sampling"] = (*PHASE_PARTS["sampling"], *PHASE_PARTS["conditioning"])
        between = peak_bytes_of(lambda: reference_from_sample(model, last_latent, 1))
        activations["sampling"] = max(activations["sampling"], between)
    weights = part_weight_bytes(model)
    resident = {phase: sum(weights[part] for part in parts_on_accelerator(parts[phase], offload)) for phase in PHASES}
    return ShotMemoryEstimate((height, width), _name(dtype), _name(vae_dtype), offload, weights, activations, resident)


def estimate_peak_bytes(
    config: LVCDConfig,
    size_hw: tuple[int, int],
    dtype: torch.dtype = torch.bfloat16,
    vae_dtype: torch.dtype = torch.float32,
    offload: bool = False,
    previous_sample: bool = False,
) -> int:
    """:func:`estimate_shot_memory`'s peak, in seconds at any size: up to 4x the trained area the shot is traced as
    it is; beyond (tracing a huge size takes minutes), at a 16th and an 8th of its area, each phase's activations
    extended linearly (they grow linearly with the area there: the official network's estimate at 1280x2304 from
    320x576 and 640x576 equals its full trace, 48.6 GB)."""
    height, width = size_hw
    trained = config.train_size_hw[0] * config.train_size_hw[1]
    if height * width <= 4 * trained:
        return estimate_shot_memory(
            config, size_hw, dtype, vae_dtype, offload, previous_sample=previous_sample
        ).peak_bytes
    m = config.size_multiple
    h, w = max(m, height // 4 // m * m), max(m, width // 4 // m * m)
    small, double = (
        estimate_shot_memory(config, size, dtype, vae_dtype, offload, previous_sample=previous_sample)
        for size in ((h, w), (2 * h, w))
    )
    peak = 0
    for phase, at_small in small.activations_bytes.items():
        per_pixel = (double.activations_bytes[phase] - at_small) / (h * w)
        peak = max(peak, small.resident_bytes[phase] + int(at_small + per_pixel * (height * width - h * w)))
    return peak


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
