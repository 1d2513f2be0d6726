"""SVD's KL-f8 autoencoder: a 2-D encoder and a temporal video decoder, under sgm's parameter names.

Three networks are built from one :class:`~lvcd.config.VAEConfig`:

- :class:`AutoencoderKL` is the engine's ``first_stage_model`` (``encoder.*``, ``decoder.*``; SVD's first
  stage has no ``quant_conv``). ``encode`` returns the *scaled* posterior sample (diffusion space),
  ``decode`` takes scaled latents and decodes each clip of ``num_frames`` as one temporal unit.
- :class:`ModeEncoder` is the conditioner's embedder 3 (``AutoencoderKLModeOnly``): encoder, ``quant_conv``,
  then the posterior *mode*, unscaled. It is the UNet's ``concat`` input.

Numerics follow sgm: GroupNorm(32, eps 1e-6) in the 2-D blocks; the decoder's temporal ``time_stack``
is an openaimodel ``ResBlock`` whose GroupNorm keeps PyTorch's default eps 1e-5 and takes its statistics over
(C/32, T, H, W) of the whole clip, so the frames of a clip are coupled. Every norm is :mod:`lvcd.models.norm`'s
(float32 statistics), so a VAE cast to bf16/fp16 runs too.

Example::

    vae = AutoencoderKL(VAEConfig())
    latents = vae.encode(frames, generator=torch.Generator().manual_seed(0))  # (N, 4, H/8, W/8), scaled
    pixels = vae.decode(latents, num_frames=len(frames)).clamp(-1, 1)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

from lvcd.config import VAEConfig
from lvcd.models.attention_kernels import sdpa
from lvcd.models.norm import GroupNorm32, group_norm

LOGVAR_RANGE = (-30.0, 20.0)


def _norm(channels: int) -> GroupNorm32:
    """The 2-D blocks' ``Normalize``: 32 groups, eps 1e-6."""
    return group_norm(channels, eps=1e-6)


def _silu_norm(norm: GroupNorm32, x: Tensor) -> Tensor:
    # The norm output is a fresh tensor, so SiLU may overwrite it (saves one activation at 320x576).
    return F.silu(norm(x), inplace=True)


class ResnetBlock(nn.Module):
    """sgm ``model.ResnetBlock`` without time embedding: norm-SiLU-conv twice, 1x1 ``nin_shortcut`` if C changes."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(_silu_norm(self.norm1, x))
        h = self.conv2(_silu_norm(self.norm2, h))
        skip = x if self.nin_shortcut is None else self.nin_shortcut(x)
        return h.add_(skip)


class AttnBlock(nn.Module):
    """Single-head self-attention over the H*W positions of each image, with 1x1-conv projections."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = _norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        h = self.norm(x)
        # contiguous: the fused kernels need unit stride in the last dimension, else every call falls back to the
        # math form (the (HW, HW) logits in fp32) on CPU and CUDA alike
        q, k, v = (rearrange(proj(h), "b c h w -> b 1 (h w) c").contiguous() for proj in (self.q, self.k, self.v))
        h = sdpa(q, k, v)  # scale 1/sqrt(C), as sgm
        h = rearrange(h, "b 1 (h w) c -> b c h w", h=height, w=width)
        return self.proj_out(h).add_(x)


class Downsample(nn.Module):
    """Stride-2 3x3 conv after padding right/bottom by one (sgm's asymmetric padding)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour x2, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class TemporalResBlock(nn.Module):
    """openaimodel ``ResBlock(dims=3, skip_t_emb=True)``: mixes frames with (kt,1,1) convs, identity skip.

    Runs on (clips, C, T, H, W). Key layout ``in_layers.{0,2}``, ``out_layers.{0,3}`` as in sgm.
    """

    def __init__(self, channels: int, kernel_size: tuple[int, int, int]):
        super().__init__()
        padding = tuple(k // 2 for k in kernel_size)
        self.in_layers = nn.Sequential(
            group_norm(channels),
            nn.SiLU(inplace=True),
            nn.Conv3d(channels, channels, kernel_size, padding=padding),
        )
        self.out_layers = nn.Sequential(
            group_norm(channels),
            nn.SiLU(inplace=True),
            nn.Identity(),  # Dropout(0) in sgm; keeps index 3 for the conv
            nn.Conv3d(channels, channels, kernel_size, padding=padding),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.out_layers(self.in_layers(x)).add_(x)


class VideoResBlock(ResnetBlock):
    """2-D ResnetBlock, then a temporal ResBlock, merged as ``a*temporal + (1-a)*spatial``, a = sigmoid(mix_factor).

    The merge is the reverse of the UNet's AlphaBlender (which weights the *spatial* branch by alpha).
    """

    def __init__(self, in_channels: int, out_channels: int, video_kernel_size: tuple[int, int, int]):
        super().__init__(in_channels, out_channels)
        self.time_stack = TemporalResBlock(out_channels, video_kernel_size)
        self.mix_factor = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, num_frames: int) -> Tensor:
        spatial = rearrange(super().forward(x), "(b t) c h w -> b c t h w", t=num_frames)
        alpha = torch.sigmoid(self.mix_factor)
        # Same three roundings as sgm's `alpha * x + (1 - alpha) * x_mix`.
        mixed = self.time_stack(spatial).mul_(alpha).add_(spatial * (1.0 - alpha))
        return rearrange(mixed, "b c t h w -> (b t) c h w")


class AE3DConv(nn.Conv2d):
    """The decoder's ``conv_out``: a 2-D conv per frame, then ``time_mix_conv``, a temporal Conv3d."""

    def __init__(self, in_channels: int, out_channels: int, video_kernel_size: tuple[int, int, int]):
        super().__init__(in_channels, out_channels, 3, padding=1)
        padding = tuple(k // 2 for k in video_kernel_size)
        self.time_mix_conv = nn.Conv3d(out_channels, out_channels, video_kernel_size, padding=padding)

    def forward(self, x: Tensor, num_frames: int) -> Tensor:  # type: ignore[override]
        h = rearrange(super().forward(x), "(b t) c h w -> b c t h w", t=num_frames)
        return rearrange(self.time_mix_conv(h), "b c t h w -> (b t) c h w")


class _Level(nn.Module):
    """One resolution level: ``block`` list plus an optional ``downsample`` / ``upsample``."""

    def __init__(self, blocks: list[nn.Module]):
        super().__init__()
        self.block = nn.ModuleList(blocks)


class _Mid(nn.Module):
    def __init__(self, block_1: nn.Module, attn_1: AttnBlock, block_2: nn.Module):
        super().__init__()
        self.block_1 = block_1
        self.attn_1 = attn_1
        self.block_2 = block_2


class Encoder(nn.Module):
    """sgm ``Encoder`` with ``double_z``: (N, 3, H, W) in [-1, 1] -> moments (N, 2*z, H/8, W/8).

    Per-image (no temporal layers), so frames may be batched freely.
    """

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        widths = [cfg.ch * m for m in cfg.ch_mult]
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, padding=1)
        self.down = nn.ModuleList()
        block_in = cfg.ch
        for level, block_out in enumerate(widths):
            blocks = []
            for _ in range(cfg.num_res_blocks):
                blocks.append(ResnetBlock(block_in, block_out))
                block_in = block_out
            stage = _Level(blocks)
            if level != len(widths) - 1:
                stage.downsample = Downsample(block_in)
            self.down.append(stage)
        self.mid = _Mid(ResnetBlock(block_in, block_in), AttnBlock(block_in), ResnetBlock(block_in, block_in))
        self.norm_out = _norm(block_in)
        self.conv_out = nn.Conv2d(block_in, 2 * cfg.z_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            for block in stage.block:
                h = block(h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(_silu_norm(self.norm_out, h))


class VideoDecoder(nn.Module):
    """sgm ``VideoDecoder`` (time_mode conv-only, learned merge): latents (N, z, h, w) -> pixels (N, 3, 8h, 8w).

    ``N = clips * num_frames``, frames of a clip contiguous; each clip is one temporal unit (temporal convs
    and the time_stack GroupNorm statistics span its frames). Input is the UNSCALED latent; output is not clamped.
    """

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        kernel = tuple(cfg.video_kernel_size)
        widths = [cfg.ch * m for m in cfg.ch_mult]
        block_in = widths[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, block_in, 3, padding=1)
        self.mid = _Mid(
            VideoResBlock(block_in, block_in, kernel), AttnBlock(block_in), VideoResBlock(block_in, block_in, kernel)
        )
        levels: list[_Level] = []
        for level in reversed(range(len(widths))):
            blocks = []
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(VideoResBlock(block_in, widths[level], kernel))
                block_in = widths[level]
            stage = _Level(blocks)
            if level != 0:
                stage.upsample = Upsample(block_in)
            levels.insert(0, stage)
        self.up = nn.ModuleList(levels)  # index = level, run from the deepest
        self.norm_out = _norm(block_in)
        self.conv_out = AE3DConv(block_in, cfg.out_ch, kernel)

    def forward(self, z: Tensor, num_frames: int) -> Tensor:
        """Without a gradient (inference) the memory-lean order of :func:`_decode_lean` (same operations, a
        third of the peak memory); with one, the plain graph (training)."""
        if num_frames <= 0 or z.shape[0] % num_frames:
            raise ValueError(f"{z.shape[0]} latents cannot be split into clips of num_frames={num_frames}.")
        if not torch.is_grad_enabled() and z.shape[0] and _pointwise_in_space(self):
            return _decode_lean(self, z, num_frames)
        return self.forward_graph(z, num_frames)

    def forward_graph(self, z: Tensor, num_frames: int) -> Tensor:
        """The decoder as one autograd graph: every activation of the clip at once."""
        h = self.conv_in(z)
        h = self.mid.block_1(h, num_frames)
        h = self.mid.attn_1(h)
        h = self.mid.block_2(h, num_frames)
        for stage in reversed(self.up):
            for block in stage.block:
                h = block(h, num_frames)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        return self.conv_out(_silu_norm(self.norm_out, h), num_frames)


# ------------------------------------------------------------------------------------------------------------------
# Memory-lean decoding (inference). The full-resolution levels hold 10 frames x 128-256 channels x 320x576: about
# 0.9-1.9 GB a tensor in fp32, and the plain graph holds up to six at once. Here the 2-D parts (ResnetBlock, the
# Upsample before a level, the mid attention, norm_out + conv_out) run frame by frame into one output tensor, and
# each time_stack runs in bands of rows: its GroupNorm statistics (over the whole clip) are taken first, then
# normalize, SiLU and the (kt, 1, 1) temporal conv, which does not mix rows, go band by band, and the result
# overwrites the band it came from. A block's input is dropped as soon as it is used. Peak at 320x576, fp32: 1.9 GB of
# tensors (the one graph: 5.7 GB; lvcd.memory_estimate). The operations are the same; the time_stack's GroupNorm
# statistics are merged from bands (in float64), and its first conv runs twice (once for the statistics of its
# output).
# ------------------------------------------------------------------------------------------------------------------

# Work is cut into pieces (frames, bands of rows) of about this many bytes: small tensors (the low-resolution
# levels) go in one piece, so the cutting costs kernel launches only where it saves memory.
_PIECE_BYTES = 64 * 2**20


def _pieces(count: int, item_bytes: int) -> list[slice]:
    """``count`` items (frames or rows) in runs of about ``_PIECE_BYTES``."""
    step = max(1, _PIECE_BYTES // max(1, item_bytes))
    return [slice(start, min(start + step, count)) for start in range(0, count, step)]


def _frame_bytes(x: Tensor, scale: int = 1) -> int:
    return x[0].numel() * x.element_size() * scale


def _pointwise_in_space(decoder: VideoDecoder) -> bool:
    """The band order needs temporal convs of kernel (kt, 1, 1) (SVD's): they must not mix rows."""
    return all(conv.kernel_size[1:] == (1, 1) for conv in decoder.modules() if isinstance(conv, nn.Conv3d))


def _decode_lean(decoder: VideoDecoder, z: Tensor, num_frames: int) -> Tensor:
    state = [decoder.conv_in(z)]  # the one reference to the current activation: blocks pop it
    _video_res_block(decoder.mid.block_1, state, num_frames)
    state.append(_frame_by_frame(decoder.mid.attn_1, state.pop()))  # attention of one frame's tokens at a time
    _video_res_block(decoder.mid.block_2, state, num_frames)
    upsample = None
    for stage in reversed(decoder.up):
        for block in stage.block:
            _video_res_block(block, state, num_frames, before=upsample)
            upsample = None
        upsample = getattr(stage, "upsample", None)
    conv_out = decoder.conv_out
    out = _frame_by_frame(lambda h: nn.Conv2d.forward(conv_out, _silu_norm(decoder.norm_out, h)), state.pop())
    return rearrange(conv_out.time_mix_conv(rearrange(out, "(b t) c h w -> b c t h w", t=num_frames)),
                     "b c t h w -> (b t) c h w")  # fmt: skip


def _frame_by_frame(layer, x: Tensor, out: Tensor | None = None, growth: int = 1) -> Tensor:
    """``layer`` (per-frame operations) on pieces of frames of ``x``, written into ``out`` (``x`` itself when frame
    i's result may replace frame i) or a new tensor. ``growth``: how much larger than a frame a result is."""
    for frames in _pieces(x.shape[0], _frame_bytes(x, growth)):
        piece = layer(x[frames])
        out = piece.new_empty((x.shape[0], *piece.shape[1:])) if out is None else out
        out[frames] = piece
        del piece  # not held while the next piece is computed
    return out


def _video_res_block(block: VideoResBlock, state: list[Tensor], num_frames: int, before: nn.Module | None = None):
    """``block`` (after ``before``, an Upsample, frame by frame) on ``state[0]``, replaced by the result."""
    x = state.pop()
    if before is None:  # with no channel change, frame i's output can replace frame i's input: no second tensor
        spatial = _frame_by_frame(lambda h: ResnetBlock.forward(block, h), x, x if block.nin_shortcut is None else None)
    else:  # an Upsample: each result is 4x its frame
        spatial = _frame_by_frame(lambda h: ResnetBlock.forward(block, before(h)), x, growth=4)
    del x
    # time_stack: t1 = conv(SiLU(GN1(spatial))), t2 = conv(SiLU(GN2(t1))), out = a (t2 + spatial) + (1 - a) spatial.
    # GN2 needs the statistics of all of t1: a first pass takes them band by band, a second recomputes each band of
    # t1 and finishes it, writing the result over the band of spatial it no longer needs.
    row_bytes = spatial.shape[0] * spatial.shape[1] * spatial.shape[3] * spatial.element_size()
    stack, alpha, bands = block.time_stack, torch.sigmoid(block.mix_factor), _pieces(spatial.shape[2], row_bytes)
    first, second = stack.in_layers, stack.out_layers
    stats1 = _GroupSums(spatial, num_frames, first[0])
    for rows in bands:
        stats1.add(spatial[:, :, rows])
    stats1 = stats1.finish()
    stats2 = _GroupSums(spatial, num_frames, second[0])
    for rows in bands:
        stats2.add(_norm_silu_tconv(spatial[:, :, rows], stats1, first[0], first[2], num_frames))
    stats2 = stats2.finish()
    for rows in bands:
        t1 = _norm_silu_tconv(spatial[:, :, rows], stats1, first[0], first[2], num_frames)
        t2 = _norm_silu_tconv(t1, stats2, second[0], second[3], num_frames)
        part = spatial[:, :, rows]
        spatial[:, :, rows] = t2.add_(part).mul_(alpha).add_(part * (1.0 - alpha))  # the graph's three roundings
    state.append(spatial)


class _GroupSums:
    """Mean and 1/std of each (clip, group) of a ((B T), C, H, W) tensor over (C/G, T, H, W), as the time_stack's
    GroupNorm takes them, gathered band by band (no full-size temporary): each band's float32 mean and variance
    (Welford, as the GroupNorm kernel), merged in float64 (Chan et al.)."""

    def __init__(self, like: Tensor, num_frames: int, norm: GroupNorm32):
        self.shape = (like.shape[0] // num_frames, num_frames, norm.num_groups, like.shape[1] // norm.num_groups)
        self.eps = norm.eps
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def add(self, band: Tensor) -> None:
        values = band.reshape(*self.shape, -1)
        var, mean = torch.var_mean(values.float(), dim=(1, 3, 4), correction=0)
        count = values.numel() // (self.shape[0] * self.shape[2])
        total = self.count + count
        delta = mean.double() - self.mean
        self.mean = self.mean + delta * (count / total)
        self.m2 = self.m2 + var.double() * count + delta.square() * (self.count * count / total)
        self.count = total

    def finish(self) -> tuple[Tensor, Tensor]:
        """(mean, rstd) float32, shaped (B, 1, G, 1, 1, 1) to broadcast over a band reshaped as in ``add``."""
        rstd = torch.rsqrt(self.m2 / self.count + self.eps)
        return self.mean.float()[:, None, :, None, None, None], rstd.float()[:, None, :, None, None, None]


def _norm_silu_tconv(
    part: Tensor, stats: tuple[Tensor, Tensor], norm: GroupNorm32, conv: nn.Conv3d, num_frames: int
) -> Tensor:
    """conv(SiLU(GroupNorm(part))) on a band of rows ((B T), C, h, W) with the clip's statistics."""
    mean, rstd = stats
    shape = (mean.shape[0], num_frames, mean.shape[2], part.shape[1] // mean.shape[2], *part.shape[2:])
    normed = (part.float().reshape(shape) - mean).mul_(rstd).reshape(part.shape)
    normed = normed.mul_(norm.weight.float()[:, None, None]).add_(norm.bias.float()[:, None, None]).to(part.dtype)
    video = rearrange(F.silu(normed, inplace=True), "(b t) c h w -> b c t h w", t=num_frames)
    return rearrange(conv(video), "b c t h w -> (b t) c h w")


def _split_moments(moments: Tensor) -> tuple[Tensor, Tensor]:
    mean, logvar = moments.chunk(2, dim=1)
    return mean, logvar.clamp(*LOGVAR_RANGE)


class AutoencoderKL(nn.Module):
    """The engine's ``first_stage_model``: ``encoder`` + temporal ``decoder``; latents scaled by ``scale_factor``.

    Example::

        z = vae.encode(frames, generator=torch.Generator().manual_seed(1234))  # (N, 4, h, w)
        video = vae.decode(z, num_frames=z.shape[0])  # (N, 3, H, W), unclamped
    """

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        self.scale_factor = cfg.scale_factor
        self.encoder = Encoder(cfg)
        self.decoder = VideoDecoder(cfg)

    def encode_moments(self, x: Tensor, batch_size: int | None = None) -> tuple[Tensor, Tensor]:
        """Posterior (mean, logvar clamped to [-30, 20]), unscaled, each (N, z, H/8, W/8).

        ``batch_size`` bounds how many frames go through the encoder at once (memory at 320x576);
        frames are independent, so it changes nothing but round-off.
        """
        chunks = x.split(batch_size) if batch_size else (x,)
        return _split_moments(torch.cat([self.encoder(chunk) for chunk in chunks]))

    def encode(
        self,
        x: Tensor,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
        batch_size: int | None = None,
    ) -> Tensor:
        """SCALED posterior sample ``scale_factor * (mean + exp(logvar/2) * eps)`` of frames (N, 3, H, W) in [-1, 1].

        ``eps`` is ``noise`` if given, else CPU draws from ``generator``, one frame after the other like the
        official per-frame ``encode_first_stage`` (so a seeded generator reproduces its numbers).
        """
        mean, logvar = self.encode_moments(x, batch_size)
        if noise is None:
            frame_shape = (1, *mean.shape[1:])
            draws = [torch.randn(frame_shape, generator=generator, dtype=torch.float32) for _ in range(mean.shape[0])]
            noise = torch.cat(draws)  # float32 draws, as officially, whatever torch's default dtype
        std = torch.exp(0.5 * logvar)
        sample = mean + std * noise.to(device=mean.device, dtype=mean.dtype)
        return self.scale_factor * sample

    def decode(self, latents: Tensor, num_frames: int | None = None) -> Tensor:
        """Pixels (N, 3, H, W), unclamped, of SCALED latents (N, z, h, w); each run of ``num_frames`` is one clip.

        ``num_frames=None`` decodes all N latents as a single clip.
        """
        z = (1.0 / self.scale_factor) * latents  # sgm multiplies by the reciprocal
        return self.decoder(z, latents.shape[0] if num_frames is None else num_frames)


class ModeEncoder(nn.Module):
    """Conditioner embedder 3 (``AutoencoderKLModeOnly``): encoder -> ``quant_conv`` -> posterior MODE, unscaled.

    Example::

        concat = ModeEncoder(VAEConfig())(reference)  # (1, 3, H, W) -> (1, 4, H/8, W/8)
    """

    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.quant_conv = nn.Conv2d(2 * cfg.z_channels, 2 * cfg.z_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        mean, _ = _split_moments(self.quant_conv(self.encoder(x)))
        return mean
