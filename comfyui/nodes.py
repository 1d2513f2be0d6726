"""The LVCD nodes, over ``lvcd.LVCDPipeline`` and ``lvcd.lineart``.

ComfyUI's conventions: IMAGE is a float tensor (batch, height, width, channels) in [0, 1]; model files are chosen
from ComfyUI's model folders (``folder_paths``: the SVD file in ``models/checkpoints``, ``lvcd.ckpt`` and the line-art
weights in ``models/lvcd``); a problem raises an exception whose message ComfyUI shows in the node's red box;
progress goes to ComfyUI's progress bar, and Cancel stops a colorization between two denoising steps.
Nothing is imported or loaded until a node runs.
"""

from __future__ import annotations

import logging
import os

from .helpers import (
    AUTO,
    CATEGORY,
    DTYPES,
    HUB,
    LINEART_LEVELS,
    LINEART_METHODS,
    MAX_SEED,
    MODEL_FOLDER,
    POLARITIES,
    SAMPLER_NAMES,
    SVD_FOLDER,
    VAE_DTYPES,
    WHOLE_MODEL,
    _clean,
    _config,
    _files,
    _keyframes,
    _lineart_files,
    _low_vram,
    _model_files,
    _register_model_folder,
    _require_library,
    _resolve,
    _rgb,
    _size,
    _weights_bytes,
)

log = logging.getLogger(__name__)

# Frame sizes are multiples of the model's step (64 for the official model, 16 for the demo model): the widgets step
# by the smaller, and the node names the model's own step when a size is not a multiple of it.
SIZE_STEP = 16
SIZE_TIP = "0: automatic. Else a multiple of the model's step: 64 (official model), 16 (demo model)."


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
                "lvcd": (
                    [HUB, WHOLE_MODEL, *_model_files()],
                    {"tooltip": "lvcd.ckpt from models/lvcd (files named sk_model* are line-art weights: not listed)."},
                ),
                "dtype": (
                    list(DTYPES),
                    {"default": "auto", "tooltip": "auto: bf16 on a GPU (fp16 before Ampere), fp32 on the CPU."},
                ),
                "offload": ("BOOLEAN", {"default": False, "tooltip": "Keep the parts not in use off the GPU."}),
            },
            "optional": {
                "config": (
                    "STRING",
                    {
                        "default": "",
                        "tooltip": "Model config: empty (the official one, or the one a whole-model file carries), a "
                        "preset name or a JSON path.",
                    },
                ),
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
        config = _config(config, node)
        svd_path = _resolve(svd, SVD_FOLDER, SVD_REPO, node)
        lvcd_path = _resolve(lvcd, MODEL_FOLDER, LVCD_REPO, node)
        torch_dtype = getattr(torch, DTYPES[dtype]) if DTYPES[dtype] else None
        device = model_management.get_torch_device()
        if not offload and _low_vram(model_management):
            log.info("%s: ComfyUI runs in low-VRAM mode: offloading the models not in use", node)
            offload = True
        try:
            if device != torch.device("cpu"):  # ComfyUI's own models give up what the weights will take
                vae_torch_dtype = getattr(torch, DTYPES[vae_dtype])
                weights = _weights_bytes(svd_path, lvcd_path, config, device, torch_dtype, vae_torch_dtype)
                model_management.free_memory(weights, device)
            pipe = LVCDPipeline.from_single_file(
                svd_path, lvcd_path, config=config, device=device,
                dtype=torch_dtype, offload=bool(offload), vae_dtype=getattr(torch, DTYPES[vae_dtype]),
            )  # fmt: skip
        except LVCDError as err:
            raise ValueError(f"{node}: {_clean(err)}") from None
        return (pipe,)


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
                "width": ("INT", {"default": 0, "min": 0, "max": 4096, "step": SIZE_STEP, "tooltip": SIZE_TIP}),
                "height": ("INT", {"default": 0, "min": 0, "max": 4096, "step": SIZE_STEP, "tooltip": SIZE_TIP}),
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
        size = _size(width, height, pipeline.config, node)
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
                "weights": (
                    [AUTO, *_lineart_files()],
                    {
                        "tooltip": "auto: sk_model.pth from models/lvcd (files named lvcd* or svd* are models: not listed)."
                    },
                ),
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
