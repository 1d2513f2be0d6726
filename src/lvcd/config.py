"""Typed, frozen configs for every LVCD network, with the official full size as a preset.

A config can also be built from a JSON of sgm hyper-parameter names (the layout of the official
``configs/lvcd.yaml`` ``model`` node, as in the fixtures' ``tiny_config.json``), so the same code
builds the full model and the tiny test model.

    >>> cfg = get_config("svd-lvcd")
    >>> cfg.unet.model_channels
    320
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

# The official layout, stated once: the model was trained on 320x576 frames and clips of 14 video frames; sampling
# windows overlap the previous window by 4 frames (a window: reference + 4 prev-reference + 14 video = 19 frames);
# 25 Euler steps per window.
TRAIN_SIZE_HW: tuple[int, int] = (320, 576)
VIDEO_FRAMES = 14
OVERLAP = 4
NUM_STEPS = 25


@dataclass(frozen=True)
class UNetConfig:
    """Spatio-temporal UNet (and, with ``hint_channels``, its ControlNet) hyper-parameters."""

    in_channels: int = 8
    out_channels: int = 4
    model_channels: int = 320
    channel_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (4, 2, 1)
    num_head_channels: int = 64
    transformer_depth: int = 1  # transformer blocks (spatial + temporal pairs) per SpatialVideoTransformer
    context_dim: int = 1024
    adm_in_channels: int = 768
    video_kernel_size: tuple[int, int, int] = (3, 1, 1)
    hint_channels: int = 3

    @property
    def time_embed_dim(self) -> int:
        return 4 * self.model_channels


@dataclass(frozen=True)
class VAEConfig:
    """KL-f8 autoencoder (2-D encoder, temporal decoder) hyper-parameters (sgm ``ddconfig``)."""

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    z_channels: int = 4
    in_channels: int = 3
    out_ch: int = 3
    video_kernel_size: tuple[int, int, int] = (3, 1, 1)
    scale_factor: float = 0.18215

    @property
    def downsample_factor(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)


@dataclass(frozen=True)
class CLIPConfig:
    """open_clip vision tower hyper-parameters (ViT-H/14 by default)."""

    image_size: int = 224
    patch_size: int = 14
    width: int = 1280
    layers: int = 32
    head_width: int = 80
    mlp_ratio: float = 4.0
    embed_dim: int = 1024

    @property
    def heads(self) -> int:
        return self.width // self.head_width


@dataclass(frozen=True)
class SamplingConfig:
    """EDM discretization, the default steps and window overlap, and the official conditioning values."""

    sigma_min: float = 0.002
    sigma_max: float = 700.0
    rho: float = 7.0
    num_steps: int = NUM_STEPS
    overlap: int = OVERLAP  # frames each window shares with the previous one
    fps_id: int = 6
    motion_bucket_id: int = 160
    cond_aug: float = 0.0
    # Training sigma distribution: ln(sigma) ~ N(p_mean, p_std^2).
    p_mean: float = 1.0
    p_std: float = 1.6


@dataclass(frozen=True)
class LVCDConfig:
    """Everything needed to build the LVCD model (UNet, ControlNet, CLIP, two VAEs)."""

    unet: UNetConfig = field(default_factory=UNetConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    # Embedder 3 (the VAE encoder that makes the `concat` latent) has its own copy of the weights.
    cond_vae: VAEConfig = field(default_factory=VAEConfig)
    clip: CLIPConfig = field(default_factory=CLIPConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    # Trained frame size; the pipeline resizes inputs to about this area.
    train_size_hw: tuple[int, int] = TRAIN_SIZE_HW
    # Video frames per window the model was trained on (the reference path comes on top).
    video_frames: int = VIDEO_FRAMES
    name: str = "custom"

    @property
    def size_multiple(self) -> int:
        """Pixel sizes must be multiples of this (VAE /8 times the UNet's 3 downsamples)."""
        return self.vae.downsample_factor * 2 ** (len(self.unet.channel_mult) - 1)


PRESETS: dict[str, LVCDConfig] = {
    "svd-lvcd": LVCDConfig(name="svd-lvcd"),
}


CONFIG_FORMAT = "lvcd-config/1"


def config_to_dict(config: LVCDConfig) -> dict[str, Any]:
    """A JSON-ready dict of every field (``config_from_dict`` reads it back exactly)."""
    return {"format": CONFIG_FORMAT, **asdict(config)}


def config_from_dict(doc: dict[str, Any]) -> LVCDConfig:
    """Inverse of ``config_to_dict``; unknown keys are errors, absent keys take the defaults. Every value given is
    checked (ValueError): sizes and counts are positive whole numbers, other numbers finite."""
    if not isinstance(doc, dict):
        raise ValueError(f"Not an lvcd config document (a JSON {_json_type(doc)}, expected an object).")
    if doc.get("format") != CONFIG_FORMAT:
        raise ValueError(f"Not an lvcd config document (format {doc.get('format')!r}, expected {CONFIG_FORMAT!r}).")
    sections = {
        "unet": UNetConfig,
        "vae": VAEConfig,
        "cond_vae": VAEConfig,
        "clip": CLIPConfig,
        "sampling": SamplingConfig,
    }
    values: dict[str, Any] = {}
    known = {f.name: f for f in fields(LVCDConfig)}
    for key, value in doc.items():
        if key == "format":
            continue
        if key not in known:
            raise ValueError(f"Unknown config key {key!r}; valid: {', '.join(known)}.")
        if key in sections:
            cls = sections[key]
            if not isinstance(value, dict):
                raise ValueError(f"Config section {key!r} is a JSON {_json_type(value)}, expected an object.")
            section_fields = {f.name: f for f in fields(cls)}
            unknown = set(value) - set(section_fields)
            if unknown:
                raise ValueError(f"Unknown keys in config section {key!r}: {sorted(unknown)}.")
            value = cls(**{k: _checked(f"{key}.{k}", section_fields[k].type, v) for k, v in value.items()})
        else:
            value = _checked(key, known[key].type, value)
        values[key] = value
    return LVCDConfig(**values)


# Whole-number settings that may be 0 (the others are sizes and counts: at least 1), and lists that may be empty.
_MAY_BE_ZERO = {"sampling.overlap", "sampling.fps_id", "sampling.motion_bucket_id"}
_MAY_BE_EMPTY = {"unet.attention_resolutions"}


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _json_type(value: Any) -> str:
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return next((name for kind, name in kinds.items() if isinstance(value, kind)), "number")


def _checked(name: str, annotation: str, value: Any) -> Any:
    """``value`` of the config field ``name`` (its type annotation as text), checked; lists become tuples."""
    if annotation == "str":
        if not isinstance(value, str):
            raise ValueError(f"Config value {name} is a JSON {_json_type(value)}, expected a string.")
        return value
    if annotation == "float":
        try:  # a whole number past float's range (10**400) overflows here
            number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise ValueError(f"Config value {name} is {_shown(value)}, expected a finite number.")
        return number
    if annotation == "int":
        low = 0 if name in _MAY_BE_ZERO else 1
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            expected = "a whole number, 0 or more" if low == 0 else "a positive whole number"
            raise ValueError(f"Config value {name} is {_shown(value)}, expected {expected}.")
        return value
    if annotation.startswith("tuple[int"):  # tuple[int, ...] (at least one) or tuple[int, int(, int)]
        length = None if annotation.endswith("...]") else annotation.count("int")
        if (
            not isinstance(value, list)
            or (not value and name not in _MAY_BE_EMPTY)
            or (length is not None and len(value) != length)
            or any(isinstance(item, bool) or not isinstance(item, int) or item < 1 for item in value)
        ):
            count = "one or more" if length is None else str(length)
            raise ValueError(
                f"Config value {name} is {_shown(value)}, expected a list of {count} positive whole numbers."
            )
        return tuple(value)
    return value


def get_config(config: str | Path | LVCDConfig | None = None) -> LVCDConfig:
    """Resolve a preset name, a JSON path (lvcd's own format or sgm hyper-parameter names) or a config object."""
    if config is None:
        return PRESETS["svd-lvcd"]
    if isinstance(config, LVCDConfig):
        return config
    text = str(config)
    if text in PRESETS:
        return PRESETS[text]
    path = Path(text)
    if path.suffix.lower() == ".json" or path.exists():
        if not path.exists():
            raise FileNotFoundError(
                f"Config file {path} does not exist. Pass a preset name ({', '.join(PRESETS)}) or the path of a JSON config."
            )
        return config_from_sgm_json(path)
    raise ValueError(
        f"Unknown config {text!r}: use a preset name ({', '.join(PRESETS)}) or the path of a JSON of sgm hyper-parameters."
    )


def _tuple(value: Any) -> tuple:
    return tuple(value) if isinstance(value, (list, tuple)) else (value,)


def _unet_from_sgm(params: dict[str, Any], hint_channels: int) -> UNetConfig:
    depth = params.get("transformer_depth", 1)
    if isinstance(depth, (list, tuple)):
        if len(set(depth)) != 1:
            raise ValueError(
                f"Per-level transformer_depth {depth} is not supported; LVCD uses one depth for all levels."
            )
        depth = depth[0]
    return UNetConfig(
        in_channels=params["in_channels"],
        out_channels=params.get("out_channels", 4),
        model_channels=params["model_channels"],
        channel_mult=_tuple(params["channel_mult"]),
        num_res_blocks=params["num_res_blocks"],
        attention_resolutions=_tuple(params["attention_resolutions"]),
        num_head_channels=params["num_head_channels"],
        transformer_depth=depth,
        context_dim=params["context_dim"],
        adm_in_channels=params["adm_in_channels"],
        video_kernel_size=_tuple(params.get("video_kernel_size", (3, 1, 1))),
        hint_channels=hint_channels,
    )


def _vae_from_ddconfig(dd: dict[str, Any], scale_factor: float, video_kernel_size=(3, 1, 1)) -> VAEConfig:
    if dd.get("attn_resolutions"):
        raise ValueError(
            "VAE attention at encoder/decoder levels (attn_resolutions) is not supported; SVD's VAE has none."
        )
    return VAEConfig(
        ch=dd["ch"],
        ch_mult=_tuple(dd["ch_mult"]),
        num_res_blocks=dd["num_res_blocks"],
        z_channels=dd["z_channels"],
        in_channels=dd.get("in_channels", 3),
        out_ch=dd.get("out_ch", 3),
        video_kernel_size=_tuple(dd.get("video_kernel_size", video_kernel_size)),
        scale_factor=scale_factor,
    )


def config_from_sgm_dict(doc: dict[str, Any], name: str = "custom") -> LVCDConfig:
    """Build a config from the sgm ``model`` node (plus ``open_clip_model_configs`` for the CLIP arch)."""
    model = doc.get("model", doc)
    params = model["params"]
    unet_params = params["network_config"]["params"]
    cnet_params = params.get("controlnet_config", {}).get("params", {})
    unet = _unet_from_sgm(unet_params, hint_channels=cnet_params.get("hint_channels", UNetConfig.hint_channels))
    scale_factor = float(params.get("scale_factor", VAEConfig.scale_factor))

    first = params["first_stage_config"]["params"]
    dec = first["decoder_config"]["params"]
    vae = _vae_from_ddconfig(dec, scale_factor)

    embedders = params["conditioner_config"]["params"]["emb_models"]
    clip_cfg = CLIPConfig()
    cond_vae = vae
    for emb in embedders:
        target = emb["target"].rsplit(".", 1)[-1]
        if target == "FrozenOpenCLIPImagePredictionEmbedder":
            arch = emb["params"]["open_clip_embedding_config"]["params"].get("arch", "ViT-H-14")
            clip_cfg = _clip_from_open_clip(arch, doc.get("open_clip_model_configs", {}))
        elif target == "VideoPredictionEmbedderWithEncoder":
            dd = emb["params"]["encoder_config"]["params"]["ddconfig"]
            cond_vae = _vae_from_ddconfig(dd, scale_factor)

    sampler = params.get("sampler_config", {}).get("params", {})
    disc = sampler.get("discretization_config", {}).get("params", {})
    default = SamplingConfig()
    sampling = replace(
        default,
        sigma_min=float(disc.get("sigma_min", default.sigma_min)),
        sigma_max=float(disc.get("sigma_max", default.sigma_max)),
        rho=float(disc.get("rho", default.rho)),
        num_steps=int(sampler.get("num_steps", default.num_steps)),
    )
    fixture = doc.get("fixture", {})
    size = tuple(fixture.get("frame_size_hw", TRAIN_SIZE_HW))
    return LVCDConfig(
        unet=unet, vae=vae, cond_vae=cond_vae, clip=clip_cfg, sampling=sampling, train_size_hw=size, name=name
    )


def _clip_from_open_clip(arch: str, extra_configs: dict[str, Any]) -> CLIPConfig:
    if arch in extra_configs:
        vision = extra_configs[arch]["vision_cfg"]
        return CLIPConfig(
            image_size=vision["image_size"],
            patch_size=vision["patch_size"],
            width=vision["width"],
            layers=vision["layers"],
            head_width=vision.get("head_width", 64),
            mlp_ratio=vision.get("mlp_ratio", 4.0),
            embed_dim=extra_configs[arch]["embed_dim"],
        )
    if arch == "ViT-H-14":
        return CLIPConfig()
    raise ValueError(f"Unknown open_clip arch {arch!r}: add its config under 'open_clip_model_configs' in the JSON.")


def config_from_sgm_json(path: str | Path) -> LVCDConfig:
    """Read a JSON config: lvcd's own format (``config_to_dict``) or sgm hyper-parameter names (``tiny_config.json``)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"Config file {path} is not valid JSON ({err}).") from err
    if isinstance(doc, dict) and doc.get("format") == CONFIG_FORMAT:
        return config_from_dict(doc)
    try:
        return config_from_sgm_dict(doc, name=path.stem)
    except KeyError as err:
        raise ValueError(
            f"Config file {path} lacks the sgm key {err}; see tests/fixtures/tiny/tiny_config.json for the layout."
        ) from err
