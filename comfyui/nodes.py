"""The LVCD nodes, over ``lvcd.LVCDPipeline`` and ``lvcd.lineart``.

ComfyUI's conventions: IMAGE is a float tensor (batch, height, width, channels) in [0, 1]; model files are chosen
from ComfyUI's model folders (``folder_paths``: the SVD file in ``models/checkpoints``, ``lvcd.ckpt`` and the line-art
weights in ``models/lvcd``); a problem raises an exception whose message ComfyUI shows in the node's red box;
progress goes to ComfyUI's progress bar, and Cancel stops a colorization between two denoising steps.
Nothing is imported or loaded until a node runs.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re

log = logging.getLogger(__name__)
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


def _files(folder: str) -> list[str]:
    import folder_paths

    _register_model_folder()
    return folder_paths.get_filename_list(folder)


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
            raise RuntimeError(
                f"{node}: could not get {filename} from huggingface.co/{repo_id} ({reason}). "
                f"Put the file in ComfyUI/models/{folder}/ and choose it, or log in to Hugging Face (SVD is "
                "licence-gated: accept its licence on the model page first)."
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


def _size(width: int, height: int, multiple: int, node: str) -> tuple[int, int] | None:
    if not width and not height:
        return None
    if not (width and height) or width % multiple or height % multiple:
        raise ValueError(
            f"{node}: width {width} and height {height} must both be multiples of {multiple}, or both 0 (automatic: "
            "near the trained 576x320 area, aspect kept)."
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


class LVCDLoader:
    """Loads the official ``svd.safetensors`` + ``lvcd.ckpt`` (or one whole-model file from lvcd's convert)."""

    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("LVCD_PIPELINE",)
    RETURN_NAMES = ("pipeline",)
    DESCRIPTION = "Load LVCD: Stable Video Diffusion + the LVCD sketch ControlNet (official files)."

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "svd": ([HUB, *_files(SVD_FOLDER)], {"tooltip": "svd.safetensors from models/checkpoints."}),
                "lvcd": ([HUB, WHOLE_MODEL, *_files(MODEL_FOLDER)], {"tooltip": "lvcd.ckpt from models/lvcd."}),
                "dtype": (
                    list(DTYPES),
                    {"default": "auto", "tooltip": "auto: bf16 on a GPU (fp16 before Ampere), fp32 on the CPU."},
                ),
                "offload": ("BOOLEAN", {"default": False, "tooltip": "Keep the parts not in use off the GPU."}),
            },
            "optional": {
                "config": ("STRING", {"default": "", "tooltip": "Model config: empty (official) or a JSON path."}),
                "vae_dtype": (
                    VAE_DTYPES,
                    {
                        "default": "fp32",
                        "tooltip": "The VAE: fp32 as officially; bf16 lowers the estimated GPU peak (not measured).",
                    },
                ),
            },
        }

    def load(self, svd, lvcd, dtype, offload, config="", vae_dtype="fp32"):
        node = "LVCD Loader"
        _require_library(node)
        import comfy.model_management as model_management
        import torch

        from lvcd.errors import LVCDError
        from lvcd.pipeline import LVCD_REPO, SVD_REPO, LVCDPipeline

        if dtype not in DTYPES:
            raise ValueError(f"{node}: dtype {dtype!r} is not one of {', '.join(DTYPES)}.")
        if vae_dtype not in VAE_DTYPES:
            raise ValueError(f"{node}: vae_dtype {vae_dtype!r} is not one of {', '.join(VAE_DTYPES)}.")
        if svd == HUB and lvcd == WHOLE_MODEL:
            raise ValueError(f"{node}: '{WHOLE_MODEL}' needs a whole-model file chosen as svd, not {HUB}.")
        svd_path = _resolve(svd, SVD_FOLDER, SVD_REPO, node)
        lvcd_path = _resolve(lvcd, MODEL_FOLDER, LVCD_REPO, node)
        torch_dtype = getattr(torch, DTYPES[dtype]) if DTYPES[dtype] else None
        device = model_management.get_torch_device()
        if not offload and _low_vram(model_management):
            log.info("%s: ComfyUI runs in low-VRAM mode: offloading the models not in use", node)
            offload = True
        try:
            if device != torch.device("cpu"):  # ComfyUI's own models give up what the weights will take
                weights = _weights_bytes(config.strip() or None, device, torch_dtype, getattr(torch, DTYPES[vae_dtype]))
                model_management.free_memory(weights, device)
            pipe = LVCDPipeline.from_single_file(
                svd_path, lvcd_path, config=config.strip() or None, device=device,
                dtype=torch_dtype, offload=bool(offload), vae_dtype=getattr(torch, DTYPES[vae_dtype]),
            )  # fmt: skip
        except LVCDError as err:
            raise ValueError(f"{node}: {_clean(err)}") from None
        return (pipe,)


def _low_vram(model_management) -> bool:
    """Whether ComfyUI was started with --lowvram or --novram (or chose that mode for a small GPU)."""
    return getattr(getattr(model_management, "vram_state", None), "name", "") in ("LOW_VRAM", "NO_VRAM")


def _weights_bytes(config, device, dtype, vae_dtype) -> int:
    """Bytes of the model's weights in these dtypes (built on the meta device: no memory, no files)."""
    from lvcd.config import get_config
    from lvcd.devices import default_dtype
    from lvcd.memory_estimate import meta_model, part_weight_bytes

    model = meta_model(get_config(config or "svd-lvcd"), dtype or default_dtype(device), vae_dtype)
    return sum(part_weight_bytes(model).values())


class LVCDColorize:
    """Colorizes a batch of line art (frame ``reference_frame``, 0 by default, is the one the reference colours) in
    the reference's colours."""

    CATEGORY = CATEGORY
    FUNCTION = "colorize"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("frames",)
    DESCRIPTION = "Colorize line-art frames from one coloured reference frame (LVCD). Any length and frame size."

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "pipeline": ("LVCD_PIPELINE",),
                "reference": ("IMAGE", {"tooltip": "One image: frame 0 of the shot (or reference_frame), coloured."}),
                "lineart": ("IMAGE", {"tooltip": "The line art of every frame, frame 0 first."}),
                "steps": ("INT", {"default": 25, "min": 1, "max": 200, "tooltip": "Sampler steps per window."}),
                "seed": ("INT", {"default": 0, "min": 0, "max": MAX_SEED, "control_after_generate": True}),
                "overlap": ("INT", {"default": 4, "min": 0, "max": 13, "tooltip": "Frames shared by windows."}),
                "polarity": (list(POLARITIES), {"default": "auto", "tooltip": "dark-lines: dark lines on white."}),
            },
            "optional": {
                "width": ("INT", {"default": 0, "min": 0, "max": 4096, "step": 64, "tooltip": "0: automatic."}),
                "height": ("INT", {"default": 0, "min": 0, "max": 4096, "step": 64, "tooltip": "0: automatic."}),
                "keyframes": ("IMAGE", {"tooltip": "Further coloured frames; later windows follow them."}),
                "keyframe_indices": ("STRING", {"default": "", "tooltip": "Their frame indices, e.g. '12, 40'."}),
                "sampler": (
                    list(SAMPLER_NAMES),
                    {"default": "euler", "tooltip": "euler: official. heun, dpmpp_2m: second order, fewer steps."},
                ),
                "lineart_levels": (
                    list(LINEART_LEVELS),
                    {
                        "default": "auto",
                        "tooltip": "Scans: grey or grainy paper to white, ink to black (auto: "
                        "only when the paper is not clean; off: as drawn).",
                    },
                ),
                "reference_frame": (
                    "INT",
                    {
                        "default": 0,
                        "min": 0,
                        "max": 100000,
                        "tooltip": "The frame the reference colours; inside the shot, it is coloured from there both "
                        "ways. 0: the official single pass.",
                    },
                ),
            },
        }

    def colorize(self, pipeline, reference, lineart, steps, seed, overlap, polarity, width=0, height=0,
                 keyframes=None, keyframe_indices="", sampler="euler", lineart_levels="auto",
                 reference_frame=0):  # fmt: skip
        node = "LVCD Colorize"
        _require_library(node)
        import comfy.model_management as model_management
        import comfy.utils
        import torch

        from lvcd.errors import LVCDError

        references = _rgb(reference, f"{node}: reference")
        if references.shape[0] != 1:
            raise ValueError(
                f"{node}: the reference must be one image, got a batch of {references.shape[0]}; pick one frame "
                "(e.g. with an ImageFromBatch node)."
            )
        frames = _rgb(lineart, f"{node}: line art")
        if polarity not in POLARITIES:
            raise ValueError(f"{node}: polarity {polarity!r} is not one of {', '.join(POLARITIES)}.")
        if lineart_levels not in LINEART_LEVELS:
            raise ValueError(f"{node}: lineart_levels {lineart_levels!r} is not one of {', '.join(LINEART_LEVELS)}.")
        size = _size(width, height, pipeline.config.size_multiple, node)
        keys = _keyframes(keyframes, keyframe_indices, frames.shape[0], node, int(reference_frame))
        model_management.throw_exception_if_processing_interrupted()
        bar = None

        def after_step(progress) -> None:
            nonlocal bar
            if progress.phase == "decoding":  # the bar is full already; Cancel still stops between two frames
                model_management.throw_exception_if_processing_interrupted()
                return
            total = progress.windows * progress.steps
            if bar is None:
                bar = comfy.utils.ProgressBar(total)
            bar.update_absolute(progress.window * progress.steps + progress.step + 1, total)
            model_management.throw_exception_if_processing_interrupted()  # Cancel: stop before the next step

        try:
            if pipeline.device != torch.device("cpu"):  # room for the shot beside the weights already there
                needed = pipeline.memory_beyond_weights(tuple(frames.shape[-2:]), size)
                model_management.free_memory(max(needed, 0), pipeline.device)
            result = pipeline(
                references[0], frames, size=size, num_steps=int(steps), seed=int(seed), polarity=polarity,
                keyframes=keys, overlap=int(overlap), progress=False, callback=after_step, sampler=sampler,
                lineart_levels=lineart_levels, reference_frame=int(reference_frame),
            )  # fmt: skip
        except (LVCDError, ValueError) as err:
            raise ValueError(f"{node}: {_clean(err)}") from None
        return (result.frames.permute(0, 2, 3, 1).contiguous(),)


class LVCDLineart:
    """Extracts line art (dark lines on white) from colour frames, as LVCD's training line art was made."""

    CATEGORY = CATEGORY
    FUNCTION = "extract"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("lineart",)
    DESCRIPTION = "Line art of colour frames: informative-drawings (sk_model.pth, as LVCD was trained) or XDoG."

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE",),
                "method": (list(LINEART_METHODS), {"default": "informative"}),
                "weights": ([AUTO, *_files(MODEL_FOLDER)], {"tooltip": "auto: sk_model.pth from models/lvcd."}),
            }
        }

    def extract(self, images, method, weights=AUTO):
        node = "LVCD Line Art"
        _require_library(node)
        import comfy.model_management as model_management
        import comfy.utils
        import torch

        frames = _rgb(images, f"{node}: images")
        extractor = _extractor(method, weights, model_management.get_torch_device(), node)
        count, (height, width) = frames.shape[0], frames.shape[-2:]
        lineart = torch.empty(count, height, width, 3)
        bar = comfy.utils.ProgressBar(count)
        for index, frame in enumerate(frames):
            model_management.throw_exception_if_processing_interrupted()
            # uint8 in, as the extractor's official call (and `lvcd colorize --from-color`) does
            rgb = (frame.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
            lines = torch.from_numpy(extractor(rgb)).float() / 255
            lineart[index] = lines[..., None].expand(-1, -1, 3)
            bar.update_absolute(index + 1, count)
        return (lineart,)


def _extractor(method: str, weights: str, device, node: str):
    from lvcd.errors import LVCDError, WeightsError
    from lvcd.lineart import WEIGHT_FILES, get_extractor

    if method not in LINEART_METHODS:
        raise ValueError(f"{node}: method {method!r} is not one of {', '.join(LINEART_METHODS)}.")
    path = None
    if method != "xdog":
        if weights != AUTO:
            path = _resolve(weights, MODEL_FOLDER, ("", ""), node)
        else:
            import folder_paths

            _register_model_folder()
            path = folder_paths.get_full_path(MODEL_FOLDER, WEIGHT_FILES[method])  # else lvcd's own search
    try:
        extractor = get_extractor(method, weights=path, device=device)
    except WeightsError as err:
        if path is not None and os.path.isfile(path):  # found but unusable (corrupt, another model, unsafe): say so
            raise ValueError(f"{node}: {_clean(err)}") from None
        filename = WEIGHT_FILES[method]
        raise FileNotFoundError(
            f"{node}: {filename} was not found. Put it in ComfyUI/models/{MODEL_FOLDER}/ (it is in "
            "huggingface.co/lllyasviel/Annotators), or choose the xdog method (no weights, lower quality)."
        ) from None
    except LVCDError as err:
        raise ValueError(f"{node}: {_clean(err)}") from None
    if extractor.warning:
        log.warning("%s: %s line art is outside LVCD's training distribution; expect lower quality.", node, method)
    return extractor


NODE_CLASS_MAPPINGS = {"LVCDLoader": LVCDLoader, "LVCDColorize": LVCDColorize, "LVCDLineart": LVCDLineart}
NODE_DISPLAY_NAME_MAPPINGS = {
    "LVCDLoader": "LVCD Loader",
    "LVCDColorize": "LVCD Colorize",
    "LVCDLineart": "LVCD Line Art",
}
