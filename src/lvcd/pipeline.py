"""``LVCDPipeline``: colorize a shot of line art from one coloured reference frame.

>>> pipe = LVCDPipeline.from_single_file("svd.safetensors", "lvcd.ckpt", device="cuda", dtype=torch.bfloat16)  # doctest: +SKIP
>>> result = pipe("ref.png", "lineart_frames/", seed=1234)       # doctest: +SKIP
>>> result.frames.shape                                           # doctest: +SKIP
torch.Size([75, 3, 320, 576])
"""

from __future__ import annotations

import os
import secrets
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from lvcd.config import LVCDConfig
from lvcd.decoding import decode_frames
from lvcd.diffusion import edm_sigmas
from lvcd.errors import InputError, WeightsError
from lvcd.hints import HintStore, LineartFrames, resolve_polarity
from lvcd.io import SizePlan, fit_image, load_image, open_writer, plan_size, to_rgb_uint8
from lvcd.lineart import ExtractedLineart, LineartExtractor, get_extractor
from lvcd.longvideo import WindowPlan, plan_windows
from lvcd.model import LVCDModel
from lvcd.sampling import CarryState, ReferenceLatents, encode_reference, sample_shot
from lvcd.weights import load_model
from lvcd.workdir import WorkDir, fingerprint

SVD_REPO = ("stabilityai/stable-video-diffusion-img2vid", "svd.safetensors")
LVCD_REPO = ("luckyhzt/lvcd_pretrained_models", "lvcd.ckpt")


@dataclass
class _Job:
    """One shot's resolved inputs and settings, as the sampler needs them."""

    work: WorkDir
    windows: WindowPlan
    plan: SizePlan
    hints: HintStore
    images: dict[int, torch.Tensor]  # frame index -> (1, 3, H, W) in [-1, 1]: the reference (0) and keyframes
    num_steps: int
    seed: int | None
    initial_noise: torch.Tensor | None
    reference_noise: torch.Tensor | None
    prev_attn_steps: int | None
    polarity: str
    progress: bool


@dataclass
class ColorizeResult:
    frames: torch.Tensor | None  # (N, 3, H_in, W_in) in [0, 1]; None when streamed to `output`
    latents: torch.Tensor  # (N, 4, H/8, W/8) scaled latents at the processing size
    size_plan: SizePlan
    seed: int | None
    polarity: str
    output_path: Path | None = None


def _reference_tensor(image, plan: SizePlan, what: str) -> torch.Tensor:
    """Any image -> (1, 3, H, W) in [-1, 1] at the processing size. Float inputs at the processing size are kept exact."""
    if isinstance(image, (str, os.PathLike)):
        image = load_image(image)
    if isinstance(image, torch.Tensor) and image.is_floating_point():
        tensor = image.detach().float().cpu()
        tensor = tensor[None] if tensor.ndim == 3 else tensor
        if tensor.ndim != 4 or tensor.shape[:2] != (1, 3):
            raise InputError(f"The {what} tensor must be (3, H, W) in [0, 1], got {tuple(image.shape)}.")
        if tuple(tensor.shape[-2:]) == plan.model_hw and plan.is_identity:
            return tensor * 2 - 1
        image = (tensor[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255).round().astype(np.uint8)
    try:
        rgb = to_rgb_uint8(image)
    except (TypeError, ValueError) as err:
        raise InputError(
            f"The {what} is not an image ({err}); give a file path, a PIL image, an array or a tensor in [0, 1]."
        ) from err
    if rgb.shape[:2] != plan.input_hw:  # a reference of another size: bring it to the line art's size first
        (h, w), (hi, wi) = rgb.shape[:2], plan.input_hw
        if abs(w / h - wi / hi) > 0.01 * wi / hi:
            warnings.warn(
                f"The {what} is {w}x{h} but the line art is {wi}x{hi} (another aspect ratio): it is stretched to the "
                "line art's size. Give the coloured version of the shot's frame for the best colour transfer.",
                stacklevel=3,
            )
        rgb = np.asarray(Image.fromarray(rgb).resize(plan.input_hw[::-1], Image.Resampling.BICUBIC))
    fitted = fit_image(rgb, plan)
    return torch.from_numpy(fitted).permute(2, 0, 1)[None].float() / 127.5 - 1


def _restore(frame: torch.Tensor, plan: SizePlan) -> torch.Tensor:
    """(3, H, W) in [-1, 1] at the processing size -> (3, H_in, W_in) in [0, 1]."""
    (top, left), (height, width) = plan.offset_yx, plan.content_hw
    frame = (frame[:, top : top + height, left : left + width] + 1) / 2
    if (height, width) != plan.input_hw:
        frame = F.interpolate(frame[None], size=plan.input_hw, mode="bicubic", antialias=True, align_corners=False)[0]
    return frame.clamp(0, 1)


class LVCDPipeline:
    """Holds a loaded ``LVCDModel`` and colorizes shots with it."""

    def __init__(self, model: LVCDModel, device: str | torch.device = "cpu", offload: bool = False):
        self.model = model
        self.device = torch.device(device)
        self.offload = offload and self.device.type != "cpu"
        self.model.to("cpu" if self.offload else self.device)

    @property
    def config(self) -> LVCDConfig:
        return self.model.config

    @classmethod
    def from_single_file(
        cls, svd_path, lvcd_path=None, config=None, device=None, dtype=None, offload: bool = False
    ) -> LVCDPipeline:
        """Load the official ``svd.safetensors`` + ``lvcd.ckpt`` (or one converted whole-model file)."""
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        model, _ = load_model(svd_path, lvcd_path, config=config, device="cpu" if offload else device, dtype=dtype)
        return cls(model, device=device, offload=offload)

    @classmethod
    def from_pretrained(cls, svd_repo=SVD_REPO, lvcd_repo=LVCD_REPO, cache_dir=None, **kwargs) -> LVCDPipeline:
        """Resolve the official files through the Hugging Face cache (downloading them if allowed)."""
        from huggingface_hub import hf_hub_download

        paths = []
        for repo_id, filename in (svd_repo, lvcd_repo):
            try:
                paths.append(hf_hub_download(repo_id=repo_id, filename=filename, cache_dir=cache_dir))
            except Exception as err:  # noqa: BLE001 - every hub failure gets the same guidance
                raise WeightsError(
                    f"Could not get {filename} from huggingface.co/{repo_id} ({type(err).__name__}: {err}). "
                    "SVD is licence-gated: accept its licence on the model page, then `huggingface-cli login` (or set HF_TOKEN). "
                    "Offline (HF_HUB_OFFLINE=1) only files already in the cache are found. "
                    "Alternatively download the files yourself and use LVCDPipeline.from_single_file / `lvcd colorize --svd --lvcd`."
                ) from err
        return cls.from_single_file(*paths, **kwargs)

    def _extractor(self, method: str | LineartExtractor) -> LineartExtractor:
        if isinstance(method, LineartExtractor):
            return method
        extractor = get_extractor(method, device=self.device)
        if extractor.warning:
            warnings.warn(extractor.warning, stacklevel=3)
        return extractor

    def _place(self, *parts: str) -> None:
        """With offloading, keep only the named parts on the GPU."""
        if not self.offload:
            return
        for name in self.model.parts:
            module = {
                "unet": self.model.model,
                "controlnet": self.model.control_model,
                "first_stage": self.model.first_stage_model,
            }.get(name)
            if module is not None:
                module.to(self.device if name in parts else "cpu")
        self.model.conditioner.to(self.device if "clip" in parts else "cpu")
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    @torch.no_grad()
    def __call__(
        self,
        reference,
        lineart,
        size: tuple[int, int] | None = None,
        num_steps: int = 25,
        seed: int | None = None,
        polarity: str = "auto",
        initial_noise: torch.Tensor | None = None,
        reference_noise: torch.Tensor | None = None,
        keyframes: dict[int, object] | None = None,
        extract_lineart: str | LineartExtractor | None = None,
        overlap: int = 4,
        prev_attn_steps: int | None = None,
        output: str | os.PathLike | None = None,
        fps: float = 20.0,
        overwrite: bool = False,
        work_dir: str | os.PathLike | None = None,
        resume: bool = False,
        progress: bool = True,
    ) -> ColorizeResult:
        """Colorize ``lineart`` (N frames; frame 0 is the frame ``reference`` colours).

        reference / keyframe images: path, PIL image, HxWx3 array or (3, H, W) tensor in [0, 1].
        lineart: folder, video or GIF path, list of images, or tensor (N, C, H, W) in [0, 1].
        polarity: "auto", "dark-lines" (dark lines on light paper) or "bright-lines" (lines ~1 on 0, the model's).
        extract_lineart: ``lineart`` holds colour frames: extract their line art first, frame by frame, with this
        method of :data:`lvcd.lineart.METHODS` (weights looked up as :func:`lvcd.lineart.get_extractor` does) or
        this :class:`~lvcd.lineart.LineartExtractor`; the extracted line art is dark lines on white.
        size: (H, W) processing size (multiples of 64); default: near the trained 320x576 area, aspect kept.
        initial_noise: (window, 4, H/8, W/8) noise of the first window; reference_noise: (1, 4, H/8, W/8) eps of the
        reference's VAE sample. Otherwise both come from ``seed``, in the official order.
        output: a .mp4/.webm/.gif file or a folder of PNGs; frames then stream to it and ``result.frames`` is None.
        work_dir + resume: per-window state on disk; a killed run resumes bit-identically.
        """
        cfg = self.config
        frames = LineartFrames(lineart)
        if extract_lineart is not None:
            if polarity not in ("auto", "dark-lines"):
                raise InputError(f"Extracted line art is dark lines on white; polarity {polarity!r} contradicts it.")
            frames, polarity = LineartFrames(ExtractedLineart(frames, self._extractor(extract_lineart))), "dark-lines"
        count = len(frames)
        plan = plan_size(frames.size_hw, target_hw=cfg.train_size_hw, multiple=cfg.size_multiple, forced_hw=size)
        polarity = resolve_polarity(frames, polarity)
        if num_steps < 1:
            raise InputError("num_steps must be at least 1.")
        if resume and work_dir is None:
            raise InputError("resume=True needs the work_dir of the interrupted job.")
        windows = plan_windows(count, overlap=overlap, video_frames=cfg.video_frames)
        keyframes = dict(keyframes or {})
        for index in keyframes:
            if not 0 < index < count:
                raise InputError(
                    f"Keyframe index {index} is outside the shot (1..{count - 1}); frame 0 is the reference itself."
                )
        images = {0: _reference_tensor(reference, plan, "reference")}
        images.update({i: _reference_tensor(img, plan, f"keyframe {i}") for i, img in sorted(keyframes.items())})
        writer = open_writer(output, fps=fps, overwrite=overwrite, inputs=frames.paths) if output is not None else None

        temporary = None
        if work_dir is None:
            temporary = tempfile.TemporaryDirectory(prefix="lvcd-")
            work_dir = temporary.name
        try:
            work = WorkDir(work_dir, resume=resume and temporary is None)
            hints = HintStore.build(frames, plan, polarity, work.hints_path, progress=progress)
            job = _Job(
                work,
                windows,
                plan,
                hints,
                images,
                num_steps,
                seed,
                initial_noise,
                reference_noise,
                prev_attn_steps,
                polarity,
                progress,
            )
            latents, seed = self._sample(job)
            result_frames = self._decode(latents, plan, writer, progress)
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        finally:
            if temporary is not None:
                temporary.cleanup()
        output_path = writer.close() if writer is not None else None
        return ColorizeResult(result_frames, latents.cpu(), plan, seed, polarity, output_path)

    def _start_state(self, job: _Job) -> tuple[dict[str, torch.Tensor], int | None]:
        """First-window noise and reference latents: computed once (from the seed, in the official draw order) and
        kept in the work directory, so a resumed run restores them exactly."""
        cfg, model = self.config, self.model
        latent_hw = tuple(s // cfg.vae.downsample_factor for s in job.plan.model_hw)
        noise_shape = (job.windows.window_size, 4, *latent_hw)
        if job.initial_noise is not None and tuple(job.initial_noise.shape) != noise_shape:
            raise InputError(f"initial_noise must have shape {noise_shape}, got {tuple(job.initial_noise.shape)}.")
        seed = job.seed
        if seed is None and (job.initial_noise is None or job.reference_noise is None):
            seed = secrets.randbits(62)
        settings = {
            "steps": job.num_steps, "seed": seed, "overlap": job.windows.overlap, "prev_attn_steps": job.prev_attn_steps,
            "plan": [job.plan.input_hw, job.plan.model_hw], "polarity": job.polarity, "config": cfg.name,
            "dtype": str(next(model.unet.parameters()).dtype), "keyframes": sorted(job.images),
        }  # fmt: skip
        arrays = [job.hints.array] + [job.images[i] for i in sorted(job.images)]
        arrays += [t.float().cpu() for t in (job.initial_noise, job.reference_noise) if t is not None]
        job.work.bind(fingerprint(settings, *arrays))

        start = job.work.load_start()
        if start is None:
            generator = torch.Generator().manual_seed(seed) if seed is not None else None
            if job.initial_noise is not None:
                start = {"noise": job.initial_noise.float().cpu()}
            else:
                start = {"noise": torch.randn(noise_shape, generator=generator)}
            self._place("clip", "first_stage")
            for index in sorted(job.images):
                eps = job.reference_noise if index == 0 else None
                ref = encode_reference(model, job.images[index].to(self.device), index, noise=eps, generator=generator)
                start[f"ref{index}.crossattn"] = ref.crossattn
                start[f"ref{index}.mode"] = ref.mode_latent
                start[f"ref{index}.sample"] = ref.sample_latent
            job.work.save_start(start)
        return start, seed

    def _sample(self, job: _Job) -> tuple[torch.Tensor, int | None]:
        """All windows (those a resumed job already finished are loaded); returns the shot's scaled latents."""
        cfg, model, device = self.config, self.model, self.device
        start, seed = self._start_state(job)
        references = [
            ReferenceLatents(i, *(start[f"ref{i}.{name}"].to(device) for name in ("crossattn", "mode", "sample")))
            for i in sorted(job.images)
        ]
        latents = [references[0].sample_latent * model.latent_scale]
        state = CarryState(start["noise"].to(device), None, None)
        done = job.work.finished_windows() if job.work.resume else 0
        for index in range(done):
            new_latents, state = job.work.load_window(index, device)
            latents.append(new_latents)
        self._place("unet", "controlnet")
        sampling = cfg.sampling
        sigmas = edm_sigmas(job.num_steps, sampling.sigma_min, sampling.sigma_max, sampling.rho).to(device)
        total = len(job.windows.windows)
        window_bar = tqdm(total=total, initial=done, desc="windows", unit="window", disable=not job.progress)
        step_bar = tqdm(total=job.num_steps, desc="steps", unit="step", leave=False, disable=not job.progress)

        def on_step(step: int) -> None:
            if step == 0:
                step_bar.reset()
            step_bar.update(1)

        def hints_for(indices) -> torch.Tensor:
            return job.hints.get(indices).to(device)

        windows = sample_shot(
            model, job.windows, references, hints_for, sigmas, state, done, job.prev_attn_steps, on_step
        )
        for window, new_latents, carry in windows:
            latents.append(new_latents)
            job.work.save_window(window.index, new_latents, carry)
            window_bar.update(1)
        step_bar.close()
        window_bar.close()
        return torch.cat(latents), seed

    def _decode(self, latents: torch.Tensor, plan: SizePlan, writer, progress: bool) -> torch.Tensor | None:
        self._place("first_stage")
        collected = [] if writer is None else None
        bar = tqdm(total=latents.shape[0], desc="decoding", unit="frame", disable=not progress)
        for _, pixels in decode_frames(self.model, lambda idx: latents[idx].to(self.device), latents.shape[0]):
            frame = _restore(pixels.cpu(), plan)
            if writer is not None:
                writer.write((frame * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())
            else:
                collected.append(frame)
            bar.update(1)
        bar.close()
        return torch.stack(collected) if collected is not None else None
