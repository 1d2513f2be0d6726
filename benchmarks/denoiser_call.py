"""Time and memory of ONE denoiser call (ControlNet + UNet) of the full-size LVCD network on a 19-frame window.

Random weights (the network's cost does not depend on their values), the inference layout of a later window:
19 frames, the first 5 on the reference path, the official prev-reference attention plan. Prints JSON.

    python benchmarks/denoiser_call.py --device cpu --dtype fp32 --sizes 128x128 --repeats 3
    python benchmarks/denoiser_call.py --device cuda --dtype bf16 --sizes 320x576,128x128 --repeats 10

See benchmarks/README.md for what the numbers mean.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import sys
import time

import torch
from torch import nn

from lvcd.config import get_config
from lvcd.longvideo import plan_windows
from lvcd.model import Conditioning, LVCDModel
from lvcd.models.embeddings import MICRO_CONDITIONING_DIM
from lvcd.models.transformer import ClipLayout
from lvcd.sampling import window_layouts

WINDOW_PLAN = plan_windows(100)  # the official layout: 1 reference + 4 prev-reference + 14 video frames a window
WINDOW_FRAMES = WINDOW_PLAN.window_size
REFERENCE_FRAMES = WINDOW_PLAN.num_reference  # frames on the reference path (reference + prev-reference)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def prev_reference_layout(device=None) -> ClipLayout:
    """The layout of a later window, exactly as the sampler builds it (official prev-reference plan)."""
    return window_layouts(WINDOW_PLAN, device)[1]


def build_random_network(device: torch.device, dtype: torch.dtype, seed: int = 0) -> LVCDModel:
    """UNet + ControlNet built on the meta device, materialised uninitialised in ``dtype``, then filled cheaply:
    norms weight 1 / bias 0, other biases and mix factors 0, weights N(0, 1/fan_in) (activations stay O(1), so no
    inf/NaN or denormal slow paths distort the timing). No fp32 copy of the 2.2 B parameters is ever made."""
    with torch.device("meta"):
        model = LVCDModel(get_config("svd-lvcd"), parts=("unet", "controlnet"))
    model = model.to(dtype=dtype).to_empty(device=device)
    fill_random_(model, device, seed)
    return model.eval().requires_grad_(False)


@torch.no_grad()
def fill_random_(model: nn.Module, device: torch.device, seed: int) -> None:
    """Deterministic random weights in place: norms 1/0, other vectors 0, matrices N(0, 1/fan_in) from a NormalPool."""
    pool = NormalPool(device, seed)
    norms = {id(p) for m in model.modules() if isinstance(m, (nn.GroupNorm, nn.LayerNorm)) for p in m.parameters()}
    for name, param in model.named_parameters():
        if id(param) in norms:
            param.fill_(1.0 if name.endswith("weight") else 0.0)
        elif param.ndim <= 1:
            param.zero_()
        else:
            pool.fill(param, std=1.0 / math.sqrt(param[0].numel()))


class NormalPool:
    """Deterministic N(0, std) fill at memory speed: one pool of 2^24 standard normals, copied (scaled) into each
    tensor from a different offset. Drawing 2.2 B fresh normals takes ~40 s on 2 CPU cores; this takes a few."""

    SIZE = 1 << 24

    def __init__(self, device: torch.device, seed: int):
        generator = torch.Generator(device=device).manual_seed(seed)
        self.values = torch.randn(2 * self.SIZE, generator=generator, device=device)
        self.offset = 0

    def fill(self, tensor: torch.Tensor, std: float) -> None:
        flat = tensor.view(-1)
        for start in range(0, flat.numel(), self.SIZE):
            chunk = flat[start : start + self.SIZE]
            self.offset = (self.offset + 7919) % self.SIZE  # a new window of the pool for every chunk
            torch.mul(self.values[self.offset : self.offset + chunk.numel()], std, out=chunk)


def make_inputs(model: LVCDModel, height: int, width: int, device: torch.device, seed: int = 0):
    """x (19, 4, h, w), sigma (19,), conditioning, as the sampler passes them (float32; denoise casts)."""
    generator = torch.Generator(device=device).manual_seed(seed)
    latent = (WINDOW_FRAMES, 4, height // 8, width // 8)
    x = torch.randn(latent, generator=generator, device=device)
    sigma = torch.full((WINDOW_FRAMES,), 1.0, device=device)
    cond = Conditioning(
        concat=torch.randn(latent, generator=generator, device=device),
        crossattn=torch.randn(WINDOW_FRAMES, 1, model.config.unet.context_dim, generator=generator, device=device),
        vector=model.micro_conditioning(WINDOW_FRAMES, device=device),
        hint=(torch.rand(WINDOW_FRAMES, 1, height, width, generator=generator, device=device) > 0.9).float(),
    )
    return x, sigma, cond


# ------------------------------------------------------------------------------------------------
# Memory
# ------------------------------------------------------------------------------------------------


def _proc_status(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class PeakMemory:
    """Peak memory over a block. CUDA: max_memory_allocated. CPU (Linux): VmHWM after resetting it through
    /proc/self/clear_refs, minus the RSS at the start; elsewhere the process-lifetime ru_maxrss (an upper bound)."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
            self.method = "torch.cuda.max_memory_allocated"
            return self
        self.method = "VmHWM after /proc/self/clear_refs reset"
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            self.method = "ru_maxrss (process lifetime peak, upper bound)"
        self.start = _proc_status("VmRSS") or 0
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        elif self.method.startswith("VmHWM"):
            self.peak = _proc_status("VmHWM") or 0
        else:
            self.peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        self.extra = self.peak - self.start
        return False


# ------------------------------------------------------------------------------------------------
# FLOPs (counted on the meta device: no compute, no memory)
# ------------------------------------------------------------------------------------------------


def count_flops(height: int, width: int) -> int | None:
    """FLOPs of one denoiser call (matmuls, convolutions and attention as torch's FlopCounterMode counts them)."""
    from torch.utils.flop_counter import FlopCounterMode

    try:
        meta = torch.device("meta")
        with meta:
            model = LVCDModel(get_config("svd-lvcd"), parts=("unet", "controlnet"))
        x, sigma, cond = make_inputs_meta(model, height, width)
        counter = FlopCounterMode(display=False)
        with counter, torch.no_grad():
            model.denoise(x, sigma, cond, prev_reference_layout())
        return int(counter.get_total_flops())
    except Exception:  # noqa: BLE001 - an op without a meta kernel must not sink the timing run
        return None


def make_inputs_meta(model: LVCDModel, height: int, width: int):
    latent = (WINDOW_FRAMES, 4, height // 8, width // 8)
    with torch.device("meta"):
        cond = Conditioning(
            concat=torch.empty(latent),
            crossattn=torch.empty(WINDOW_FRAMES, 1, model.config.unet.context_dim),
            vector=torch.empty(WINDOW_FRAMES, 3 * MICRO_CONDITIONING_DIM),
            hint=torch.empty(WINDOW_FRAMES, 1, height, width),
        )
        return torch.empty(latent), torch.ones(WINDOW_FRAMES), cond


# ------------------------------------------------------------------------------------------------
# The measurement
# ------------------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_calls(call, device: torch.device, warmup: int, repeats: int) -> tuple[list[float], list[float], bool]:
    """Run ``call()`` warmup + repeats times, each timed between device synchronisations: (warm-up times, timed
    times, whether the last output was finite)."""
    times = []
    for _ in range(warmup + repeats):
        sync(device)
        start = time.perf_counter()
        out = call()
        sync(device)
        times.append(time.perf_counter() - start)
    finite = bool(torch.isfinite(out).all())
    return times[:warmup], times[warmup:], finite


def measure(model: LVCDModel, height: int, width: int, device: torch.device, warmup: int, repeats: int) -> dict:
    layout = prev_reference_layout(device)
    x, sigma, cond = make_inputs(model, height, width, device)
    with torch.inference_mode(), PeakMemory(device) as memory:
        warmup_times, times, finite = timed_calls(
            lambda: model.denoise(x, sigma, cond, layout), device, warmup, repeats
        )
    flops = count_flops(height, width)
    median = statistics.median(times)
    return {
        "size_hw": [height, width],
        "latent_hw": [height // 8, width // 8],
        "frames": WINDOW_FRAMES,
        "median_s": round(median, 4),
        "min_s": round(min(times), 4),
        "times_s": [round(t, 4) for t in times],
        "warmup_times_s": [round(t, 4) for t in warmup_times],
        "peak_memory_bytes": memory.peak,
        "peak_extra_bytes": memory.extra,
        "memory_method": memory.method,
        "gflops_per_call": round(flops / 1e9, 1) if flops else None,
        "achieved_tflops": round(flops / median / 1e12, 3) if flops else None,
        "output_finite": finite,
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="cpu or cuda[:N]")
    parser.add_argument(
        "--dtype", choices=sorted(DTYPES), default="fp32", help="weights and compute dtype (no autocast)"
    )
    parser.add_argument("--sizes", default="320x576,128x128", help="comma-separated HxW pixel sizes (multiples of 64)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per size (median reported; >= 1)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per size before the timed ones")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None, help="also write the JSON to this file")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = []
    for text in args.sizes.split(","):
        height, width = (int(v) for v in text.lower().split("x"))
        if height % 64 or width % 64:
            parser.error(f"size {text}: height and width must be multiples of 64")
        sizes.append((height, width))

    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    start = time.perf_counter()
    model = build_random_network(device, dtype, args.seed)
    sync(device)
    build_s = time.perf_counter() - start
    parameters = sum(p.numel() for p in model.parameters())
    result = {
        "benchmark": "denoiser_call (ControlNet + UNet, one call, random weights)",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or platform.machine(),
        "dtype": args.dtype,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "parameters": parameters,
        "weights_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
        "build_and_init_s": round(build_s, 2),
        "layout": {
            "frames": WINDOW_FRAMES,
            "reference_path_frames": REFERENCE_FRAMES,
            "plan": "official prev-reference",
        },
        "loadavg_before": load_before,
        "sizes": [],
    }
    for height, width in sizes:
        result["sizes"].append(measure(model, height, width, device, args.warmup, args.repeats))
        print(json.dumps(result["sizes"][-1]), file=sys.stderr, flush=True)  # partial results survive an interruption
    result["loadavg_after"] = os.getloadavg() if hasattr(os, "getloadavg") else None
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text + "\n")
    return result


if __name__ == "__main__":
    main()
