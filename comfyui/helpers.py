"""The LVCD nodes' helpers: ComfyUI's model folders, the weights menus and files, IMAGE inputs in lvcd's terms, and
messages in the node's terms. Nothing is imported from lvcd or torch until a node runs."""

from __future__ import annotations

import importlib.util
import os
import re

LIBRARY_MISSING = (
    "the lvcd library is not installed in ComfyUI's Python: run `pip install /path/to/lvcd` with that Python (or keep "
    "this node folder inside a clone of the lvcd repository), then restart ComfyUI"
)

CATEGORY = "LVCD"
MODEL_FOLDER = "lvcd"  # ComfyUI/models/lvcd: lvcd.ckpt (or its `lvcd convert` safetensors), sk_model.pth
SVD_FOLDER = "checkpoints"  # where ComfyUI's own SVD workflows keep svd.safetensors
SAMPLER_NAMES = ("euler", "heun", "dpmpp_2m")  # lvcd.diffusion.SAMPLERS (not imported until a node runs)
HUB = "huggingface-cache"  # resolve the official file through the Hugging Face cache
WHOLE_MODEL = "none (svd is a whole-model file)"
AUTO = "auto"
POLARITIES = ("auto", "dark-lines", "bright-lines")
LINEART_LEVELS = ("auto", "on", "off")  # lvcd.io.paper.LEVELS
LINEART_METHODS = ("informative", "informative-coarse", "xdog")
DTYPES = {"auto": None, "fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}
VAE_DTYPES = ["fp32", "bf16", "fp16"]
MAX_SEED = 2**64 - 1


def _require_library(node: str) -> None:
    """A pack installed on its own (the registry installs this folder only) says what is missing, not 'No module
    named lvcd'."""
    if importlib.util.find_spec("lvcd") is None:
        raise RuntimeError(f"{node}: {LIBRARY_MISSING}.")


def _register_model_folder() -> None:
    """Make ComfyUI list the model files of ``models/lvcd`` (idempotent).

    Paths that extra_model_paths.yaml added (``lvcd: ...``) stay, the default one after them. ComfyUI registers such
    a folder with no extension filter (``add_model_folder_path``: every file listed, notes and all), so the model
    extensions are set here, and the listing ComfyUI cached under the old filter is dropped (its cache is checked
    against folder times only)."""
    import folder_paths

    default = os.path.join(folder_paths.models_dir, MODEL_FOLDER)
    paths, extensions = folder_paths.folder_names_and_paths.get(MODEL_FOLDER, ([], None))
    if default not in paths:
        paths.append(default)
    if not extensions:
        folder_paths.folder_names_and_paths[MODEL_FOLDER] = (paths, set(folder_paths.supported_pt_extensions))
        getattr(folder_paths, "filename_list_cache", {}).pop(MODEL_FOLDER, None)


# models/lvcd holds both kinds of file: each menu leaves out the files named as the other kind's (a renamed file is in
# both). Line-art weights are sk_model.pth / sk_model2.pth (lvcd.lineart.WEIGHT_FILES) or a safetensors copy of them.
LINEART_STEM = "sk_model"
MODEL_STEMS = ("lvcd", "svd")


def _stem(name: str) -> str:
    return os.path.splitext(os.path.basename(name))[0].lower()


def _files(folder: str) -> list[str]:
    import folder_paths

    _register_model_folder()
    return folder_paths.get_filename_list(folder)


def _model_files() -> list[str]:
    """The lvcd menu of the loader: models/lvcd without the line-art weights."""
    return [name for name in _files(MODEL_FOLDER) if not _stem(name).startswith(LINEART_STEM)]


def _lineart_files() -> list[str]:
    """The weights menu of the line-art node: models/lvcd without the files named as LVCD or SVD models."""
    return [name for name in _files(MODEL_FOLDER) if not _stem(name).startswith(MODEL_STEMS)]


def _clean(err: BaseException) -> str:
    """A library message, written for the command line, in the node's terms."""
    text = str(err) or type(err).__name__
    text = text.replace("--size", "width and height").replace("`lvcd convert`", "lvcd's convert command")
    return re.sub(r"(?<![\w-])--([a-z][a-z-]*)", lambda m: f"the {m.group(1).replace('-', ' ')} input", text)


def _resolve(choice: str, folder: str, repo: tuple[str, str], node: str) -> str | None:
    """A file choice -> its path: from the model folder, or through the Hugging Face cache."""
    if choice == WHOLE_MODEL:
        return None
    if choice == HUB:  # the library's lookup: a cached file is taken with no request to the hub
        from lvcd.errors import WeightsError
        from lvcd.hub import hub_file

        repo_id, filename = repo
        try:
            return hub_file(repo)
        except WeightsError as err:
            reason = str(err.__cause__ or err).split("\n")[0]
            instead = "check the network"  # lvcd.ckpt is public: no login needed
            if folder == SVD_FOLDER:
                instead = "log in to Hugging Face (SVD is licence-gated: accept its licence on the model page first)"
            raise RuntimeError(
                f"{node}: could not get {filename} from huggingface.co/{repo_id} ({reason}). "
                f"Put the file in ComfyUI/models/{folder}/ and choose it, or {instead}."
            ) from err
    import folder_paths

    _register_model_folder()
    path = folder_paths.get_full_path(folder, choice)
    if path is None:
        raise FileNotFoundError(f"{node}: {choice} is not in ComfyUI/models/{folder}/; refresh and choose again.")
    return path


def _rgb(images, what: str):
    """IMAGE (batch, height, width, channels) in [0, 1] -> (batch, 3, height, width) float32 on the CPU.

    Gray is repeated to RGB; RGBA is composited over white, as lvcd does with transparent pictures."""
    import torch

    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[0] == 0:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"{what}: expected an IMAGE batch (batch, height, width, channels), got {shape}.")
    images = images.detach().float().cpu()
    channels = images.shape[-1]
    if channels == 1:
        images = images.expand(-1, -1, -1, 3)
    elif channels == 4:
        alpha = images[..., 3:]
        images = images[..., :3] * alpha + (1 - alpha)
    elif channels != 3:
        raise ValueError(f"{what}: expected 1, 3 or 4 channels, got {channels}.")
    return images.clamp(0, 1).permute(0, 3, 1, 2).contiguous()


def _size(width: int, height: int, config, node: str) -> tuple[int, int] | None:
    """The width and height inputs -> (height, width), or None (automatic: near the model's trained area)."""
    if not width and not height:
        return None
    multiple, (trained_height, trained_width) = config.size_multiple, config.train_size_hw
    if not (width and height) or width % multiple or height % multiple:
        raise ValueError(
            f"{node}: width {width} and height {height} must both be multiples of {multiple}, or both 0 (automatic: "
            f"near the trained {trained_width}x{trained_height} area, aspect kept)."
        )
    return height, width


def _keyframes(images, indices: str, count: int, node: str, reference_frame: int = 0) -> dict:
    """Keyframe images (a batch) and their frame indices ("12, 40") -> {index: (3, H, W) tensor}."""
    text = (indices or "").strip()
    if images is None:
        if text:
            raise ValueError(f"{node}: keyframe_indices is set but no keyframes image batch is connected.")
        return {}
    batch = _rgb(images, f"{node}: keyframes")
    parts = [part.strip() for part in text.replace(";", ",").split(",") if part.strip()]
    if not all(part.isdigit() for part in parts) or len(parts) != batch.shape[0]:
        raise ValueError(
            f"{node}: keyframe_indices must list one frame index per keyframe image ({batch.shape[0]} image(s)), "
            f"e.g. '12, 40'; got {text!r}."
        )
    keys = {int(part): frame for part, frame in zip(parts, batch, strict=True)}
    if len(keys) != len(parts):
        raise ValueError(f"{node}: keyframe_indices {text!r} repeats an index.")
    for index in keys:
        if not 0 <= index < count:
            raise ValueError(f"{node}: keyframe index {index} is outside the shot (0..{count - 1}).")
        if index == reference_frame:
            raise ValueError(f"{node}: keyframe index {index} is the reference's frame (reference_frame).")
    return keys


def _low_vram(model_management) -> bool:
    """Whether ComfyUI was started with --lowvram or --novram (or chose that mode for a small GPU)."""
    return getattr(getattr(model_management, "vram_state", None), "name", "") in ("LOW_VRAM", "NO_VRAM")


def _config(config: str | None, node: str) -> str | None:
    """The config input: None when empty (the config a whole-model file carries, else the official one); a preset
    name or a JSON path is checked here, so that its problems are the node's one-line error."""
    config = (config or "").strip() or None
    if config is not None:
        from lvcd.config import get_config

        try:
            get_config(config)
        except (ValueError, OSError) as err:  # unknown name; missing, unreadable or malformed file
            raise ValueError(f"{node}: the config input: {_clean(err)}") from None
    return config


def _weights_bytes(svd_path, lvcd_path, config, device, dtype, vae_dtype) -> int:
    """Bytes of the model's weights in these dtypes: the model the files hold (the config input's, else the one a
    whole-model file carries, else the official one; read from the files' headers), built on the meta device."""
    from lvcd.devices import default_dtype
    from lvcd.memory_estimate import meta_model, part_weight_bytes
    from lvcd.weights import check_fit

    model = meta_model(check_fit(svd_path, lvcd_path, config), dtype or default_dtype(device), vae_dtype)
    return sum(part_weight_bytes(model).values())
