"""Checks of a command's options that run before any weights load (seconds with the tiny model, minutes with the
official 12 GB files): every input exists and is readable, every option is in range, and the output can be written
and is none of the inputs. Each failure is one :class:`~lvcd.errors.InputError` line naming the option and the file.
"""

from __future__ import annotations

import json
from pathlib import Path

from lvcd.errors import InputError
from lvcd.host import available_ram
from lvcd.io.atomic import recover_replaced
from lvcd.io.images import MAX_FRAME_PIXELS, check_image
from lvcd.io.lineart_input import POLARITIES
from lvcd.io.paper import LEVELS
from lvcd.io.paths import check_not_input, check_output_location
from lvcd.io.writers import check_replaceable, frame_rate_problem, output_kind
from lvcd.seeds import check_seed


def check_files(files: dict[str, Path | None]) -> None:
    """Every given file exists; all missing ones are named in one line."""
    missing = [
        f"{option}{'' if option.endswith('=') else ' '}{path}"
        for option, path in files.items()
        if path is not None and not Path(path).exists()
    ]
    if missing:
        raise InputError(f"not found: {', '.join(missing)}. Check the path{'s' if len(missing) > 1 else ''}.")


def check_weights_files(svd, lvcd) -> None:
    """Each missing weights file named with where to get it (the loader's own messages, now rather than later)."""
    from lvcd.state_dict import require_weights_file
    from lvcd.weights import _where_to_get, check_weights_exist

    check_weights_exist(svd, lvcd, ("--svd", "--lvcd"))
    for role, path in (("svd", svd), ("lvcd", lvcd)):
        if path is not None:
            require_weights_file(path, role, _where_to_get(role))


def check_device(device: str | None) -> None:
    """A device torch does not know, or a CUDA device that this machine or this torch build does not have, is refused
    up front."""
    if device is not None:
        from lvcd.devices import require_device

        require_device(device, "--device")


def check_config(config: str | None) -> None:
    """A --config preset name, or a JSON file that parses and describes a model."""
    if config is None:
        return
    from lvcd.config import get_config

    path = Path(config)
    if path.is_file():
        try:
            json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise InputError(
                f"--config {config} is not valid JSON ({err}); fix the file or give a preset name."
            ) from None
    try:
        get_config(config)
    except (ValueError, FileNotFoundError, TypeError, KeyError) as err:
        raise InputError(f"--config {config}: {err}") from None


def check_fps(fps: float | None, output: Path | None = None) -> None:
    """A frame rate the output can hold (a GIF's frames last at most 655.35 s); ``output`` passed check_output."""
    kind = None if output is None else output_kind(output)
    problem = None if fps is None else frame_rate_problem(fps, kind)
    if problem is not None:
        raise InputError(f"--fps {fps:g}: {problem}.")


def check_output(output: Path, inputs: dict[str, object], overwrite: bool, resume: bool) -> None:
    """The output's format is known, it is none of the inputs (even with --overwrite), and its folder is writable."""
    check_not_input(output, inputs)
    output_kind(output)
    recover_replaced(output)  # an earlier --overwrite killed between its two moves: the old output is moved back
    if output.exists() and not overwrite:  # with --resume too: the job's writer would refuse it at the very end
        finished = " (--resume continues a job whose output was never written)" if resume else ""
        raise InputError(f"{output} exists{finished}; pass --overwrite or choose another output name.")
    if overwrite:
        check_replaceable(output)
    check_output_location(output)


def check_report_output(path: Path, inputs, overwrite: bool, option: str = "--json") -> None:
    """A report file (scores as JSON) is none of the inputs, its folder is writable, and an existing one is replaced
    only with --overwrite."""
    check_not_input(path, inputs, option=option)
    check_output_location(path, option=option)
    if path.is_dir():  # --overwrite would replace the folder, and all in it, with the report
        raise InputError(f"{option} {path} is a folder; give the report a file name, e.g. {path / 'scores.json'}.")
    if path.exists() and not overwrite:
        raise InputError(f"{option} {path} exists; pass --overwrite to replace it, or choose another name.")


def check_apart(work_dir: Path, output: Path) -> None:
    """The work directory is neither the output nor inside or around it (the output replaces its path when done)."""
    work, out = Path(work_dir).expanduser().resolve(), Path(output).expanduser().resolve()
    if work == out or out in work.parents or work in out.parents:
        raise InputError(
            f"--work-dir {work_dir} and the output {output} overlap (one is or holds the other); give the work "
            "directory its own folder outside the output."
        )


def check_keyframes(keyframes: dict[int, Path], count: int, reference_frame: int = 0) -> None:
    """--reference-frame inside the shot, keyframe indices inside it but for the reference's frame, readable images."""
    if reference_frame >= count:
        raise InputError(
            f"--reference-frame {reference_frame} is outside the shot's frames 0..{count - 1}: give the index of the "
            "frame --reference colours."
        )
    for index, path in sorted(keyframes.items()):
        if not 0 <= index < count:
            raise InputError(f"--keyframe {index}={path}: index {index} is outside the shot's frames 0..{count - 1}.")
        if index == reference_frame:
            raise InputError(
                f"--keyframe {index}={path}: frame {index} is the one --reference colours (--reference-frame "
                f"{reference_frame}); give the other coloured frames."
            )
        check_image(path, f"--keyframe {index}=")


def check_frame_size(size_hw: tuple[int, int], what: str) -> None:
    height, width = size_hw
    if height * width > MAX_FRAME_PIXELS:
        raise InputError(
            f"{what}: frames of {width}x{height} are over the limit of {MAX_FRAME_PIXELS / 1e6:.0f} megapixels "
            "(8K UHD fits); downscale them first, e.g. to 3840 pixels wide."
        )


def expected_config(opts: dict):
    """The model config the weights will load with, when it can be known without loading them (else None)."""
    from lvcd.config import get_config
    from lvcd.weights import WeightsFile

    try:
        if opts.get("config") is not None:
            return get_config(opts["config"])
        if opts.get("model") == "demo":
            from lvcd.demo import demo_weights_path

            return WeightsFile(demo_weights_path(), "demo").model_config()
        if opts.get("svd") is not None and Path(opts["svd"]).suffix == ".safetensors":
            return WeightsFile(opts["svd"], "svd").model_config() or get_config(None)
        if opts.get("svd") is None and opts.get("model") is None:  # the official files, from the Hugging Face cache
            lvcd = opts.get("lvcd_ckpt")  # a converted file of ours given with them may carry another config
            if lvcd is not None and Path(lvcd).suffix == ".safetensors":
                return WeightsFile(lvcd, "lvcd").model_config() or get_config(None)
            return get_config(None)
    except Exception:  # noqa: BLE001 - the weights' loader reports unreadable files with its own message
        return None
    return None


def check_schemes(opts: dict, keyframes: dict) -> None:
    """--polarity, --reference-mode and their combinations with --from-color and --keyframe."""
    from lvcd.sampling import SamplingSchemes

    if opts["polarity"] not in POLARITIES:
        raise InputError(f"--polarity {opts['polarity']!r} is not one of {', '.join(POLARITIES)}.")
    if opts.get("lineart_levels", "auto") not in LEVELS:
        raise InputError(f"--lineart-levels {opts['lineart_levels']!r} is not one of {', '.join(LEVELS)}.")
    if not opts["from_color"] and (
        opts.get("lineart_method", "informative") != "informative" or opts.get("lineart_weights")
    ):
        given = "--lineart-weights" if opts.get("lineart_weights") else f"--lineart-method {opts['lineart_method']}"
        raise InputError(
            f"{given} applies only with --from-color (without it --lineart is read as line art); add --from-color to "
            "extract the line art from colour frames, or drop the option."
        )
    if opts["from_color"] and opts["polarity"] == "bright-lines":
        raise InputError("--polarity bright-lines contradicts --from-color (extracted line art is dark on white).")
    try:
        SamplingSchemes(opts["prev_reference"], opts["blending"], opts["reference_mode"])
    except ValueError as err:
        raise InputError(f"--reference-mode: {err}") from None
    if keyframes and opts["reference_mode"] == "previous-sample":
        raise InputError("--keyframe needs --reference-mode first: with previous-sample each reference is generated.")


def preflight_colorize(opts: dict):
    """Everything ``lvcd colorize`` can check before loading weights without reading every line-art frame (that
    follows, in :func:`check_lineart_frames`); returns (source, size, keyframes)."""
    from lvcd.cli.options import packaged_model, parse_dtype, parse_size
    from lvcd.io import FrameSource, plan_size

    keyframes = {}
    for item in opts["keyframe"]:
        index, sep, path = item.partition("=")
        if sep and index.strip().startswith("-") and index.strip()[1:].isdigit():
            raise InputError(f"--keyframe {item!r}: frame indices start at 0 (the shot's first frame).")
        if not sep or not index.strip().isdigit() or not path.strip():
            raise InputError(f"--keyframe {item!r} is not INDEX=IMAGE, e.g. --keyframe 40=key40.png.")
        if int(index) in keyframes:
            raise InputError(f"--keyframe {int(index)} is given twice ({keyframes[int(index)]} and {path.strip()}).")
        keyframes[int(index)] = Path(path.strip())
    check_seed(opts["seed"], "--seed")
    _check_sampler(opts.get("sampler", "euler"))
    packaged_model(opts.get("model"), opts["svd"], opts["lvcd_ckpt"])
    weights = {"--svd": opts["svd"], "--lvcd": opts["lvcd_ckpt"]}
    files = {
        "--reference": opts["reference"],
        "--lineart": opts["lineart"],
        "--lineart-weights": opts["lineart_weights"],
    }
    files.update({f"--keyframe {i}=": path for i, path in keyframes.items()})
    check_files(files)
    check_weights_files(opts["svd"], opts["lvcd_ckpt"])
    files.update(weights)
    check_image(opts["reference"], "--reference")
    size = parse_size(opts["size"])
    parse_dtype(opts["dtype"])
    parse_dtype(opts.get("vae_dtype"), "--vae-dtype")
    check_device(opts["device"])
    check_config(opts["config"])
    check_schemes(opts, keyframes)
    config_path = Path(opts["config"]) if opts["config"] and Path(opts["config"]).is_file() else None
    inputs = {**files, "--config": config_path}
    check_output(opts["output"], inputs, opts["overwrite"], opts["resume"])
    check_fps(opts["fps"], opts["output"])  # after the output's checks: its kind is known to be one
    if opts["work_dir"] is not None:
        check_not_input(opts["work_dir"], inputs, option="--work-dir")
        check_apart(opts["work_dir"], opts["output"])
    if opts["from_color"]:  # the extractor's weights found before every frame is read
        from lvcd.lineart.extractor import check_method

        check_method(opts["lineart_method"], opts["lineart_weights"], ("--lineart-weights", "--lineart-method"))
    source = FrameSource.open(opts["lineart"])
    check_frame_size(source.size_hw, f"--lineart {opts['lineart']}")
    cfg = expected_config(opts)
    if cfg is not None:
        plan = plan_size(source.size_hw, target_hw=cfg.train_size_hw, multiple=cfg.size_multiple, forced_hw=size)
        check_gpu_memory(opts, cfg, plan.model_hw)
        check_cpu_memory(opts, cfg, plan.model_hw)
    return source, size, keyframes


def check_lineart_frames(opts: dict, source, keyframes: dict) -> None:
    """What ``lvcd colorize`` checks by reading every line-art frame (a pass over a long video takes seconds), after
    the cheap checks and the work directory: one size, intact frames, the keyframes inside the shot."""
    source.check_uniform_size()  # headers only for folders; one pass without colour conversion for videos
    if opts["from_color"] or opts["lineart_levels"] == "off":  # else the levels pass reads every frame before loading
        source.check_intact()
    check_keyframes(keyframes, len(source), opts["reference_frame"])


def check_serve_address(host: str, port: int) -> None:
    """``--host``/``--port`` a page can be served on: the address is this machine's and the port is free (tried with
    a socket, as the server will bind it), before any weights load."""
    import errno
    import socket

    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError):
        raise InputError(f"--host {host}: no such address; give 127.0.0.1 (this machine) or 0.0.0.0 (all).") from None
    with socket.socket(family, kind) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server sets it
        try:
            probe.bind(address)
        except OSError as err:
            if err.errno == errno.EADDRINUSE:
                raise InputError(f"--port {port} is in use on {host}; give another --port.") from None
            if err.errno == errno.EADDRNOTAVAIL:
                raise InputError(
                    f"--host {host} is not an address of this machine; give 127.0.0.1 (this machine) or 0.0.0.0 (all)."
                ) from None
            if err.errno == errno.EACCES:
                raise InputError(
                    f"--port {port}: this user may not serve on it (ports below 1024 need privileges); give a port "
                    "from 1024 up, e.g. --port 7860."
                ) from None
            raise InputError(f"--host {host} --port {port}: cannot serve there ({err.strerror}).") from None


def _check_sampler(sampler: str) -> None:
    from lvcd.diffusion import SAMPLERS

    if sampler not in SAMPLERS:
        raise InputError(f"--sampler {sampler!r} is not one of {', '.join(SAMPLERS)}.")


def check_gpu_memory(opts: dict, config, model_hw: tuple[int, int], workers: int = 1) -> None:
    """On a CUDA device, a shot whose estimated peak (``lvcd.memory_estimate``: a lower bound, no workspace) is more
    than the GPU's free memory is refused before the weights load, with the settings that would fit; ``workers``:
    that many processes share the GPU, each with its own copy of the model (a batch's workers)."""
    import torch

    from lvcd.devices import default_device, default_dtype

    device = str(default_device(opts["device"]))
    if not device.startswith("cuda"):
        return
    from lvcd.cli.options import parse_dtype
    from lvcd.memory_estimate import estimate_peak_bytes

    free, _ = torch.cuda.mem_get_info(torch.device(device))
    dtype = parse_dtype(opts["dtype"]) or default_dtype(device)
    vae_dtype = parse_dtype(opts.get("vae_dtype"), "--vae-dtype") or torch.float32
    chained = opts.get("reference_mode") == "previous-sample"

    def need(offload: bool, vae) -> int:
        return workers * estimate_peak_bytes(config, model_hw, dtype, vae, offload, previous_sample=chained)

    needed = need(opts["offload"], vae_dtype)
    if needed <= free:
        return
    height, width = model_hw
    options = [("--offload", True, vae_dtype), ("--vae-dtype bf16", False, torch.bfloat16)]
    options.append(("--offload --vae-dtype bf16", True, torch.bfloat16))
    fits = [f"{label} (about {need(off, vae) / 1e9:.1f} GB)" for label, off, vae in options if need(off, vae) <= free]
    smaller = "fewer --workers, a smaller --size" if workers > 1 else "a smaller --size"
    advice = f"try {fits[0]}" if fits else f"use {smaller} or a GPU with more free memory"
    what = f"{workers} workers on it need" if workers > 1 else "this shot needs"
    raise InputError(
        f"--device {device}: {what} at least {needed / 1e9:.1f} GB of GPU memory at {height}x{width} "
        f"({str(dtype).removeprefix('torch.')}) and the GPU has {free / 1e9:.1f} GB free; {advice}."
    )


# On the CPU the estimate (a second or two) is made only where running out of memory is plausible: a processing size
# over the trained area, or a machine with less than this much memory available.
SMALL_RAM = 16 * 2**30


def check_cpu_memory(opts: dict, config, model_hw: tuple[int, int], workers: int = 1) -> None:
    """On the CPU, a shot whose estimated peak (weights and activations, a lower bound) is more than the memory this
    machine has available is refused before the weights load: the system would kill the process midway.
    ``workers``: that many processes run at once, each with its own copy of the model (a batch's workers)."""
    import torch

    from lvcd.devices import default_device

    if default_device(opts["device"]).type != "cpu":
        return
    available = available_ram()
    over_trained = model_hw[0] * model_hw[1] > config.train_size_hw[0] * config.train_size_hw[1]
    if available is None or not (over_trained or available / workers < SMALL_RAM):
        return
    from lvcd.cli.options import parse_dtype
    from lvcd.memory_estimate import estimate_peak_bytes

    dtype = parse_dtype(opts["dtype"]) or torch.float32
    vae_dtype = parse_dtype(opts.get("vae_dtype"), "--vae-dtype") or torch.float32
    chained = opts.get("reference_mode") == "previous-sample"
    needed = workers * estimate_peak_bytes(config, model_hw, dtype, vae_dtype, False, previous_sample=chained)
    if needed > available:
        height, width = model_hw
        what, smaller = (
            (f"{workers} CPU workers need", "fewer --workers or ") if workers > 1 else ("this shot needs", "")
        )
        raise InputError(
            f"{what} at least {needed / 1e9:.1f} GB of memory at {height}x{width} on the CPU and this machine "
            f"has {available / 1e9:.1f} GB available; use {smaller}a smaller --size (or a GPU)."
        )
