"""The GPU suite (issue #12): one command that measures lvcd's GPU path and the official code's, in one JSON + table.

On CUDA (full-size network, random weights; a budget keeps the whole run under ~8 minutes on an H100/H200):

1. checks: every attention call of a prev-reference denoiser call takes the flash kernel; the mask-free
   log-sum-exp merge equals the masked attention on this GPU;
2. one denoiser call (ControlNet + UNet, 19-frame prev-reference window) at 320x576 and 576x1024, fp32 / bf16 /
   fp16, eager and ``torch.compile``d (and bf16 eager in channels-last layout): median time, achieved TFLOP/s, peak
   ``max_memory_allocated`` and its accounting (weights, activations, workspace: ``lvcd.memory.MemoryAccount``);
3. a whole 75-frame shot at 320x576, 25 steps, full-size random weights with CLIP and VAE, default dtype (bf16):
   seconds per output frame and peak memory (with accounting per phase), default mode and ``offload=True``;
4. the official code's same denoiser call (``--official DIR``: ``../shared/bench-official`` carried along) and the
   ratio official / lvcd.

    bash benchmarks/gpu_suite.sh                      # on the GPU machine (installs the official code's wheels)
    python benchmarks/gpu_suite.py --output gpu.json --markdown gpu.md --official .bench-official
    python benchmarks/gpu_suite.py --dry-run          # the same code path on CPU, tiny model, tiny sizes (~1 min)

Order: checks, the uncompiled calls, the official call (and the ratio), the whole shots, then the compiled calls
(bf16 first; each compile takes minutes). Entries that do not fit the time budget (``--budget-s``) are recorded as
skipped, never silently dropped. The JSON
and markdown files are rewritten after every entry (``"complete": false`` until the end), so a run killed at the device
machine's time limit still brings back everything measured before it; an entry that fails records its error and the
suite goes on.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from denoiser_call import fill_random_, sync, timed_calls  # noqa: E402 - shared with denoiser_call.py
from report import report_result, write_result  # noqa: E402

from lvcd.config import get_config  # noqa: E402
from lvcd.longvideo import plan_windows  # noqa: E402
from lvcd.memory import MemoryAccount  # noqa: E402
from lvcd.model import Conditioning, LVCDModel  # noqa: E402
from lvcd.models.attention_kernels import (  # noqa: E402
    attention_with_lse,
    merge_attention_blocks,
    record_attention_backends,
)
from lvcd.sampling import prepared_layouts  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
TINY_CONFIG = ROOT / "tests" / "fixtures" / "tiny" / "tiny_config.json"
WINDOW = plan_windows(100)  # official window: 1 reference + 4 prev-reference + 14 video frames


class Budget:
    def __init__(self, seconds: float):
        self.start, self.seconds = time.perf_counter(), seconds

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)


def random_model(config, parts, device, dtype, vae_dtype=torch.float32, seed: int = 0) -> LVCDModel:
    """The model built on the meta device, materialised in ``dtype`` (VAE parts in ``vae_dtype``) and filled with
    N(0, 1/fan_in) weights (norms 1/0, biases 0): activations stay O(1), no NaN or denormal slow path."""
    with torch.device("meta"):
        model = LVCDModel(config, parts=parts)
    model = model.to(dtype=dtype)
    for name in ("first_stage_model",):
        if hasattr(model, name):
            getattr(model, name).to(dtype=vae_dtype)
    if "cond_encoder" in model.parts:
        model.cond_encoder.to(dtype=vae_dtype)
    model = model.to_empty(device=device)
    fill_random_(model, device, seed)
    with torch.no_grad():
        for buffer in model.buffers():
            buffer.zero_()
    return model.eval().requires_grad_(False)


def window_inputs(model: LVCDModel, height: int, width: int, device, seed: int = 0):
    frames = WINDOW.window_size
    generator = torch.Generator(device=device).manual_seed(seed)
    latent = (frames, 4, height // 8, width // 8)
    cond = Conditioning(
        concat=torch.randn(latent, generator=generator, device=device),
        crossattn=torch.randn(frames, 1, model.config.unet.context_dim, generator=generator, device=device),
        vector=model.micro_conditioning(frames, device=device),
        hint=(torch.rand(frames, 1, height, width, generator=generator, device=device) > 0.9).float(),
    )
    x = torch.randn(latent, generator=generator, device=device)
    return x, torch.ones(frames, device=device), cond


def count_flops(config, height: int, width: int) -> int | None:
    from torch.utils.flop_counter import FlopCounterMode

    try:
        model = random_model_meta(config)
        x, sigma, cond = window_inputs_meta(model, height, width)
        layout = prepared_layouts(model, WINDOW, "meta")[1]
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model.denoise(x, sigma, model.with_hint_features(cond), layout)
        return int(counter.get_total_flops())
    except Exception:  # noqa: BLE001 - an op without a meta kernel must not sink the timings
        return None


def random_model_meta(config) -> LVCDModel:
    with torch.device("meta"):
        return LVCDModel(config, parts=("unet", "controlnet"))


def window_inputs_meta(model, height, width):
    frames = WINDOW.window_size
    latent = (frames, 4, height // 8, width // 8)
    with torch.device("meta"):
        cond = Conditioning(
            torch.empty(latent),
            torch.empty(frames, 1, model.config.unet.context_dim),
            torch.empty(frames, 768),
            torch.empty(frames, 1, height, width),
        )
        return torch.empty(latent), torch.ones(frames), cond


# ------------------------------------------------------------------------------------------------------------------
# 1. checks
# ------------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def attention_checks(model: LVCDModel, height: int, width: int, device) -> dict:
    x, sigma, cond = window_inputs(model, height, width, device)
    layout = prepared_layouts(model, WINDOW, device)[1]
    with record_attention_backends() as kernels:
        model.denoise(x, sigma, model.with_hint_features(cond), layout)
    generator = torch.Generator(device=device).manual_seed(1)
    dtype = next(model.unet.parameters()).dtype
    q, k0, k1, v0, v1 = (torch.randn(8, 5, 256, 64, generator=generator, device=device).to(dtype) for _ in range(5))
    log_weight = torch.full((8,), math.log(10), device=device)
    merged = merge_attention_blocks(*attention_with_lse(q, k0, v0), *attention_with_lse(q, k1, v1), log_weight)
    mask = torch.cat([torch.zeros(8, 256, device=device), log_weight[:, None].expand(-1, 256)], dim=1)
    qd, kd, vd = q.double(), torch.cat([k0, k1], 2).double(), torch.cat([v0, v1], 2).double()
    logits = qd @ kd.transpose(-1, -2) / 8 + mask[:, None, None].double()
    exact = logits.softmax(-1) @ vd
    latents = torch.randn(2, model.config.vae.z_channels, height // 8, width // 8, generator=generator, device=device)
    with record_attention_backends() as vae_kernels:  # single-head attention over H*W positions, 512 wide
        model.vae.decode(latents.to(next(model.vae.parameters()).dtype), num_frames=2)
    return {
        "kernels": {name: kernels.count(name) for name in sorted(set(kernels))},
        "vae_kernels": {name: vae_kernels.count(name) for name in sorted(set(vae_kernels))},
        "vae_none_on_math": "math" not in vae_kernels,
        "all_flash": set(kernels) == {"flash_attention"},
        "none_on_math": "math" not in kernels,  # cuDNN's fused attention (preferred on sm90 by newer torch) is fine too
        "dtype": str(dtype).removeprefix("torch."),
        "merge_vs_exact_max_abs": float((merged.double() - exact).abs().max()),
    }


# ------------------------------------------------------------------------------------------------------------------
# 2. denoiser calls
# ------------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def channels_last_(model: LVCDModel) -> None:
    """Every 2-D convolution's weight in channels-last layout (the 3-D temporal ones have no such layout); with the
    input in channels-last too, cuDNN can pick its NHWC kernels. Measured as its own mode: is it worth enabling?"""
    for param in model.parameters():
        if param.ndim == 4:
            param.data = param.data.contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def denoiser_call(
    model, height, width, device, warmup: int, repeats: int, flops: int | None, channels_last: bool = False
) -> dict:
    x, sigma, cond = window_inputs(model, height, width, device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    layout = prepared_layouts(model, WINDOW, device)[1]
    cond = model.with_hint_features(cond)
    with MemoryAccount.measure(model, device) as account:
        warmup_times, times, finite = timed_calls(
            lambda: model.denoise(x, sigma, cond, layout), device, warmup, repeats
        )
    median = statistics.median(times)
    return {
        "median_s": round(median, 5),
        "times_s": [round(t, 5) for t in times],
        "warmup_s": [round(t, 3) for t in warmup_times],
        "achieved_tflops": round(flops / median / 1e12, 4) if flops else None,
        "memory": account.as_dict(),
        "output_finite": finite,
    }


def denoiser_plan(args) -> tuple[list, list]:
    """(uncompiled, compiled) denoiser entries. The uncompiled ones run first, then the official call and the whole
    shots (the issue's targets), then the compiled ones, bf16 first: each compile takes minutes of the budget."""
    plan = [(mode, name, size) for mode in args.modes for name in args.dtypes for size in args.sizes]
    plan = [item for item in plan if item[0] != "channels_last" or item[1] == "bf16"]  # one question: does it help?
    compiled = sorted((item for item in plan if item[0] == "compiled"), key=lambda item: item[1] != "bf16")
    return [item for item in plan if item[0] != "compiled"], compiled


def free_models(models: dict, device: torch.device) -> None:
    """Drop the models and give their memory back before the next entry is measured. A compiled module keeps itself
    alive through a reference cycle, so it needs the garbage collector and dynamo's caches cleared."""
    compiled = any(getattr(model.unet, "_compiled_call_impl", None) is not None for model in models.values())
    models.clear()
    gc.collect()
    if compiled:
        torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def denoiser_section(args, config, device, budget: Budget, plan: list, flops: dict, save) -> list[dict]:
    entries = []
    models: dict[str, LVCDModel] = {}
    for mode, name, size in plan:
        entry = {"mode": mode, "dtype": name, "size_hw": list(size), "gflops_per_call": _g(flops[size])}
        # a compiled entry compiles the UNet and ControlNet inside its warm-up (minutes): it needs a larger reserve
        if budget.left() < (args.compile_reserve_s if mode == "compiled" else args.reserve_s):
            entries.append({**entry, "skipped": "time budget"})
            continue
        key = f"{mode}-{name}"
        try:  # building or compiling a model fails (out of memory, a dynamo error) for its entries only
            if key not in models:
                free_models(models, device)
                model = random_model(config, ("unet", "controlnet"), device, DTYPES[name])
                if mode == "compiled":  # static shapes: each size gets its own graph, comparable across sizes
                    model.compile_networks(dynamic=False)
                if mode == "channels_last":
                    channels_last_(model)
                models[key] = model
                del model
            entry.update(
                denoiser_call(
                    models[key], *size, device, args.warmup, args.repeats, flops[size], mode == "channels_last"
                )
            )
        except Exception as err:  # noqa: BLE001 - record and go on: one failing entry must not sink the suite
            entry["error"] = _error(err)
        entries.append(entry)
        save(entries)
    free_models(models, device)
    return entries


def _g(flops):
    return round(flops / 1e9, 1) if flops else None


# ------------------------------------------------------------------------------------------------------------------
# 3. whole shots
# ------------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def whole_shot(args, config, device, offload: bool) -> dict:
    from lvcd.devices import default_dtype
    from lvcd.pipeline import LVCDPipeline

    dtype = DTYPES[args.shot_dtype] if args.shot_dtype else default_dtype(device)
    build_on = "cpu" if offload else device
    model = random_model(config, ("unet", "controlnet", "clip", "cond_encoder", "first_stage"), build_on, dtype)
    pipe = LVCDPipeline(model, device=device, offload=offload)
    height, width = args.shot_size
    generator = torch.Generator().manual_seed(0)
    reference = torch.rand(3, height, width, generator=generator)
    lineart = (torch.rand(args.shot_frames, 1, height, width, generator=generator) > 0.95).float()
    moves = placement_seconds(pipe, device)
    # lvcd.memory_estimate's figure for this shot (the measured peak below checks it), computed before the timer as
    # `lvcd colorize` computes it before loading weights: the pipeline's own memory check then finds it cached
    estimate = pipe.memory_needed((height, width))
    if device.type == "cuda":
        torch.cuda.empty_cache()
    sync(device)
    with MemoryAccount.measure(model, device) as account:
        start = time.perf_counter()
        result = pipe(reference, lineart, num_steps=args.shot_steps, seed=0, polarity="bright-lines", progress=False)
        sync(device)
        seconds = time.perf_counter() - start
    frames = args.shot_frames - 1  # frame 0 is the given reference
    return {
        "offload": offload and pipe.offload,
        "dtype": str(dtype).removeprefix("torch."),
        "frames": args.shot_frames,
        "size_hw": [height, width],
        "steps": args.shot_steps,
        "windows": len(plan_windows(args.shot_frames).windows),
        "seconds": round(seconds, 2),
        "seconds_per_output_frame": round(seconds / frames, 4),
        "memory": account.as_dict(),
        "placement_seconds": moves,
        "host_copies_pinned": pipe.placement.pinned,
        "estimated_peak_bytes": estimate.peak_bytes,
        "output_finite": bool(torch.isfinite(result.frames).all()),
    }


def placement_seconds(pipe, device) -> dict[str, float]:
    """Seconds to make each phase's placement from the one before, in a shot's order (the price of moving networks:
    by default the conditioner's trip to the GPU; with offload every network's). Leaves the pipeline as a shot
    leaves it."""
    from lvcd.placement import PHASE_PARTS

    seconds = {}
    for phase, parts in PHASE_PARTS.items():
        sync(device)
        start = time.perf_counter()
        pipe.placement.place(*parts)
        sync(device)
        seconds[phase] = round(time.perf_counter() - start, 4)
    return seconds


def shot_section(args, config, device, budget: Budget, save) -> list[dict]:
    entries = []
    for offload in (False, True):
        entry = {"offload": offload}
        if budget.left() < args.reserve_s:
            entries.append({**entry, "skipped": "time budget"})
            continue
        try:
            entry = whole_shot(args, config, device, offload)
        except Exception as err:  # noqa: BLE001
            entry["error"] = _error(err)
        entries.append(entry)
        save(entries)
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return entries


# ------------------------------------------------------------------------------------------------------------------
# 4. the official code
# ------------------------------------------------------------------------------------------------------------------


def official_section(args, device, timeout_s: float) -> dict:
    folder = Path(args.official)
    script = folder / "official_denoiser_call.py"
    if not script.is_file():
        return {"skipped": f"{script} not found (copy ../shared/bench-official there, see its README)"}
    size = f"{args.sizes[0][0]}x{args.sizes[0][1]}"
    command = [sys.executable, str(script), "--device", str(device), "--size", size, "--repeat", str(args.repeats)]
    command += ["--no-flops"]
    env = {**os.environ, "LVCD_SRC": str(folder / "src")}
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s", "command": " ".join(command)}
    lines = [line for line in done.stdout.splitlines() if line.strip().startswith("{")]
    if done.returncode != 0 or not lines:
        return {"error": (done.stderr.strip().splitlines() or ["no output"])[-1], "command": " ".join(command)}
    try:  # its last line of JSON; any other line that starts with "{" (a printed dict) must not end the suite
        measured = json.loads(lines[-1])
    except ValueError as err:
        return {"error": f"unreadable output line {lines[-1][:200]!r} ({err})", "command": " ".join(command)}
    return {"command": " ".join(command), **measured}


def ratios(denoiser: list[dict], official: dict, size, dry: bool = False) -> dict:
    if "median_s" not in official:
        return {}
    if dry:  # the official script always builds the full-size network; the dry run times the tiny one
        return {"not comparable": "dry run: lvcd ran the tiny model, the official code the full-size one"}
    out = {}
    for entry in denoiser:
        if entry.get("size_hw") == list(size) and "median_s" in entry:
            out[f"{entry['mode']}-{entry['dtype']}"] = round(official["median_s"] / entry["median_s"], 2)
    return out


# ------------------------------------------------------------------------------------------------------------------
# output
# ------------------------------------------------------------------------------------------------------------------


def _gb(value) -> str:
    return "n/a" if value is None else f"{value / 1e9:.2f}"


def markdown(result: dict) -> str:
    lines = [
        f"### GPU suite: {result['device_name']}, torch {result['torch']}, {result['date']}",
        "",
        f"Command: `{result['command']}`"
        + (" (DRY RUN: CPU, tiny model; not a GPU figure)" if result["dry_run"] else ""),
        "",
    ]
    if not result.get("complete"):
        lines += ["**INCOMPLETE**: the run stopped before its end; the rows below are what it measured.", ""]
    lines += [
        "| call | dtype | size | median s | TFLOP/s | peak GB | weights GB | activations GB | workspace GB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in result.get("denoiser", []):
        size = "x".join(map(str, e["size_hw"]))
        if "median_s" not in e:
            lines.append(f"| {e['mode']} | {e['dtype']} | {size} | {e.get('skipped') or e.get('error')} |||||")
            continue
        m = e["memory"]
        lines.append(
            f"| {e['mode']} | {e['dtype']} | {size} | {e['median_s']:.4f} | {e['achieved_tflops']} | "
            f"{_gb(m['peak_allocated_bytes'])} | {_gb(m['weights_total_bytes'])} | {_gb(m['activations_bytes'])} | "
            f"{_gb(m['workspace_bytes'])} |"
        )
    lines += [
        "",
        "| whole shot | dtype | frames, steps | s / output frame | peak GB | estimated GB (meta) | weights GB at end "
        "| moves s (conditioning / sampling / decoding) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in result.get("shots", []):
        if "seconds" not in e:
            lines.append(f"| offload={e['offload']} | {e.get('skipped') or e.get('error')} |||||||")
            continue
        m = e["memory"]
        moves = " / ".join(str(v) for v in e["placement_seconds"].values())
        lines.append(
            f"| offload={e['offload']} | {e['dtype']} | {e['frames']}, {e['steps']} | {e['seconds_per_output_frame']} |"
            f" {_gb(m['peak_allocated_bytes'])} | {_gb(e.get('estimated_peak_bytes'))} | {_gb(m['weights_total_bytes'])} |"
            f" {moves} |"
        )
    official = result.get("official", {"skipped": "not reached"})
    lines += [
        "",
        f"Official denoiser call: {official.get('median_s', official.get('skipped') or official.get('error'))}",
    ]
    lines += [f"Speed-up (official s / lvcd s, same call): {json.dumps(result.get('ratio_official_over_lvcd'))}"]
    lines += [f"cuDNN autotuning (torch.backends.cudnn.benchmark): {json.dumps(result.get('cudnn_benchmark'))}"]
    checks = result.get("checks", {})
    lines += [
        f"Attention kernels: {checks.get('kernels')} (VAE: {checks.get('vae_kernels')}); merge vs exact: "
        f"{checks.get('merge_vs_exact_max_abs')}"
    ]
    return "\n".join(lines) + "\n"


def parse_sizes(text: str) -> list[tuple[int, int]]:
    return [tuple(int(v) for v in item.lower().split("x")) for item in text.split(",")]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny model, tiny sizes: checks the code path")
    parser.add_argument("--device", default=None)
    parser.add_argument("--config", default=None, help="model config (default: svd-lvcd; dry run: the tiny one)")
    parser.add_argument("--sizes", default=None, help="denoiser-call sizes HxW (default 320x576,576x1024)")
    parser.add_argument("--dtypes", default="fp32,bf16,fp16")
    parser.add_argument("--modes", default="eager,compiled,channels_last", help="channels_last: bf16 only")
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--warmup", type=int, default=None)
    parser.add_argument("--shot-frames", type=int, default=None)
    parser.add_argument("--shot-steps", type=int, default=None)
    parser.add_argument("--shot-size", default=None)
    parser.add_argument("--shot-dtype", default=None, choices=sorted(DTYPES), help="default: lvcd's device default")
    parser.add_argument("--official", default=str(ROOT / ".bench-official"), help="folder of ../shared/bench-official")
    parser.add_argument("--official-timeout-s", type=int, default=150)
    parser.add_argument(
        "--budget-s", type=float, default=None, help="stop starting entries after this (420; dry: none)"
    )
    parser.add_argument("--reserve-s", type=float, default=45.0, help="an entry starts only with this much left")
    parser.add_argument(
        "--compile-reserve-s", type=float, default=240.0, help="a compiled entry starts only with this much left"
    )
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(argv)
    dry = args.dry_run
    device = torch.device(args.device or ("cpu" if dry or not torch.cuda.is_available() else "cuda"))
    if device.type != "cuda" and not dry:
        parser.error("no CUDA device: run on a GPU, or pass --dry-run to check the code path on CPU")
    config = get_config(args.config or (TINY_CONFIG if dry else "svd-lvcd"))
    # cuDNN autotuning: on for the denoiser calls, as the official script sets it (a fair ratio); off for the whole
    # shots, which measure what lvcd does by default (autotuning may pick algorithms with larger workspaces)
    torch.backends.cudnn.benchmark = device.type == "cuda"
    args.sizes = parse_sizes(args.sizes or ("64x64" if dry else "320x576,576x1024"))
    args.dtypes = args.dtypes.split(",") if not (dry and args.dtypes == "fp32,bf16,fp16") else ["fp32", "bf16"]
    args.modes = args.modes.split(",") if not (dry and args.modes == "eager,compiled,channels_last") else ["eager"]
    args.repeats = args.repeats or (1 if dry else 10)
    args.warmup = args.warmup if args.warmup is not None else (0 if dry else 2)
    args.shot_frames = args.shot_frames or (16 if dry else 75)
    args.shot_steps = args.shot_steps or (2 if dry else 25)
    args.shot_size = parse_sizes(args.shot_size or ("64x64" if dry else "320x576"))[0]
    budget = Budget(args.budget_s if args.budget_s is not None else (math.inf if dry else 420.0))
    result = {
        "benchmark": "gpu_suite",
        "dry_run": dry,
        "command": " ".join([Path(sys.argv[0]).name if argv is None else "gpu_suite.py", *(argv or sys.argv[1:])]),
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn_benchmark": {"denoiser": device.type == "cuda", "shots": False},
        "config": config.name,
    }

    def save(section: str | None = None, value=None) -> None:
        """Rewrite the files with what is measured so far (a killed run keeps it)."""
        if section is not None:
            result[section] = value
        partial = {**result, "seconds_total": round(time.perf_counter() - budget.start, 1)}
        write_result(partial, markdown(partial), args.output, args.markdown)
        if value is not None:
            print(json.dumps({section: value[-1] if isinstance(value, list) and value else value}), file=sys.stderr,
                  flush=True)  # fmt: skip

    result["complete"] = False
    try:
        check_model = random_model(
            config,
            ("unet", "controlnet", "first_stage"),
            device,
            torch.bfloat16 if device.type == "cuda" else torch.float32,
        )
        save("checks", attention_checks(check_model, *args.sizes[0], device))
        del check_model
    except Exception as err:  # noqa: BLE001 - the timings below do not depend on the checks
        save("checks", {"error": _error(err)})
    flops = {size: count_flops(config, *size) for size in args.sizes}
    first, later = denoiser_plan(args)
    result["denoiser"] = denoiser_section(args, config, device, budget, first, flops, lambda e: save("denoiser", e))
    if budget.left() < args.reserve_s:
        save("official", {"skipped": "time budget"})
    else:
        save("official", official_section(args, device, min(args.official_timeout_s, budget.left())))
    save("ratio_official_over_lvcd", ratios(result["denoiser"], result["official"], args.sizes[0], dry))
    torch.backends.cudnn.benchmark = False
    result["shots"] = shot_section(args, config, device, budget, lambda e: save("shots", e))
    torch.backends.cudnn.benchmark = device.type == "cuda"
    done = result["denoiser"]
    result["denoiser"] = done + denoiser_section(
        args, config, device, budget, later, flops, lambda e: save("denoiser", done + e)
    )
    result["ratio_official_over_lvcd"] = ratios(result["denoiser"], result["official"], args.sizes[0], dry)
    result["seconds_total"] = round(time.perf_counter() - budget.start, 1)
    result["complete"] = True
    report_result(result, markdown(result), args.output, args.markdown)
    return result


def _error(err: Exception) -> str:
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"


if __name__ == "__main__":
    main()
