"""``LVCDPipeline``: colorize a shot of line art from one coloured reference frame.

>>> pipe = LVCDPipeline.from_single_file("svd.safetensors", "lvcd.ckpt", device="cuda", dtype=torch.bfloat16)  # doctest: +SKIP
>>> result = pipe("ref.png", "lineart_frames/", seed=1234)       # doctest: +SKIP
>>> result.frames.shape                                           # doctest: +SKIP
torch.Size([75, 3, 320, 576])
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

from lvcd.config import LVCDConfig
from lvcd.decoding import decode_frames
from lvcd.devices import default_device, default_dtype, require_device
from lvcd.diffusion import SAMPLERS, edm_sigmas
from lvcd.errors import InputError
from lvcd.hub import LVCD_REPO, SVD_REPO, hub_file
from lvcd.io import SizePlan, plan_size, restore
from lvcd.io.sizing import parse_size
from lvcd.lineart import LineartExtractor
from lvcd.lineart.extractor import check_method
from lvcd.model import LVCDModel
from lvcd.placement import PHASE_PARTS, Placement, host_attributes, offloads
from lvcd.result import ColorizeResult
from lvcd.sampling import CarryState, sample_shot
from lvcd.shot import (
    ShotJob,
    draw_start_noise,
    encode_references,
    job_identity,
    references_of,
    resolve_seed,
    settings_identity,
    start_noise_shape,
)
from lvcd.shot_setup import PreparedShot, prepare_shot
from lvcd.weights import PendingModel, open_model
from lvcd.workdir import WorkDir, WorkDirMismatch, differences

if TYPE_CHECKING:
    from lvcd.memory_estimate import ShotMemoryEstimate  # imports this module's neighbours: only for annotations


@dataclass(frozen=True)
class SamplingProgress:
    """Passed to ``LVCDPipeline.__call__(callback=...)`` after every denoising step (``phase`` "sampling"; 0-based
    ``window`` and ``step``), then after every decoded frame (``phase`` "decoding", ``frame`` of ``frames`` done,
    1-based; window and step then say that every step is done), so a callback can cancel during decoding too: frames
    are decoded in chunks of 10, so a cancel there takes effect within one chunk. A 1-frame shot (the reference
    alone: nothing to sample) makes no call.

    Steps done over the whole shot: ``window * steps + step + 1`` of ``windows * steps``.
    """

    window: int
    windows: int
    step: int
    steps: int
    phase: str = "sampling"
    frame: int = 0
    frames: int = 0


def _extract_lineart_options(method: str) -> tuple[str, str]:
    """How ``__call__``'s errors name the line-art weights and method (``lvcd.errors.setting``): the
    pipeline takes no weights of its own, an extractor made with them."""
    return f"extract_lineart=get_extractor({method!r}, weights={{}})", "extract_lineart={!r}"


class LVCDPipeline:
    """Holds a loaded ``LVCDModel`` and colorizes shots with it."""

    def __init__(
        self,
        model: LVCDModel | PendingModel,
        device: str | torch.device = "cpu",
        offload: bool = False,
        fixed_placement: bool = False,
    ):
        """``device``: where the networks compute. On an accelerator the conditioner (CLIP and its VAE encoder) is
        there only while a shot's reference is embedded; ``offload``: every network is there only while in use
        (smallest memory, more copies); ``fixed_placement``: nothing moves, all on ``device`` (the caller places the
        model, e.g. evaluation during training). See ``lvcd.placement``.

        ``model`` a ``lvcd.weights.PendingModel`` (``from_single_file(lazy=True)``): its weights are read when a shot
        first needs them (``load_weights``), after the shot's inputs are read and checked and a resumed job is matched
        to its work directory; until then ``model`` is on the meta device and ``placement`` is None.

        A ``device`` this machine lacks (``device="cuda"`` with a CPU-only torch) is a one-line InputError."""
        self.device = require_device(device)
        self._pending = model if isinstance(model, PendingModel) else None
        self.model = model.model if self._pending is not None else model
        self._placement_options = (offload, fixed_placement)
        self.placement: Placement | None = None
        if self._pending is None:
            self.placement = Placement(self.model, self.device, offload, fixed=fixed_placement)

    @property
    def offload(self) -> bool:
        if self.placement is None:
            return offloads(self.device, *self._placement_options)
        return self.placement.offload

    @property
    def weights_loaded(self) -> bool:
        return self._pending is None and self.placement is not None

    def load_weights(self) -> None:
        """Read the weights of a pipeline made with ``lazy=True`` (nothing to do when they are loaded): onto the
        device, or into host memory with ``offload``, then placed as the pipeline's placement says. Stopped midway
        (Ctrl-C), the next call finishes it."""
        offload, fixed = self._placement_options
        with torch.inference_mode(False):  # plain tensors, whatever mode the first shot is called in
            if self._pending is not None:
                self._pending.load("cpu" if offload else self.device)
                self._pending = None
            if self.placement is None:
                self.placement = Placement(self.model, self.device, offload, fixed=fixed)

    def _weights_to_load(self) -> int:
        """Bytes of host memory this pipeline's weights will take when they load (0 once they are)."""
        if self._pending is None:
            return 0
        from lvcd.memory import weight_bytes

        sizes = weight_bytes(self.model)  # by attribute, from the meta model's dtypes and shapes
        return sum(sizes[name] for name in host_attributes(self.model, self.device, *self._placement_options))

    def memory_needed(
        self, input_hw: tuple[int, int], size: tuple[int, int] | None = None, previous_sample: bool = False
    ) -> ShotMemoryEstimate:
        """``lvcd.memory_estimate``'s estimate of the accelerator memory a shot of ``input_hw`` frames needs with this
        pipeline (its dtypes and placement), at the processing size ``__call__`` would use (``size`` as given to it).
        A lower bound of the peak (no kernel workspaces); about a second on a CPU, then cached."""
        return self._estimate(self._model_hw(input_hw, size), previous_sample)

    def _model_hw(self, input_hw: tuple[int, int], size) -> tuple[int, int]:
        """The processing size ``__call__`` would use for frames of ``input_hw`` and its ``size`` (a pair or "HxW")."""
        cfg, size = self.config, parse_size(size, "size")
        return plan_size(
            input_hw, target_hw=cfg.train_size_hw, multiple=cfg.size_multiple, forced_hw=size, option="size"
        ).model_hw

    def _estimate(self, model_hw: tuple[int, int], previous_sample: bool) -> ShotMemoryEstimate:
        from lvcd.memory_estimate import estimate_shot_memory

        dtype = next(self.model.unet.parameters()).dtype
        vae_dtype = next(self.model.first_stage_model.parameters()).dtype
        return estimate_shot_memory(
            self.config, model_hw, dtype, vae_dtype, self.offload, previous_sample=previous_sample
        )

    def memory_beyond_weights(
        self, input_hw: tuple[int, int], size: tuple[int, int] | None = None, previous_sample: bool = False
    ) -> int:
        """Bytes of accelerator memory a shot of ``input_hw`` frames needs besides this pipeline's weights already
        there (``memory_needed``'s peak less them): what must be free before it runs."""
        return self._beyond_weights(self._model_hw(input_hw, size), previous_sample)

    def _beyond_weights(self, model_hw: tuple[int, int], previous_sample: bool) -> int:
        from lvcd.memory import weight_bytes

        resident = sum(weight_bytes(self.model, self.device).values())
        return self._estimate(model_hw, previous_sample).peak_bytes - resident

    def _check_memory(self, model_hw: tuple[int, int], previous_sample: bool) -> None:
        """On CUDA, refuse before any work a shot whose estimated peak (a lower bound) cannot fit beside what the GPU
        already holds: the weights here are counted once, memory this process has cached counts as free."""
        if self.device.type != "cuda":
            return
        needed = self._beyond_weights(model_hw, previous_sample)
        free, _ = torch.cuda.mem_get_info(self.device)
        available = free + torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
        if needed > available:
            height, width = model_hw
            raise InputError(
                f"This shot needs about {needed / 1e9:.1f} GB more GPU memory at its processing size {height}x{width} "
                f"than the GPU has available ({available / 1e9:.1f} GB); choose a smaller size"
                + ("" if self.offload else ", or offload the networks not in use (offload=True, --offload)")
                + "."
            )

    def compile(self, **options) -> LVCDPipeline:
        """``torch.compile`` the UNet and the ControlNet in place (``options`` go to ``torch.compile``). The first
        window of each layout compiles (slow); the steps after it run the compiled graphs. Returns the pipeline."""
        self.model.compile_networks(**options)
        return self

    @property
    def config(self) -> LVCDConfig:
        return self.model.config

    @classmethod
    def from_single_file(
        cls,
        svd_path,
        lvcd_path=None,
        config=None,
        device=None,
        dtype=None,
        offload: bool = False,
        vae_dtype: torch.dtype = torch.float32,
        lazy: bool = False,
    ) -> LVCDPipeline:
        """Load the official ``svd.safetensors`` + ``lvcd.ckpt`` (or one converted whole-model file).

        ``dtype``: the diffusion networks and CLIP (``default_dtype``: bf16 on CUDA, fp16 on GPUs before Ampere,
        fp32 on CPU); ``vae_dtype``: the VAE and the conditioner's VAE encoder (fp32, as officially; bf16 lowers
        the estimated GPU peak, see ``lvcd.memory_estimate``; not measured). The files are checked now (headers);
        ``lazy``: their tensors are read when the first shot needs them, after its inputs are checked, so that a
        wrong input or another job's work directory is refused without loading gigabytes first (``lvcd colorize``
        does this; see ``__init__``). A ``device`` this machine lacks is refused (InputError) before any file is
        read."""
        device = default_device() if device is None else require_device(device)
        pending = open_model(
            svd_path, lvcd_path, config=config, dtype=dtype or default_dtype(device), vae_dtype=vae_dtype
        )
        pipe = cls(pending, device=device, offload=offload)
        if not lazy:
            pipe.load_weights()
        return pipe

    @classmethod
    def from_pretrained(cls, svd_repo=SVD_REPO, lvcd_repo=LVCD_REPO, cache_dir=None, **kwargs) -> LVCDPipeline:
        """Resolve the official files through the Hugging Face cache (downloading them if allowed).

        ``from_pretrained("demo")`` loads the demo model shipped inside the package instead (``lvcd.demo``: a small
        LVCD trained here on synthetic cartoons, 64x64; no download).
        """
        if kwargs.get("device") is not None:  # before anything is downloaded or read
            require_device(kwargs["device"])
        if svd_repo == "demo":
            from lvcd.demo import demo_weights_path

            kwargs.setdefault("dtype", torch.float32)  # small enough that fp32 is fast everywhere
            return cls.from_single_file(demo_weights_path(), **kwargs)
        for name, repo in (("svd_repo", svd_repo), ("lvcd_repo", lvcd_repo)):
            if not (isinstance(repo, (tuple, list)) and len(repo) == 2 and all(isinstance(p, str) for p in repo)):
                raise InputError(
                    f"from_pretrained takes 'demo' or (repo id, file name) pairs, got {name}={repo!r}; call "
                    "from_pretrained() for the official files, or from_single_file(svd_path, lvcd_path) for files here."
                )
        paths = [hub_file(svd_repo, cache_dir), hub_file(lvcd_repo, cache_dir)]
        return cls.from_single_file(*paths, **kwargs)

    def __call__(
        self,
        reference,
        lineart,
        size: tuple[int, int] | None = None,
        num_steps: int | None = None,
        seed: int | None = None,
        polarity: str = "auto",
        lineart_levels: str = "auto",
        initial_noise: torch.Tensor | None = None,
        reference_noise: torch.Tensor | None = None,
        keyframes: dict[int, object] | None = None,
        extract_lineart: str | LineartExtractor | None = None,
        overlap: int | None = None,
        prev_attn_steps: int | None = None,
        output: str | os.PathLike | None = None,
        fps: float | None = None,
        overwrite: bool = False,
        work_dir: str | os.PathLike | None = None,
        resume: bool = False,
        progress: bool = True,
        *,
        callback: Callable[[SamplingProgress], None] | None = None,
        prev_reference: bool = True,
        blending: bool = True,
        reference_mode: str = "first",
        sampler: str = "euler",
        reference_frame: int = 0,
        decode: bool = True,
    ) -> ColorizeResult:
        """Colorize ``lineart`` (N frames; frame ``reference_frame``, 0 by default, is the frame ``reference`` colours).

        reference / keyframe images: path, PIL image, HxWx3 array or (3, H, W) tensor in [0, 1].
        lineart: folder, video or GIF path, list of images (file paths, PIL images, HxW / HxWxC / CxHxW arrays or
        tensors; RGBA composited over white), array (N, H, W, C) / (N, C, H, W) / (N, H, W), or tensor (N, C, H, W);
        integers 0..255 (uint16 0..65535) or floats in [0, 1].
        polarity: "auto", "dark-lines" (dark lines on light paper) or "bright-lines" (lines ~1 on 0, the model's).
        lineart_levels: "auto" (scanned or photographed line art on grey or grainy paper: each frame's paper is brought to
        white and its ink to black, :mod:`lvcd.io.paper`; clean digital line art and extracted sketches untouched),
        "on" (always) or "off" (the official mapping as it is). ``result.lineart_levels`` tells what was done.
        extract_lineart: ``lineart`` holds colour frames: extract their line art first, frame by frame, with this
        method of :data:`lvcd.lineart.METHODS` (weights looked up as :func:`lvcd.lineart.get_extractor` does) or
        this :class:`~lvcd.lineart.LineartExtractor`; the extracted line art is dark lines on white.
        size: (H, W) or "HxW" processing size (multiples of 64); default: near the trained 320x576 area, aspect kept.
        num_steps, overlap: Euler steps per window and frames shared by consecutive windows; default: the model
        config's (``config.sampling``: 25 and 4, the official values).
        initial_noise: (window, 4, H/8, W/8) noise of the first window; reference_noise: (1, 4, H/8, W/8) eps of the
        reference's VAE sample. Otherwise both come from ``seed``, in the official order.
        output: a .mp4/.webm/.gif file or a folder of PNGs; frames then stream to it and ``result.frames`` is None.
        fps: the output's frame rate; default: the line art's own when it is a video or an animation, else 20
        (``result.fps``, what ``result.save`` uses).
        work_dir + resume: per-window state on disk (and, with ``output``, the frames decoded so far); a killed run
        resumes bit-identically. The folder is kept after a successful run (the command line removes it; delete it
        when done).
        callback: called with a ``SamplingProgress`` after every step (for progress displays); an exception it raises
        stops the job there (cancellation), the output is not written and the finished windows stay in ``work_dir``.
        prev_reference, blending, reference_mode: the long-video sampling schemes (``lvcd.sampling.SamplingSchemes``);
        the defaults are the paper's method, the others its ablations: ``prev_reference=False, blending=False`` (no
        sampling schemes), ``reference_mode="previous-sample"`` (each window's reference is the previous window's last
        generated frame). ``overlap=0`` is allowed too (windows that share no frame).
        sampler: "euler" (the official sampler, the default), "heun" or "dpmpp_2m" (second order, for fewer
        ``num_steps``; :data:`lvcd.diffusion.SAMPLERS`). Heun calls the network twice a step.
        reference_frame: the index of the frame ``reference`` colours (a colour key in the middle of the shot). The
        shot is then coloured in two passes that start at that frame, each as LVCD colours a shot from its first frame:
        frames ``reference_frame`` back to 0, then ``reference_frame`` to the end (same seed; keyframes, given by shot
        frame index, guide the pass they lie in). 0, the default, is the official single pass.
        decode: False returns the latents alone (``result.frames`` None; no ``output``): for analysis, or a decoder of
        your own (``pipe.model.first_stage_model.decode``).
        """
        if isinstance(extract_lineart, str):  # its weights found and checked (headers) in the words of this call
            check_method(extract_lineart, None, _extract_lineart_options(extract_lineart))
        with torch.no_grad():  # not a decorator: its wrapper's frame would take the place of the caller's in warnings
            shot = prepare_shot(
                self.config, self.device, self._check_memory, reference, lineart,
                size=size, num_steps=num_steps, overlap=overlap, polarity=polarity, lineart_levels=lineart_levels,
                extract_lineart=extract_lineart, prev_attn_steps=prev_attn_steps, seed=seed,
                initial_noise=initial_noise, reference_noise=reference_noise, keyframes=keyframes, output=output,
                fps=fps, overwrite=overwrite, work_dir=work_dir, resume=resume, progress=progress, callback=callback,
                prev_reference=prev_reference, blending=blending, reference_mode=reference_mode, sampler=sampler,
                reference_frame=reference_frame, decode=decode, weights_to_load=self._weights_to_load(),
            )  # fmt: skip
            temporary = None
            if work_dir is None:
                temporary = tempfile.TemporaryDirectory(prefix="lvcd-")
                work_dir = temporary.name
            work = None
            try:  # a WorkDir given (opened and locked by the caller) is used as it is
                work = (
                    work_dir
                    if isinstance(work_dir, WorkDir)
                    else WorkDir(
                        work_dir, resume=resume and temporary is None, scratch=temporary is not None, option="work_dir"
                    )
                )
                latents, seed = self._sample_passes(shot, work, callback)
                decoded = None
                windows_total, steps = sum(len(w.windows) for w in shot.passes.values()), shot.num_steps
                if callback is not None and windows_total > 0:  # a 1-frame shot samples nothing: no call, as before

                    def decoded(frame: int, frames: int) -> None:
                        callback(
                            SamplingProgress(
                                windows_total - 1, windows_total, steps - 1, steps, "decoding", frame, frames
                            )
                        )

                result_frames = (
                    self._decode(latents, shot.plan, shot.writer, progress, decoded, shot.frames.names, work)
                    if decode
                    else None
                )
                output_path = shot.writer.close() if shot.writer is not None else None
                if shot.writer is not None:
                    work.clear_decoded()  # the output holds them now
            except BaseException:
                if shot.writer is not None:
                    shot.writer.abort()
                raise
            finally:
                if work is not None and work is not work_dir:
                    work.release()
                if temporary is not None:
                    temporary.cleanup()
            return ColorizeResult(
                result_frames,
                latents.cpu(),
                shot.plan,
                seed,
                shot.polarity,
                output_path,
                shot.levels,
                inputs=shot.inputs,
                frame_names=shot.frames.names,
                fps=shot.fps,
                frame_durations=shot.frame_durations,
            )

    def _sample_passes(
        self, shot: PreparedShot, work: WorkDir, callback: Callable | None
    ) -> tuple[torch.Tensor, int | None]:
        """The shot's latents in frame order from its jobs: one, or the passes toward frame 0 and toward the end of a
        shot coloured from a frame inside it (the later pass takes the seed the first one used, drawn or recorded); a
        callback sees the windows of all passes as one count."""
        jobs = shot.jobs(work, None)
        seed = resolve_seed(jobs[0])  # a drawn or recorded seed, then the same for every pass
        # another job's directory is refused before anything is sampled or written: a single pass resumed where a
        # job in two passes was, or any pass whose record is another job's (its settings before every line-art frame
        # is read for the hints, its line art after)
        if len(jobs) == 1 and jobs[0].work.resume:
            for recorded in jobs[0].work.recorded_parts().values():
                raise WorkDirMismatch(jobs[0].work.path, differences(recorded, self._settings(jobs[0], seed)))
        if work.resume:
            for job in jobs:
                job.work.check_settings(self._settings(job, seed))
        jobs = [replace(job, seed=seed) for job in shot.jobs(work, shot.build_hints(work))]
        identities = [self._identity(job, seed) for job in jobs]
        for job, (fingerprint, parts) in zip(jobs, identities, strict=True):
            job.work.check(fingerprint, parts)
        for job, (fingerprint, parts) in zip(jobs, identities, strict=True):
            job.work.bind(fingerprint, seed, parts)
        self.load_weights()  # a lazy pipeline's: now that the job is known to be the one to run
        if len(jobs) == 1:
            return self._sample(jobs[0])
        total, done, parts = sum(len(job.windows.windows) for job in jobs), 0, {}
        for job in jobs:
            if callback is not None:

                def shifted(progress: SamplingProgress, offset: int = done) -> None:
                    callback(replace(progress, window=progress.window + offset, windows=total))

                job = replace(job, callback=shifted)
            parts[job.direction], seed = self._sample(job)
            done += len(job.windows.windows)
        # toward frame 0: pass frame i is shot frame reference - i; its frame 0 (the reference) is the other pass's too
        return torch.cat([parts[-1][1:].flip(0), parts[1]]), seed

    def _dtypes(self) -> tuple[torch.dtype, torch.dtype]:
        return next(self.model.unet.parameters()).dtype, next(self.model.first_stage_model.parameters()).dtype

    def _identity(self, job: ShotJob, seed: int | None) -> tuple[str, dict[str, str]]:
        """The job's fingerprint and what it covers (``lvcd.shot.job_identity``) with this pipeline's dtypes."""
        return job_identity(job, seed, self.config, *self._dtypes())

    def _settings(self, job: ShotJob, seed: int | None) -> dict[str, str]:
        """What the job's fingerprint covers but its line art (``lvcd.shot.settings_identity``)."""
        return settings_identity(job, seed, self.config, *self._dtypes())

    def _start_state(self, job: ShotJob) -> tuple[dict[str, torch.Tensor], int | None]:
        """First-window noise and reference latents: computed once (from the seed, in the official draw order) and
        kept in the work directory, so a resumed run restores them exactly. The job comes bound to its work directory,
        its seed resolved (:meth:`_sample_passes`)."""
        seed = job.seed
        start = job.work.load_start()
        if start is None:
            generator = torch.Generator().manual_seed(seed) if seed is not None else None
            start = {"noise": draw_start_noise(job, start_noise_shape(job.windows, job.plan, self.config), generator)}
            self.placement.place(*PHASE_PARTS["conditioning"])
            start.update(encode_references(self.model, job, self.device, generator))
            job.work.save_start(start)
        return start, seed

    def _sample(self, job: ShotJob) -> tuple[torch.Tensor, int | None]:
        """All windows (those a resumed job already finished are loaded); returns the shot's scaled latents."""
        cfg, model, device = self.config, self.model, self.device
        start, seed = self._start_state(job)
        references = references_of(start, job.images, device)
        # the shot's latents are kept on the CPU, a window at a time (3000 frames at 576x1024: 0.9 GB, twice over
        # when joined); decoding moves them back a chunk at a time
        latents = [(references[0].sample_latent * model.latent_scale).cpu()]
        state = CarryState(start["noise"].to(device), None, None)
        done = job.work.finished_windows() if job.work.resume else 0
        latents += [job.work.load_window(index, "cpu") for index in range(done)]
        if done:
            state = job.work.load_carry(done - 1, device)
        from_samples = job.schemes.reference_mode == "previous-sample"
        # previous-sample references are decoded and encoded again between windows: keep the VAE and CLIP at hand
        self.placement.place(*PHASE_PARTS["sampling"], *(PHASE_PARTS["conditioning"] if from_samples else ()))
        previous_sample = None
        if from_samples and done:
            previous_sample = (job.windows.windows[done - 1].new_frames[-1], latents[-1][-1:].to(device))
        sampling = cfg.sampling
        sigmas = edm_sigmas(job.num_steps, sampling.sigma_min, sampling.sigma_max, sampling.rho).to(device)
        total = len(job.windows.windows)
        desc = "windows" if not job.reference_frame else f"windows to {'the end' if job.direction == 1 else 'frame 0'}"
        window_bar = tqdm(total=total, initial=done, desc=desc, unit="window", disable=not job.progress)
        step_bar = tqdm(total=job.num_steps, desc="steps", unit="step", leave=False, disable=not job.progress)

        current_window = done

        def on_step(step: int) -> None:
            if step == 0:
                step_bar.reset()
            step_bar.update(1)
            if job.callback is not None:
                job.callback(SamplingProgress(current_window, total, step, job.num_steps))

        def hints_for(indices) -> torch.Tensor:
            return job.hints.get(indices).to(device)

        windows = sample_shot(
            model, job.windows, references, hints_for, sigmas, state, done, job.prev_attn_steps, on_step,
            schemes=job.schemes, previous_sample=previous_sample, sampler=SAMPLERS[job.sampler],
        )  # fmt: skip
        for window, new_latents, carry in windows:
            latents.append(new_latents.cpu())
            job.work.save_window(window.index, new_latents, carry)
            window_bar.update(1)
            current_window = window.index + 1
        step_bar.close()
        window_bar.close()
        return torch.cat(latents), seed

    def _decode(
        self,
        latents: torch.Tensor,
        plan: SizePlan,
        writer,
        progress: bool,
        decoded: Callable | None = None,
        names: list[str] | None = None,
        work: WorkDir | None = None,
    ) -> torch.Tensor | None:
        """Decode the shot's latents; with a writer, stream the frames to it (a folder of PNGs names each frame as its
        line-art file was named, when it had names) and keep each in ``work`` until the output is written, so that a
        job stopped while decoding decodes only the chunks it had not finished when resumed."""
        self.placement.place(*PHASE_PARTS["decoding"])
        count = latents.shape[0]
        collected, kept = None, set()
        if writer is None:  # one tensor filled in place (a list then stacked held every frame twice); channels-last,
            # so that (N, H, W, 3) views of it (ComfyUI's IMAGE, numpy images) need no copy
            collected = torch.empty((count, 3, *plan.input_hw), dtype=torch.float32, memory_format=torch.channels_last)
        elif work is not None:
            vae_dtype = next(self.model.vae.parameters()).dtype
            kept = work.decoded_frames({"frames": count, "size": list(plan.input_hw), "vae dtype": str(vae_dtype)})
        bar = tqdm(total=count, desc="decoding", unit="frame", disable=not progress)
        if kept:
            bar.set_postfix_str(f"{len(kept)} decoded before the stop")
        frames = decode_frames(self.model, lambda idx: latents[idx].to(self.device), count, have=kept.__contains__)
        keeping = work is not None and not work.scratch
        for done, (index, pixels) in enumerate(frames, start=1):
            name = names[index] if names is not None else None
            if pixels is None:  # kept from the stopped run: only when streaming to a writer
                writer.write(work.load_decoded(index, plan.input_hw), name)
            elif writer is not None:
                image = (restore((pixels.cpu() + 1) / 2, plan) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
                writer.write(image, name)
                if keeping and index not in kept and not work.save_decoded(index, image):
                    keeping = False
                    warnings.warn(
                        f"The disk is full: the decoded frames are no longer kept in {work.path} (a stop from now on "
                        "decodes them all again when resumed); the output is still written if it has room.",
                        stacklevel=2,
                    )
            else:
                collected[index] = restore((pixels.cpu() + 1) / 2, plan)
            bar.update(1)
            if decoded is not None:
                decoded(done, count)
        bar.close()
        return collected
