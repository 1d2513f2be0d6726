"""What ``LVCDPipeline.__call__`` does before sampling, in its order: every argument checked (a wrong one is refused
before any frame is read), then the line art opened (or extracted from colour frames), the processing size and the
windows planned, the memory checked, the reference and keyframes brought to the processing size, the polarity and
paper levels resolved and the output opened. ``prepare_shot`` returns a ``PreparedShot``, whose ``job`` is the
``ShotJob`` the sampler runs once the work directory is open.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import torch

from lvcd.config import LVCDConfig
from lvcd.diffusion import SAMPLERS
from lvcd.errors import InputError
from lvcd.hints import HintStore, HintView, LineartFrames, resolve_levels, resolve_polarity
from lvcd.io import FrameWriter, SizePlan, open_writer, output_kind, plan_size
from lvcd.io.lineart_input import POLARITIES
from lvcd.io.paper import PaperLevels, check_levels
from lvcd.io.sizing import parse_size
from lvcd.io.timing import output_timing
from lvcd.lineart import ExtractedLineart, LineartExtractor, get_extractor
from lvcd.longvideo import WindowPlan, plan_passes
from lvcd.sampling import SamplingSchemes
from lvcd.seeds import check_seed
from lvcd.shot import (
    ShotJob,
    check_callback,
    check_noise,
    check_noise_shape,
    keyframe_indices,
    reference_noise_shape,
    reference_tensor,
    start_noise_shape,
    warn_unused_keyframes,
    whole_number,
)
from lvcd.workdir import WorkDir

# A warning from a helper of prepare_shot points at the line that called the pipeline: the helper's own frame, then
# prepare_shot's, then LVCDPipeline.__call__'s, then that line.
CALLERS_LINE = 4


@dataclass(frozen=True, kw_only=True)
class PreparedShot:
    """A shot's checked arguments and opened inputs: everything its ``ShotJob`` needs but the work directory."""

    frames: LineartFrames  # the line art (extracted from the colour frames given when extract_lineart was)
    plan: SizePlan
    passes: dict[int, WindowPlan]  # direction -> its windows: {1: the shot} from frame 0, else {-1: ..., 1: ...}
    images: dict[int, torch.Tensor]  # shot frame index -> (1, 3, H, W) in [-1, 1]: the reference and keyframes
    reference_frame: int  # the frame the reference colours
    polarity: str
    levels: PaperLevels | None  # the scanned-paper levels applied to the line art, None when none were
    writer: FrameWriter | None  # open on `output`; None when the frames come back as a tensor
    inputs: tuple  # the reference, keyframes and line-art files given as paths: never written or replaced
    fps: float  # the output's frame rate: the one given, else the line art's own (a video, an animation), else 20
    # seconds, one per frame: the line art's own timing when its frames are not all shown for the same time (a GIF's
    # held drawings, a variable frame rate) and no fps was given; the output keeps it. None: one rate, fps
    frame_durations: tuple[float, ...] | None
    num_steps: int
    seed: int | None
    initial_noise: torch.Tensor | None
    reference_noise: torch.Tensor | None
    prev_attn_steps: int | None
    progress: bool
    callback: Callable | None
    schemes: SamplingSchemes
    sampler: str

    def build_hints(self, work: WorkDir) -> HintStore:
        """The line art's hints, stored once in ``work`` (every frame is read here, unless a resumed job's store was
        made from the same files); a scratch folder's, which no job resumes, with no record for a resume."""
        levelled = self.levels is not None
        return HintStore.build(
            self.frames, self.plan, self.polarity, work.hints_path, self.progress, levelled, reusable=not work.scratch
        )

    def jobs(self, work: WorkDir, store: HintStore | None) -> list[ShotJob]:
        """The shot's ``ShotJob``: one, or for a reference inside the shot two, the pass toward frame 0 first (its state
        under ``work.part("backward")``), on the hints in ``store`` (None: jobs to match a work directory's settings
        on, before the hints are built; they cannot be sampled)."""
        levelled = self.levels is not None
        jobs = []
        for direction, windows in sorted(self.passes.items()):
            origin, count = self.reference_frame, windows.num_frames
            single = origin == 0 and direction == 1  # as a shot coloured from frame 0 always was
            jobs.append(
                ShotJob(
                    windows=windows,
                    plan=self.plan,
                    hints=store if single or store is None else HintView(store, origin, direction, count),
                    images={
                        direction * (index - origin): image
                        for index, image in self.images.items()
                        if 0 <= direction * (index - origin) < count
                    },
                    polarity=self.polarity,
                    num_steps=self.num_steps,
                    seed=self.seed,
                    initial_noise=self.initial_noise,
                    reference_noise=self.reference_noise,
                    prev_attn_steps=self.prev_attn_steps,
                    work=work if direction == 1 else work.part("backward"),
                    progress=self.progress,
                    callback=self.callback,
                    schemes=self.schemes,
                    sampler=self.sampler,
                    levelled=levelled,
                    reference_frame=origin,
                    direction=direction,
                )
            )
        return jobs


def check_frames_fit(count: int, size_hw: tuple[int, int], weights_to_load: int = 0) -> None:
    """Without an output the frames come back as one float32 tensor: refuse before any work a shot whose frames
    cannot fit in this machine's memory beside the job (they would fail after all the sampling), and beside the
    ``weights_to_load`` bytes of host memory a pipeline whose weights are not loaded yet will take."""
    from lvcd.host import available_ram

    needed = count * 3 * size_hw[0] * size_hw[1] * 4
    available = available_ram()
    if available is None:
        return
    available -= weights_to_load
    if needed > available * 0.8:  # the rest: the job itself
        beside = " beside the model's weights" if weights_to_load else ""
        raise InputError(
            f"The {count} colorized frames at {size_hw[1]}x{size_hw[0]} need {needed / 1e9:.1f} GB of memory as one "
            f"tensor and this machine has {max(available, 0) / 1e9:.1f} GB available{beside}; give output= (a video "
            "file or a folder for PNG frames) to write them to disk as they are decoded."
        )


def _extractor(method: str | LineartExtractor, device: torch.device) -> LineartExtractor:
    if isinstance(method, LineartExtractor):
        return method
    extractor = get_extractor(method, device=device)
    if extractor.warning:
        warnings.warn(extractor.warning, stacklevel=CALLERS_LINE)
    return extractor


def _warn_coloured_frames_among_lineart(paths, reference, keyframes: dict, reference_frame: int, from_colour: bool):
    """A coloured frame given as one of the line-art files: read as that frame's line art (when the line art is given),
    or colouring another frame than the colour frame it is (when the line art is extracted from colour frames)."""
    index_of = {}
    for index, path in enumerate(paths or ()):
        index_of.setdefault(os.path.realpath(path), index)
    given = [("reference", reference_frame, reference)] + [(f"keyframe {i}", i, img) for i, img in keyframes.items()]
    for what, colours, image in given:
        if not isinstance(image, (str, os.PathLike)):
            continue
        found = index_of.get(os.path.realpath(os.fspath(image)))
        if found is None or (from_colour and found == colours):
            continue
        if from_colour:
            why = f"it is colour frame {found} but colours frame {colours}; check the frame index"
        else:
            why = f"it is also read as the line art of frame {found}; move it out of the line-art folder"
        warnings.warn(f"The {what} {image} is one of the line-art frames: {why}.", stacklevel=CALLERS_LINE)


def prepare_shot(
    config: LVCDConfig,
    device: torch.device,
    check_memory: Callable[[tuple[int, int], bool], None],
    reference,
    lineart,
    *,
    size: tuple[int, int] | None,
    num_steps: int | None,
    overlap: int | None,
    polarity: str,
    lineart_levels: str,
    extract_lineart: str | LineartExtractor | None,
    prev_attn_steps: int | None,
    seed: int | None,
    initial_noise: torch.Tensor | None,
    reference_noise: torch.Tensor | None,
    keyframes,
    reference_frame: int = 0,
    decode: bool = True,
    weights_to_load: int = 0,
    output: str | os.PathLike | None,
    fps: float | None,
    overwrite: bool,
    work_dir: str | os.PathLike | WorkDir | None,
    resume: bool,
    progress: bool,
    callback: Callable | None,
    prev_reference: bool,
    blending: bool,
    reference_mode: str,
    sampler: str,
) -> PreparedShot:
    """Check ``LVCDPipeline.__call__``'s arguments (see there) and open the shot's inputs and output for a pipeline of
    ``config`` computing on ``device``; ``check_memory(model_hw, previous_sample)`` refuses a shot the accelerator
    cannot hold; ``weights_to_load``: host bytes the pipeline's weights will take when they load (a lazy pipeline).
    Call it from ``__call__`` itself: its warnings point at the line that called the pipeline."""
    # the arguments first: a wrong one is refused before any frame is read
    num_steps = whole_number(config.sampling.num_steps if num_steps is None else num_steps, "num_steps", 1)
    overlap = config.sampling.overlap if overlap is None else overlap
    overlap = whole_number(overlap, "overlap", 0, config.video_frames - 1, " (frames shared by two windows)")
    if prev_attn_steps is not None:
        prev_attn_steps = whole_number(prev_attn_steps, "prev_attn_steps", 0)
    seed = check_seed(seed)
    check_noise(initial_noise, "initial_noise")
    check_noise(reference_noise, "reference_noise")
    keyframes = keyframe_indices(keyframes)
    reference_frame = whole_number(reference_frame, "reference_frame", 0, hint=" (the frame the reference colours)")
    if reference_frame and initial_noise is not None:
        raise InputError(
            "initial_noise is the first window's noise of a shot coloured from frame 0; with reference_frame the two "
            "passes draw theirs from the seed: leave initial_noise out."
        )
    check_callback(callback)
    if not isinstance(decode, bool):
        raise InputError(f"decode must be True or False, got {decode!r}.")
    if not decode and output is not None:
        raise InputError("decode=False returns the latents alone and writes no frames: leave output out.")
    check_levels(lineart_levels)
    if polarity not in POLARITIES:
        raise InputError(f"polarity {polarity!r} is not one of {', '.join(POLARITIES)}.")
    size = parse_size(size, "size")
    if size is not None:  # its multiples checked now, not after the line art is read
        plan_size(size, multiple=config.size_multiple, forced_hw=size, option="size")
    if resume and work_dir is None:
        raise InputError("resume=True needs the work_dir of the interrupted job.")
    try:
        schemes = SamplingSchemes(prev_reference, blending, reference_mode)
    except ValueError as err:
        raise InputError(str(err)) from None
    if sampler not in SAMPLERS:
        raise InputError(f"Unknown sampler {sampler!r}; choose one of {', '.join(SAMPLERS)}.")
    if keyframes and schemes.reference_mode == "previous-sample":
        raise InputError(
            "keyframes need reference_mode='first': with 'previous-sample' each window's reference is generated."
        )
    frames = LineartFrames(lineart)
    files = getattr(frames.source, "files", None) or frames.paths  # a folder's image files, or the files given
    _warn_coloured_frames_among_lineart(files, reference, keyframes, reference_frame, extract_lineart is not None)
    if extract_lineart is not None:
        if polarity not in ("auto", "dark-lines"):
            raise InputError(f"Extracted line art is dark lines on white; polarity {polarity!r} contradicts it.")
        extracted = ExtractedLineart(frames, _extractor(extract_lineart, device))
        frames, polarity = LineartFrames(extracted), "dark-lines"
    count = len(frames)
    plan = plan_size(
        frames.size_hw, target_hw=config.train_size_hw, multiple=config.size_multiple, forced_hw=size, option="size"
    )
    if reference_frame >= count:
        raise InputError(
            f"reference_frame {reference_frame} is outside the shot of {count} frames (0..{count - 1}): give the index "
            "of the frame the reference colours."
        )
    passes = plan_passes(count, reference_frame, overlap, config.video_frames)
    check_noise_shape(initial_noise, "initial_noise", start_noise_shape(passes[1], plan, config))
    check_noise_shape(reference_noise, "reference_noise", reference_noise_shape(plan, config))
    for index in keyframes:
        if not 0 <= index < count:
            raise InputError(f"Keyframe index {index} is outside the shot (0..{count - 1}).")
        if index == reference_frame:
            raise InputError(
                f"Keyframe index {index} is the reference's frame (reference_frame={reference_frame}): the reference "
                "colours it already; give the other coloured frames."
            )
    for direction, windows in passes.items():
        in_pass = {direction * (i - reference_frame): None for i in keyframes if direction * (i - reference_frame) > 0}
        warn_unused_keyframes(in_pass, windows, stacklevel=CALLERS_LINE, origin=reference_frame, direction=direction)
    check_memory(plan.model_hw, schemes.reference_mode == "previous-sample")
    if output is None and decode:
        check_frames_fit(count, plan.input_hw, weights_to_load)
    # the images before the line art's pixels are read: a reference that is no image is refused first
    images = {reference_frame: reference_tensor(reference, plan, "reference", stacklevel=CALLERS_LINE)}
    images.update(
        {
            i: reference_tensor(img, plan, f"keyframe {i}", stacklevel=CALLERS_LINE)
            for i, img in sorted(keyframes.items())
        }
    )
    polarity = resolve_polarity(frames, polarity)
    if extract_lineart is not None and lineart_levels == "auto":
        lineart_levels = "off"  # lvcd's own sketches are what the model was trained on: leave them as they are
    levels = resolve_levels(frames, polarity, lineart_levels)  # reads the first frames: after the cheap checks
    inputs = (*frames.paths, reference, *keyframes.values())  # paths among them are never written or replaced
    fps, durations = output_timing(fps, frames)  # the fps given, else the line art's own rate and timing
    writer = None
    if output is not None:
        writer = open_writer(output, fps=fps, overwrite=overwrite, inputs=inputs, durations=durations)
    unnamed = frames.unnamed_because()
    if output is not None and output_kind(output) == "png" and unnamed:
        warnings.warn(
            f"The line-art frames' names cannot name the output frames ({unnamed}): the PNG frames are numbered "
            "00000.png, 00001.png, ... in the line art's order.",
            stacklevel=CALLERS_LINE - 1,  # from here, not from a helper
        )
    return PreparedShot(
        frames=frames,
        plan=plan,
        passes=passes,
        images=images,
        reference_frame=reference_frame,
        polarity=polarity,
        levels=levels,
        writer=writer,
        inputs=inputs,
        fps=fps,
        frame_durations=durations,
        num_steps=num_steps,
        seed=seed,
        initial_noise=initial_noise,
        reference_noise=reference_noise,
        prev_attn_steps=prev_attn_steps,
        progress=progress,
        callback=callback,
        schemes=schemes,
        sampler=sampler,
    )
