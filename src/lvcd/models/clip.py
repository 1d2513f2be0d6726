"""CLIP image tower (open_clip ``VisionTransformer`` layout) and the official SVD/LVCD CLIP preprocessing.

The official conditioner's embedder 0 (sgm ``FrozenOpenCLIPImagePredictionEmbedder``) resizes the reference
frame to 224 px with kornia 0.6.9 (Gaussian-blur antialias, then bicubic ``align_corners=True``), maps
[-1, 1] to CLIP-normalised pixels and returns the ViT's projected class token, without L2 normalisation.

    >>> from lvcd.config import CLIPConfig
    >>> embedder = CLIPImageEmbedder(CLIPConfig(width=64, layers=1, head_width=32, embed_dim=16))
    >>> embedder(torch.zeros(2, 3, 64, 128)).shape
    torch.Size([2, 1, 16])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lvcd.config import CLIPConfig
from lvcd.models.attention_kernels import sdpa

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "CLIPImageEmbedder",
    "CLIPVisionTower",
    "clip_preprocess",
    "gaussian_kernel1d",
    "resize_antialias_kornia069",
]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# --------------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------------


def gaussian_kernel1d(
    kernel_size: int, sigma: float, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> Tensor:
    """Normalised 1-D Gaussian taps centred on the middle tap (kornia's construction for odd sizes)."""
    offsets = torch.arange(kernel_size, dtype=torch.float32) - kernel_size // 2
    if kernel_size % 2 == 0:
        offsets = offsets + 0.5
    taps = torch.exp(-offsets.pow(2) / (2.0 * sigma**2))
    return (taps / taps.sum()).to(dtype=dtype, device=device)


def _blur_axis(images: Tensor, kernel_size: int, sigma: float, axis: int) -> Tensor:
    """Depthwise Gaussian along H (axis=2) or W (axis=3) with a 'reflect' border (kornia ``filter2d``)."""
    channels = images.shape[1]
    if sigma <= 0.01:
        # Upscaled axis (sigma clamped to 0.001) or nearly 1:1: the taps are exactly [0, 1, 0] in
        # floating point (exp(-1 / (2 * 0.01**2)) underflows to 0), so the blur is an identity.
        return images
    taps = gaussian_kernel1d(kernel_size, sigma, dtype=images.dtype, device=images.device)
    pad = kernel_size // 2
    if axis == 2:
        weight = taps.view(1, 1, kernel_size, 1).expand(channels, 1, kernel_size, 1)
        padded = F.pad(images, (0, 0, pad, pad), mode="reflect")
    else:
        weight = taps.view(1, 1, 1, kernel_size).expand(channels, 1, 1, kernel_size)
        padded = F.pad(images, (pad, pad, 0, 0), mode="reflect")
    return F.conv2d(padded, weight.contiguous(), groups=channels)


def antialias_blur_params(
    in_size: tuple[int, int], out_size: tuple[int, int]
) -> tuple[tuple[float, float], tuple[int, int]]:
    """kornia 0.6.9's antialias (sigma, kernel size) per axis (H, W).

    sigma = max((in/out - 1) / 2, 0.001), kernel = int(max(4 sigma, 3)) bumped to odd. The rule is applied
    to every axis, also when it is upscaled: sigma 0.001 then gives the taps [0, 1, 0] (an identity).
    """
    sigmas = tuple(max((i / o - 1.0) / 2.0, 0.001) for i, o in zip(in_size, out_size, strict=True))
    kernels = tuple(int(max(4.0 * s, 3)) for s in sigmas)
    kernels = tuple(k + 1 if k % 2 == 0 else k for k in kernels)
    return sigmas, kernels  # type: ignore[return-value]


def resize_antialias_kornia069(images: Tensor, size: tuple[int, int]) -> Tensor:
    """kornia 0.6.9 ``resize(images, size, 'bicubic', align_corners=True, antialias=True)``.

    A separable Gaussian blur (width pass, then height pass; parameters from :func:`antialias_blur_params`,
    'reflect' border), then ``F.interpolate(bicubic, align_corners=True)``. Newer kornia (and torch's own
    ``antialias=True``) resize differently, and the official CLIP embedding is only reproduced this way.

        >>> resize_antialias_kornia069(torch.rand(1, 3, 320, 576), (224, 224)).shape
        torch.Size([1, 3, 224, 224])
    """
    if images.dim() != 4:
        raise ValueError(f"Expected images of shape (B, C, H, W), got {tuple(images.shape)}.")
    in_size = (images.shape[-2], images.shape[-1])
    size = (int(size[0]), int(size[1]))
    if in_size == size:
        # kornia returns the input unchanged in this case (no blur).
        return images
    (sigma_h, sigma_w), (kernel_h, kernel_w) = antialias_blur_params(in_size, size)
    blurred = _blur_axis(images.contiguous(), kernel_w, sigma_w, axis=3)
    blurred = _blur_axis(blurred, kernel_h, sigma_h, axis=2)
    return F.interpolate(blurred, size=size, mode="bicubic", align_corners=True)


def clip_preprocess(images: Tensor, image_size: int = 224) -> Tensor:
    """Official CLIP input: images (B,3,H,W) in [-1,1] -> kornia-0.6.9 resize -> [0,1] -> CLIP mean/std.

    Low-precision inputs are preprocessed in float32; the result has the input's dtype (fp64 stays fp64).

        >>> clip_preprocess(torch.zeros(1, 3, 64, 128)).shape
        torch.Size([1, 3, 224, 224])
    """
    work_dtype = images.dtype if images.dtype in (torch.float32, torch.float64) else torch.float32
    pixels = resize_antialias_kornia069(images.to(work_dtype), (image_size, image_size))
    pixels = (pixels + 1.0) / 2.0
    mean = torch.tensor(CLIP_MEAN, dtype=work_dtype, device=pixels.device).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD, dtype=work_dtype, device=pixels.device).view(1, 3, 1, 1)
    return ((pixels - mean) / std).to(images.dtype)


# --------------------------------------------------------------------------------------------------
# Vision transformer
# --------------------------------------------------------------------------------------------------


class PackedSelfAttention(nn.Module):
    """Multi-head self-attention with nn.MultiheadAttention's parameter names (packed q/k/v projection)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise ValueError(f"CLIP width {width} is not divisible by {heads} heads.")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        batch, tokens, width = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        # (B, N, 3*W) -> (3, B, heads, N, head_dim)
        qkv = qkv.view(batch, tokens, 3, self.heads, width // self.heads).permute(2, 0, 3, 1, 4)
        attended = sdpa(qkv[0], qkv[1], qkv[2])
        attended = attended.transpose(1, 2).reshape(batch, tokens, width)
        return self.out_proj(attended)


class ResidualAttentionBlock(nn.Module):
    """Pre-norm transformer block (open_clip ``ResidualAttentionBlock`` without layer scale)."""

    def __init__(self, width: int, heads: int, mlp_width: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=1e-5)
        self.attn = PackedSelfAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width, eps=1e-5)
        self.mlp = nn.Sequential()
        self.mlp.add_module("c_fc", nn.Linear(width, mlp_width))
        self.mlp.add_module("gelu", nn.GELU())  # exact erf GELU, as open_clip's ViT-H
        self.mlp.add_module("c_proj", nn.Linear(mlp_width, width))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int, mlp_width: int):
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads, mlp_width) for _ in range(layers))

    def forward(self, x: Tensor) -> Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


class CLIPVisionTower(nn.Module):
    """open_clip ``VisionTransformer`` image tower: CLIP-normalised pixels -> projected class token.

    Parameter names equal open_clip's (``class_embedding``, ``positional_embedding``, ``conv1.weight``,
    ``ln_pre.*``, ``transformer.resblocks.{i}.*``, ``ln_post.*``, ``proj``), so official weights load by key.
    Computes in the parameters' dtype; returns the input's dtype.

        >>> tower = CLIPVisionTower(CLIPConfig(width=64, layers=1, head_width=32, embed_dim=16))
        >>> tower(torch.zeros(1, 3, 224, 224)).shape
        torch.Size([1, 16])
    """

    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        if cfg.image_size % cfg.patch_size:
            raise ValueError(f"CLIP image_size {cfg.image_size} is not a multiple of patch_size {cfg.patch_size}.")
        self.cfg = cfg
        grid = cfg.image_size // cfg.patch_size
        width = cfg.width
        self.conv1 = nn.Conv2d(3, width, kernel_size=cfg.patch_size, stride=cfg.patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.empty(width))
        self.positional_embedding = nn.Parameter(torch.empty(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width, eps=1e-5)
        self.transformer = Transformer(width, cfg.layers, cfg.heads, int(width * cfg.mlp_ratio))
        self.ln_post = nn.LayerNorm(width, eps=1e-5)
        self.proj = nn.Parameter(torch.empty(width, cfg.embed_dim))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """open_clip-style random init (works on the meta device); official weights overwrite it."""
        scale = self.cfg.width**-0.5
        nn.init.normal_(self.class_embedding, std=scale)
        nn.init.normal_(self.positional_embedding, std=scale)
        nn.init.normal_(self.proj, std=scale)
        for block in self.transformer.resblocks:
            nn.init.normal_(block.attn.in_proj_weight, std=scale)
            nn.init.zeros_(block.attn.in_proj_bias)
            nn.init.zeros_(block.attn.out_proj.bias)

    def forward(self, pixels: Tensor) -> Tensor:
        """pixels (B,3,S,S) CLIP-normalised -> (B, embed_dim) (class token -> ln_post -> @ proj, no L2 norm)."""
        out_dtype = pixels.dtype
        x = self.conv1(pixels.to(self.conv1.weight.dtype).contiguous())  # (B, width, grid, grid)
        x = x.flatten(2).transpose(1, 2)  # (B, grid*grid, width)
        class_token = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([class_token, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.transformer(self.ln_pre(x))
        pooled = self.ln_post(x[:, 0])
        return (pooled @ self.proj).to(out_dtype)


class _OpenCLIPModel(nn.Module):
    """Holds the tower as ``visual`` so keys read ``model.visual.*`` like open_clip's ``CLIP`` model."""

    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        self.visual = CLIPVisionTower(cfg)


class _OpenCLIPHolder(nn.Module):
    """sgm's ``FrozenOpenCLIPImageEmbedder`` keeps the open_clip model as ``.model``."""

    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        self.model = _OpenCLIPModel(cfg)


class CLIPImageEmbedder(nn.Module):
    """Conditioner embedder 0: images (B,3,H,W) in [-1,1] -> ``crossattn`` (B, 1, embed_dim).

    Its state_dict keys read ``open_clip.model.visual.*``; inside the conditioner (as ``embedders.0``) they
    match the official ``conditioner.embedders.0.open_clip.model.visual.*``. The official text-tower
    leftovers are not part of this module.

        >>> embedder = CLIPImageEmbedder(CLIPConfig(width=64, layers=1, head_width=32, embed_dim=16))
        >>> sorted(embedder.state_dict())[0]
        'open_clip.model.visual.class_embedding'
    """

    def __init__(self, cfg: CLIPConfig):
        super().__init__()
        self.cfg = cfg
        self.open_clip = _OpenCLIPHolder(cfg)

    @property
    def visual(self) -> CLIPVisionTower:
        return self.open_clip.model.visual

    def forward(self, images: Tensor) -> Tensor:
        # Preprocess at least in fp32 (as the official kornia ops on fp32 frames); the tower then casts
        # to its own dtype, and the result goes back to the caller's dtype.
        work_dtype = images.dtype if images.dtype in (torch.float32, torch.float64) else torch.float32
        pixels = clip_preprocess(images.to(work_dtype), self.cfg.image_size)
        embedding = self.visual(pixels)  # (B, embed_dim)
        return embedding.unsqueeze(1).to(images.dtype)
