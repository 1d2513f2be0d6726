"""The long-video driver: runs the windows of a ``WindowPlan`` with Overlapped Blending and Prev-Reference Attention.

Per window (spec §3.4–3.5): Euler sampling of the 19-frame window; at every step the x0-prediction of the overlap
positions is replaced by the previous window's prediction for the same frames at the same step (Overlapped
Blending), and the spatial attention follows the prev-reference plan. What carries from one window to the next is a
small ``CarryState`` (noise, the last frames' latents and their per-step predictions), which is also what a resumed
run restores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from lvcd.diffusion import sample_euler
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
    blend_history: torch.Tensor | None  # (steps, overlap, 4, h, w) previous window's per-step x0 of those frames


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
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample one window. Returns (final latents (T, 4, h, w) scaled, per-step x0 of the last ``overlap`` positions)."""
    size, overlap, num_reference = plan.window_size, plan.overlap, plan.num_reference
    device = noise.device
    normal = ClipLayout(size, num_reference, official_normal_plan(size, overlap).to(device))
    prevref = ClipLayout(size, num_reference, official_prevref_plan(size, overlap).to(device))
    steps = len(sigmas) - 1
    prev_attn_steps = steps if prev_attn_steps is None else prev_attn_steps
    history = []

    def denoiser(x: torch.Tensor, sigma: torch.Tensor, step: int) -> torch.Tensor:
        layout = prevref if window.index > 0 and step < prev_attn_steps else normal
        denoised = model.denoise(x, sigma, cond, layout)
        history.append(denoised[size - overlap :].clone())  # recorded before blending, as the official
        if blend_history is not None:
            denoised[num_reference : num_reference + overlap] = blend_history[step]
        return denoised

    x = noise * torch.sqrt(1.0 + sigmas[0] ** 2)
    latents = sample_euler(denoiser, x, sigmas, callback=(lambda i, *_: step_callback(i)) if step_callback else None)
    return latents, torch.stack(history)


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
) -> Iterator[tuple[Window, torch.Tensor, CarryState]]:
    """Run windows ``start_window..`` and yield (window, new latents (k, 4, h, w) scaled, state for the next window).

    The caller keeps the latents (and may persist the state to resume later); nothing else accumulates.
    """
    for window in plan.windows[start_window:]:
        reference = reference_for_window(references, window)
        cond = window_conditioning(model, plan, window, reference, state.prev_latents, hints_for(window.frames))
        blend = state.blend_history if window.index > 0 else None
        latents, history = sample_window(
            model, plan, window, cond, state.noise, sigmas, blend, prev_attn_steps, step_callback
        )
        new_latents = latents[list(window.new_positions)]
        state = CarryState(
            noise=recycle_noise(state.noise, plan.overlap),
            prev_latents=latents[plan.window_size - plan.overlap :].clone(),
            blend_history=history,
        )
        yield window, new_latents, state
