"""Long-video planning (spec §3): windows, noise recycling, Prev-Reference Attention plans, decoding chunks.

Pure functions of the shot length and settings; the driver that runs the model is ``lvcd.sampling``.

A window has ``1 + overlap`` reference-path positions (0: the reference; 1..overlap: the previous window's last
frames, "prev-reference") followed by ``video_frames`` video positions. Officially (:mod:`lvcd.config`) overlap is 4
and video_frames 14: window 0 covers video frames 1..14 of the shot (frame 0 is the reference itself); each later
window starts ``overlap`` frames before the previous one ended, so it adds ``video_frames - overlap`` (10) new frames.

Any length works: frame 0 alone needs no window; a window that would run past the last frame (the first one for
shots under 15 frames, or the last one when N is not 15 + 10k) is filled up with repeats of the last line-art
frame (a held drawing), and the extra frames are generated and discarded. For N = 15 + 10k this is exactly the
official layout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from lvcd.config import OVERLAP, VIDEO_FRAMES
from lvcd.models.attention import ReferenceAttentionPlan

PREV_REFERENCE_SHIFT = 3  # new frames attend to the frame 3 positions earlier (official `olap = 3`)
PREV_REFERENCE_AMPLIFY = 10.0  # overlap frames weight their prev-reference twin by 10 (official `refattn_amplify`)
PREV_REFERENCE_WEIGHTED_LAYERS = frozenset(range(13))  # the official weights layers 0-12 of each network
WINDOW_FRAMES = 1 + OVERLAP + VIDEO_FRAMES  # the official window: reference + prev-reference + video frames (19)


@dataclass(frozen=True)
class Window:
    """One sampling window: the shot frame shown at each position (for line art), and what it contributes."""

    index: int
    frames: tuple[int, ...]  # shot frame index per position (length 1 + overlap + video_frames), clamped to N-1
    new_positions: tuple[int, ...]  # positions whose results become output frames
    new_frames: tuple[int, ...]  # the shot frames those positions produce (same length)
    first_new_frame: int


@dataclass(frozen=True)
class WindowPlan:
    num_frames: int  # N, frames in the shot
    overlap: int
    video_frames: int
    windows: tuple[Window, ...]

    @property
    def window_size(self) -> int:
        return 1 + self.overlap + self.video_frames

    @property
    def num_reference(self) -> int:
        return 1 + self.overlap


def plan_windows(num_frames: int, overlap: int = OVERLAP, video_frames: int = VIDEO_FRAMES) -> WindowPlan:
    """The window layout for a shot of ``num_frames`` frames (frame 0 = the coloured reference)."""
    if num_frames < 1:
        raise ValueError("A shot needs at least one frame.")
    if not 0 <= overlap < video_frames:  # at least one new frame per window
        raise ValueError(f"overlap must be between 0 and {video_frames - 1}, got {overlap}.")
    last = num_frames - 1
    windows = []
    if last >= 1:
        stride = video_frames - overlap
        count = 1 + max(0, math.ceil((last - video_frames) / stride))
        for w in range(count):
            start = 1 + w * stride
            video = list(range(start, start + video_frames))
            prev = [0] * overlap if w == 0 else video[:overlap]
            frames = tuple(min(f, last) for f in [0, *prev, *video])
            first_new = start if w == 0 else start + overlap
            positions = [1 + overlap + i for i, f in enumerate(video) if f >= first_new and f <= last]
            windows.append(
                Window(w, frames, tuple(positions), tuple(video[p - 1 - overlap] for p in positions), first_new)
            )
    return WindowPlan(num_frames, overlap, video_frames, tuple(windows))


def plan_passes(
    num_frames: int, reference_frame: int = 0, overlap: int = OVERLAP, video_frames: int = VIDEO_FRAMES
) -> dict[int, WindowPlan]:
    """The windows of each pass of a shot whose reference colours frame ``reference_frame``: ``{1: the shot}`` from
    frame 0 (the official single pass), else ``{-1: frames reference_frame..0, 1: reference_frame..end}``, each laid
    out as a shot that starts at its reference."""
    if not 0 <= reference_frame < num_frames:
        raise ValueError(f"reference frame {reference_frame} is outside a shot of {num_frames} frames")
    if reference_frame == 0:
        return {1: plan_windows(num_frames, overlap, video_frames)}
    return {
        -1: plan_windows(reference_frame + 1, overlap, video_frames),
        1: plan_windows(num_frames - reference_frame, overlap, video_frames),
    }


def recycle_noise(noise: torch.Tensor, overlap: int) -> torch.Tensor:
    """Initial noise of the next window (official ``cat([x[0], x[15:19], x[15:19], x[5:15]])``): position 0 keeps
    its noise, the prev-reference and overlap positions take the noise of the previous window's last ``overlap``
    positions (a frame shared by two windows starts from the same noise in both), the new positions take the noise
    of the previous window's first video positions. Traced through the windows, video frame f starts from the noise
    of frame f - video_frames (f - 14; the spec's "f - 10" is a slip)."""
    num_reference = 1 + overlap
    window = noise.shape[0]
    tail = noise[window - overlap :]
    fresh = noise[num_reference : num_reference + window - num_reference - overlap]
    return torch.cat([noise[:1], tail, tail, fresh])


def official_normal_plan(window: int = WINDOW_FRAMES, overlap: int = OVERLAP) -> ReferenceAttentionPlan:
    """First window ('normal'): reference-path frames attend to themselves only; video frames to [self ; reference]."""
    t = torch.arange(window)
    return ReferenceAttentionPlan(torch.stack([t, torch.where(t <= overlap, t, 0)], dim=1))


def official_prevref_plan(
    window: int = WINDOW_FRAMES,
    overlap: int = OVERLAP,
    shift: int = PREV_REFERENCE_SHIFT,
    amplify: float = PREV_REFERENCE_AMPLIFY,
    weighted_layers: frozenset[int] | None = PREV_REFERENCE_WEIGHTED_LAYERS,
) -> ReferenceAttentionPlan:
    """Later windows ('prevref', spec §3.6).

    - reference and prev-reference positions (0..overlap): [self ; self];
    - overlap positions: [self ; their prev-reference twin (t - overlap)], the twin block weighted by ``amplify``;
    - new positions: [the frame ``shift`` positions earlier ; the reference].
    """
    t = torch.arange(window)
    overlap_pos = (t > overlap) & (t <= 2 * overlap)
    first = torch.where(t <= 2 * overlap, t, t - shift)
    first = torch.where(first < 0, t, first)  # overlap 0: the first new frames have no frame `shift` before them
    second = torch.where(t <= overlap, t, torch.where(overlap_pos, t - overlap, 0))
    log_weights = torch.zeros(window, 2, dtype=torch.float32)  # whatever the default dtype: ln 10 in fp32
    log_weights[overlap_pos, 1] = math.log(amplify)
    return ReferenceAttentionPlan(torch.stack([first, second], dim=1), log_weights, weighted_layers)


@dataclass(frozen=True)
class DecodeChunk:
    latent_indices: tuple[int, ...]  # latents decoded together (the reference latent first, as temporal context)
    keep_from: int  # outputs before this position are discarded (they were emitted by the previous chunk)

    @property
    def output_frames(self) -> tuple[int, ...]:
        return self.latent_indices[self.keep_from :]


def plan_decoding(num_frames: int, chunk: int = 10, overlap: int = 3, context: int = 1) -> list[DecodeChunk]:
    """The official decoding plan: chunks of ``chunk`` latents, each starting with the reference latent, later chunks
    overlapping the previous by ``overlap`` frames whose outputs are discarded (spec §3.7). Emits every frame once,
    in order."""
    if chunk <= context + overlap:
        raise ValueError("decode chunk must exceed context + overlap frames")
    chunks, j = [], 0
    while True:
        start = j * (chunk - context - overlap) + context
        end = min(start + chunk - context, num_frames)
        indices = tuple([0] * context + list(range(start, end)))
        chunks.append(DecodeChunk(indices, 0 if j == 0 else context + overlap))
        if end >= num_frames:
            return chunks
        j += 1
