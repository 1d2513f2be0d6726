"""The long-video driver: runs the windows of a ``WindowPlan`` with Overlapped Blending and Prev-Reference Attention.

Per window (spec §3.4–3.5) a sampler (Euler, :func:`lvcd.diffusion.sample_euler`) runs on a :class:`WindowDenoiser`,
the window's ``D(x, sigma)``: at every call the x0-prediction of the overlap positions is replaced by the previous
window's prediction for the same frames at the same call (Overlapped Blending), and the spatial attention follows the
prev-reference plan. What carries from one window to the next is a small ``CarryState`` (noise, the last frames'
latents and their per-call predictions), which is also what a resumed run restores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from lvcd.diffusion import Denoiser, denoiser_calls_before, sample_euler
from lvcd.longvideo import Window, WindowPlan, official_normal_plan, official_prevref_plan, recycle_noise
from lvcd.model import Conditioning, LVCDModel
from lvcd.models.transformer import ClipLayout


@dataclass
class ReferenceLatents:
    """What the model needs of one coloured reference (frame 0, or a keyframe)."""

    frame: int  # shot frame index it colours
    crossattn: torch.Tensor  # (1, 1, Dctx) CLIP embedding
    mode_latent: torch.Tensor  # (1, 4, h, w) unscaled posterior mode (embedder 3): window 0's concat
    sample_latent: torch.Tensor  # (1, 4, h, w) unscaled posterior sample: later windows' concat and output frame


@dataclass
class CarryState:
    """State passed from window to window (all float32, on the model's device)."""

    noise: torch.Tensor  # (T, 4, h, w) initial noise of the next window
    prev_latents: torch.Tensor | None  # (overlap, 4, h, w) SCALED final latents of the previous window's last frames
    blend_history: torch.Tensor | None  # (calls, overlap, 4, h, w) previous window's x0 of those frames, per call


REFERENCE_MODES = ("first", "previous-sample")


@dataclass(frozen=True)
class SamplingSchemes:
    """LVCD's long-video sampling schemes. The defaults are the paper's full method; the paper's ablations (its
    Table 2) switch them: ``prev_reference=False, blending=False`` ("without the sampling schemes"), and
    ``reference_mode="previous-sample"`` (each window's reference is the previous window's last generated frame,
    decoded and encoded again, instead of the shot's reference)."""

    prev_reference: bool = True  # Prev-Reference Attention in later windows
    blending: bool = True  # Overlapped Blending of the overlap frames' x0-predictions
    reference_mode: str = "first"  # "first": the shot's reference (and keyframes); "previous-sample"

    def __post_init__(self) -> None:
        if self.reference_mode not in REFERENCE_MODES:
            raise ValueError(f"reference_mode must be one of {REFERENCE_MODES}, got {self.reference_mode!r}.")

    def as_dict(self) -> dict:
        return {"prev_reference": self.prev_reference, "blending": self.blending, "reference_mode": self.reference_mode}


@torch.no_grad()
def encode_reference(
    model: LVCDModel, image: torch.Tensor, frame: int, noise: torch.Tensor | None = None, generator=None
) -> ReferenceLatents:
    """image (1, 3, H, W) in [-1, 1]; ``noise`` = the eps of the VAE posterior sample (else drawn from ``generator``)."""
    crossattn, mode_latent = model.embed_reference(image)
    vae_dtype = next(model.vae.parameters()).dtype
    sample = model.vae.encode(image.to(vae_dtype), noise=noise, generator=generator).float() / model.latent_scale
    return ReferenceLatents(frame, crossattn, mode_latent, sample)


def reference_for_window(references: Sequence[ReferenceLatents], window: Window) -> ReferenceLatents:
    """The latest reference at or before the window's first new frame (keyframes take over from there)."""
    usable = [r for r in references if r.frame <= window.first_new_frame]
    return max(usable, key=lambda r: r.frame)


@torch.no_grad()
def reference_from_sample(model: LVCDModel, latent: torch.Tensor, frame: int) -> ReferenceLatents:
    """A generated frame as the next reference (``reference_mode="previous-sample"``): its SCALED latent (1, 4, h, w)
    decoded to pixels and encoded again like a reference image (posterior mean, no noise)."""
    vae_dtype = next(model.vae.parameters()).dtype
    pixels = model.vae.decode(latent.to(vae_dtype), num_frames=1).clamp(-1, 1).float()
    mean_noise = torch.zeros((1, model.config.vae.z_channels, *latent.shape[-2:]), dtype=torch.float32)
    return encode_reference(model, pixels, frame, noise=mean_noise)


def window_conditioning(
    model: LVCDModel,
    plan: WindowPlan,
    window: Window,
    reference: ReferenceLatents,
    prev_latents: torch.Tensor | None,
    hints: torch.Tensor,
) -> Conditioning:
    """Conditioning of one window; hints: (T, 1 or 3, H, W) line art of ``window.frames`` (lines ~1 on 0)."""
    size = plan.window_size
    device = reference.crossattn.device
    if window.index == 0:
        concat = reference.mode_latent.expand(size, -1, -1, -1)
    else:
        video = reference.sample_latent.expand(plan.video_frames, -1, -1, -1)
        concat = torch.cat([reference.sample_latent, prev_latents / model.latent_scale, video])
    return Conditioning(
        concat=concat,
        crossattn=reference.crossattn.expand(size, -1, -1),
        vector=model.micro_conditioning(size, device=device),
        hint=hints.to(device),
    )


def window_layouts(plan: WindowPlan, device=None) -> tuple[ClipLayout, ClipLayout]:
    """The (first-window "normal", later-window "prevref") layouts of a plan's windows, their plans on ``device``."""
    size, overlap, num_reference = plan.window_size, plan.overlap, plan.num_reference
    normal = ClipLayout(size, num_reference, official_normal_plan(size, overlap).to(device))
    prevref = ClipLayout(size, num_reference, official_prevref_plan(size, overlap).to(device))
    return normal, prevref


def prepared_layouts(model: LVCDModel, plan: WindowPlan, device=None) -> tuple[ClipLayout, ClipLayout]:
    """``window_layouts`` with the model's frame-position embeddings computed once (constants of every window)."""
    normal, prevref = window_layouts(plan, device)
    return model.with_position_embeddings(normal), model.with_position_embeddings(prevref)


class WindowDenoiser:
    """``D(x, sigma)`` of one window, with LVCD's per-step logic inside; it counts its calls (one per Euler step,
    two per Heun step).

    - Prev-Reference Attention: calls ``0..prev_attn_steps-1`` (denoiser calls, not sampler steps) use
      ``prevref_layout`` (later windows), the others the normal layout;
    - the x0-prediction of the window's last ``overlap`` positions is recorded in ``history`` before blending (as the
      official), for the next window;
    - Overlapped Blending: with ``blend_history`` (the previous window's records), the overlap positions' prediction
      of call n is replaced by the previous window's call n prediction of the same frames.

    A sampler that calls the denoiser several times a step stays aligned call for call, as long as consecutive
    windows use the same sampler and sigmas.
    """

    def __init__(
        self,
        model: LVCDModel,
        plan: WindowPlan,
        cond: Conditioning,
        layout: ClipLayout,
        prevref_layout: ClipLayout | None = None,
        prev_attn_steps: int = 0,
        blend_history: torch.Tensor | None = None,
    ):  # without blending or prev-reference attention pass blend_history=None / prevref_layout=None
        self.model, self.cond, self.layout = model, cond, layout
        self.prevref_layout, self.prev_attn_steps = prevref_layout, prev_attn_steps
        self.blend_history = blend_history
        self.overlap, self.num_reference = plan.overlap, plan.num_reference
        self.calls = 0
        self.history: list[torch.Tensor] = []

    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        call = self.calls
        self.calls += 1
        prevref = self.prevref_layout is not None and call < self.prev_attn_steps
        denoised = self.model.denoise(x, sigma, self.cond, self.prevref_layout if prevref else self.layout)
        self.history.append(denoised[denoised.shape[0] - self.overlap :].clone())  # recorded before blending
        if self.blend_history is not None:
            denoised[self.num_reference : self.num_reference + self.overlap] = self.blend_history[call]
        return denoised


Sampler = Callable[..., torch.Tensor]
"""``sampler(denoiser, x, sigmas, callback=None) -> x`` (k-diffusion's signature), e.g. ``sample_euler``."""


def sample_window(
    model: LVCDModel,
    plan: WindowPlan,
    window: Window,
    cond: Conditioning,
    noise: torch.Tensor,
    sigmas: torch.Tensor,
    blend_history: torch.Tensor | None,
    prev_attn_steps: int | None = None,
    step_callback: Callable[[int], None] | None = None,
    layouts: tuple[ClipLayout, ClipLayout] | None = None,
    sampler: Sampler = sample_euler,
    schemes: SamplingSchemes = SamplingSchemes(),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one window. Returns (final latents (T, 4, h, w) scaled, per-call x0 of the last ``overlap`` positions).

    ``prev_attn_steps``: sampler steps with Prev-Reference Attention in later windows (default: all).
    The window's constants (the ControlNet's hint features; the layouts' position embeddings, see
    :func:`prepared_layouts`) are computed here once, not at every step.
    """
    normal, prevref = layouts or prepared_layouts(model, plan, noise.device)
    steps = len(sigmas) - 1
    if prev_attn_steps is None or prev_attn_steps >= steps:
        prev_attn_calls = 2**62  # every call
    else:  # a sampler may call the denoiser more than once a step
        prev_attn_calls = denoiser_calls_before(sampler, prev_attn_steps)
    denoiser: Denoiser = WindowDenoiser(
        model,
        plan,
        model.with_hint_features(cond),
        normal,
        prevref if window.index > 0 and schemes.prev_reference else None,
        prev_attn_calls,
        blend_history if schemes.blending else None,
    )
    x = noise * torch.sqrt(1.0 + sigmas[0] ** 2)
    callback = (lambda info: step_callback(info["i"])) if step_callback else None
    latents = sampler(denoiser, x, sigmas, callback=callback)
    return latents, torch.stack(denoiser.history)


def sample_shot(
    model: LVCDModel,
    plan: WindowPlan,
    references: Sequence[ReferenceLatents],
    hints_for: Callable[[Sequence[int]], torch.Tensor],
    sigmas: torch.Tensor,
    state: CarryState,
    start_window: int = 0,
    prev_attn_steps: int | None = None,
    step_callback: Callable[[int], None] | None = None,
    sampler: Sampler = sample_euler,
    schemes: SamplingSchemes = SamplingSchemes(),
    previous_sample: tuple[int, torch.Tensor] | None = None,
) -> Iterator[tuple[Window, torch.Tensor, CarryState]]:
    """Run windows ``start_window..`` and yield (window, new latents (k, 4, h, w) scaled, state for the next window).

    The caller keeps the latents (and may persist the state to resume later); nothing else accumulates.
    ``previous_sample``: (frame, scaled latent (1, 4, h, w)) of the last frame before ``start_window``, needed to
    resume with ``reference_mode="previous-sample"``.
    """
    layouts = prepared_layouts(model, plan, state.noise.device)
    from_samples = schemes.reference_mode == "previous-sample"
    for window in plan.windows[start_window:]:
        if from_samples and window.index > 0:
            reference = reference_from_sample(model, previous_sample[1], previous_sample[0])
        else:
            reference = reference_for_window(references, window)
        # position 0 is the reference frame: its own line art (the shot's frame 0, a keyframe or the previous sample)
        hint_frames = (reference.frame, *window.frames[1:])
        cond = window_conditioning(model, plan, window, reference, state.prev_latents, hints_for(hint_frames))
        blend = state.blend_history if window.index > 0 else None
        latents, history = sample_window(
            model, plan, window, cond, state.noise, sigmas, blend, prev_attn_steps, step_callback, layouts, sampler,
            schemes,
        )  # fmt: skip
        new_latents = latents[list(window.new_positions)]
        previous_sample = (window.new_frames[-1], new_latents[-1:])
        state = CarryState(
            noise=recycle_noise(state.noise, plan.overlap),
            prev_latents=latents[plan.window_size - plan.overlap :].clone(),
            blend_history=history,
        )
        yield window, new_latents, state
