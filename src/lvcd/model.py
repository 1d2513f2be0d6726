"""The whole LVCD model, laid out so that ``state_dict()`` keys are the official ones.

    model.diffusion_model.*                     VideoUNet (SVD UNet + ControlNet inputs)
    control_model.*                             ControlNet
    conditioner.embedders.0.open_clip.model.visual.*   CLIP ViT image tower
    conditioner.embedders.3.encoder.{encoder,quant_conv}.*   VAE encoder making the `concat` latent
    first_stage_model.{encoder,decoder}.*       VAE (2-D encoder, temporal decoder)

Parts can be left out (e.g. only the VAE for data preparation); absent parts are None.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lvcd.config import LVCDConfig
from lvcd.diffusion import vscaling
from lvcd.models.clip import CLIPImageEmbedder
from lvcd.models.controlnet import ControlNet
from lvcd.models.embeddings import micro_conditioning
from lvcd.models.transformer import ClipLayout, SpatialVideoTransformer
from lvcd.models.unet import VideoUNet
from lvcd.models.vae import AutoencoderKL, ModeEncoder

PARTS = ("unet", "controlnet", "clip", "cond_encoder", "first_stage")

# State-dict prefix of each part, in the official files.
PART_PREFIXES = {
    "unet": "model.diffusion_model.",
    "controlnet": "control_model.",
    "clip": "conditioner.embedders.0.",
    "cond_encoder": "conditioner.embedders.3.",
    "first_stage": "first_stage_model.",
}


# The attribute holding each part (CLIP and the conditioner's VAE encoder share the conditioner).
PART_ATTRIBUTES = {
    "unet": "model",
    "controlnet": "control_model",
    "clip": "conditioner",
    "cond_encoder": "conditioner",
    "first_stage": "first_stage_model",
}


@dataclass
class Conditioning:
    """Per-frame conditioning of one network call over (B T) frames."""

    concat: torch.Tensor  # (BT, 4, h, w) UNSCALED latent concatenated to the noisy input
    crossattn: torch.Tensor  # (BT, 1, Dctx) CLIP image embedding
    vector: torch.Tensor  # (BT, 768) fps / motion / cond_aug sinusoids
    hint: torch.Tensor  # (BT, 3 or 1, 8h, 8w) line art, lines ~1 on 0
    hint_features: torch.Tensor | None = None  # ControlNet.encode_hint(hint): a window constant, once per window


class _ParameterFree(nn.Module):
    """Placeholder for the conditioner's sinusoid embedders (fps, motion bucket, cond_aug): no parameters."""


class _ConcatEmbedder(nn.Module):
    def __init__(self, encoder: ModeEncoder):
        super().__init__()
        self.encoder = encoder


class Conditioner(nn.Module):
    """The official GeneralConditioner's parameter layout: embedders 0 (CLIP) and 3 (VAE encoder) carry weights."""

    def __init__(self, clip: CLIPImageEmbedder | None, cond_encoder: ModeEncoder | None):
        super().__init__()
        self.embedders = nn.ModuleList(
            [
                clip if clip is not None else _ParameterFree(),
                _ParameterFree(),
                _ParameterFree(),
                _ConcatEmbedder(cond_encoder) if cond_encoder is not None else _ParameterFree(),
                _ParameterFree(),
            ]
        )


class _DiffusionWrapper(nn.Module):
    def __init__(self, unet: VideoUNet):
        super().__init__()
        self.diffusion_model = unet


def allow_einops_in_graphs() -> None:
    """Let dynamo put einops calls in the graph as single ops instead of tracing einops' Python (halves tracing)."""
    from einops._torch_specific import allow_ops_in_compiled_graph

    allow_ops_in_compiled_graph()


class LVCDModel(nn.Module):
    """SVD + sketch ControlNet + Reference Attention, with the official parameter names.

    >>> model = LVCDModel(get_config("svd-lvcd"))   # doctest: +SKIP  (build on the meta device to avoid RAM)
    """

    def __init__(self, config: LVCDConfig, parts: tuple[str, ...] = PARTS):
        super().__init__()
        unknown = set(parts) - set(PARTS)
        if unknown:
            raise ValueError(f"Unknown model parts {sorted(unknown)}; choose from {PARTS}.")
        self.config = config
        self.parts = tuple(p for p in PARTS if p in parts)
        if "unet" in parts:
            self.model = _DiffusionWrapper(VideoUNet(config.unet))
        if "controlnet" in parts:
            self.control_model = ControlNet(config.unet)
        clip = CLIPImageEmbedder(config.clip) if "clip" in parts else None
        cond_encoder = ModeEncoder(config.cond_vae) if "cond_encoder" in parts else None
        if clip is not None or cond_encoder is not None:
            self.conditioner = Conditioner(clip, cond_encoder)
        if "first_stage" in parts:
            self.first_stage_model = AutoencoderKL(config.vae)

    @classmethod
    def from_parts(cls, *models: LVCDModel) -> LVCDModel:
        """One model holding the parts of several (e.g. a UNet + ControlNet being trained and the frozen encoders
        and VAE); the modules are shared, not copied. Later models' parts win."""
        combined = cls(models[0].config, parts=())
        held: set[str] = set()
        for model in models:
            for part in model.parts:
                attribute = PART_ATTRIBUTES[part]
                setattr(combined, attribute, getattr(model, attribute))
                held.add(part)
                if attribute == "conditioner":  # one conditioner holds both CLIP and the VAE encoder
                    held.update(p for p in ("clip", "cond_encoder") if p in model.parts)
        combined.parts = tuple(p for p in PARTS if p in held)
        return combined

    # Named access to the parts -------------------------------------------------------------------
    @property
    def unet(self) -> VideoUNet:
        return self.model.diffusion_model

    @property
    def controlnet(self) -> ControlNet:
        return self.control_model

    @property
    def clip(self) -> CLIPImageEmbedder:
        return self.conditioner.embedders[0]

    @property
    def cond_encoder(self) -> ModeEncoder:
        return self.conditioner.embedders[3].encoder

    @property
    def vae(self) -> AutoencoderKL:
        return self.first_stage_model

    @property
    def latent_scale(self) -> float:
        return self.config.vae.scale_factor

    def compile_networks(self, **options) -> None:
        """``torch.compile`` the UNet and the ControlNet in place: parameter names (and state_dict keys) unchanged."""
        allow_einops_in_graphs()
        self.unet.compile(**options)
        self.controlnet.compile(**options)

    # Conditioning ---------------------------------------------------------------------------------
    @torch.no_grad()
    def embed_reference(self, reference: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """reference (1, 3, H, W) in [-1, 1] -> (CLIP embedding (1, 1, Dctx), concat MODE latent (1, 4, h, w) unscaled)."""
        # the embedder preprocesses in fp32 and casts to its weights' dtype at its first layer (as the official kornia
        # resize on fp32 frames under autocast): the pixels are not rounded to a low-precision dtype first
        crossattn = self.clip(reference.float()).float()
        enc_dtype = next(self.cond_encoder.parameters()).dtype
        concat = self.cond_encoder(reference.to(enc_dtype)).float()
        return crossattn, concat

    def micro_conditioning(self, num_frames: int, device=None) -> torch.Tensor:
        s = self.config.sampling
        return micro_conditioning(s.fps_id, s.motion_bucket_id, s.cond_aug, num_frames, device=device)

    # The denoiser ---------------------------------------------------------------------------------
    def network(
        self, x_in: torch.Tensor, c_noise: torch.Tensor, cond: Conditioning, layout: ClipLayout
    ) -> torch.Tensor:
        """ControlNet + UNet on the 8-channel input (scaled noisy latent * c_in ++ concat latent)."""
        control = self.control_model(
            x_in, self._hint3(cond.hint), c_noise, cond.crossattn, cond.vector, layout, cond.hint_features
        )
        return self.unet(x_in, c_noise, cond.crossattn, cond.vector, layout, control=control)

    @staticmethod
    def _hint3(hint: torch.Tensor) -> torch.Tensor:
        return hint.expand(-1, 3, -1, -1) if hint.shape[1] == 1 else hint  # the official hints: 3 equal channels

    # Window constants (the same at every step of a window: computed once, not per denoiser call) ----------------
    @torch.no_grad()
    def with_hint_features(self, cond: Conditioning) -> Conditioning:
        """``cond`` with the ControlNet's encoded line art precomputed."""
        dtype = next(self.controlnet.parameters()).dtype
        features = self.controlnet.encode_hint(self._hint3(cond.hint), dtype)
        return Conditioning(cond.concat, cond.crossattn, cond.vector, cond.hint, features)

    @torch.no_grad()
    def with_position_embeddings(self, layout: ClipLayout) -> ClipLayout:
        """``layout`` with every SVT's frame-position embedding (UNet and ControlNet) precomputed."""
        svts = [
            m for net in (self.unet, self.controlnet) for m in net.modules() if isinstance(m, SpatialVideoTransformer)
        ]
        parameter = next(self.unet.parameters())
        return layout.with_position_embeddings(
            {svt.name: svt.position_embedding(layout, parameter.device, parameter.dtype) for svt in svts}
        )

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, cond: Conditioning, layout: ClipLayout) -> torch.Tensor:
        """EDM v-scaling denoiser: D = c_skip x + c_out F(c_in x ++ concat, c_noise). x: (BT, 4, h, w) scaled; sigma: (BT,)."""
        c_skip, c_out, c_in, c_noise = (c[:, None, None, None] for c in vscaling(sigma.to(torch.float32)))
        dtype = next(self.unet.parameters()).dtype
        x_in = torch.cat([x * c_in, cond.concat.to(x.dtype)], dim=1).to(dtype)
        features = cond.hint_features.to(dtype) if cond.hint_features is not None else None
        hint = cond.hint if features is not None else cond.hint.to(dtype)  # unused when the features are given
        context = Conditioning(cond.concat, cond.crossattn.to(dtype), cond.vector.to(dtype), hint, features)
        out = self.network(x_in, c_noise.flatten(), context, layout).to(x.dtype)
        return out * c_out + x * c_skip
