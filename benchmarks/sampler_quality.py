"""Quality against time for each sampler and step count (issue #12, item 5): what users trade with --steps.

The demo model (``LVCDPipeline.from_pretrained("demo")``, or another model) colorizes held-out synthetic shots
(``lvcd.data.synthetic``, split "heldout", scored as ``benchmarks/demo_quality.py`` does) with every sampler of
``lvcd.diffusion.SAMPLERS`` at 25/15/10/6 steps. Per run: region accuracy, PSNR, SSIM, TC (and EDMD) averaged over the
shots, and seconds per output frame. Euler at 25 steps is the official setting.

    python benchmarks/sampler_quality.py                                   # demo model, 8 shots
    python benchmarks/sampler_quality.py --shots 2 --steps 10,6 --samplers euler,dpmpp_2m   # a quick look
    python benchmarks/sampler_quality.py --svd svd.safetensors --lvcd lvcd.ckpt --device cuda

Prints one JSON object (also written with --output) and a markdown table (stderr; --markdown FILE).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from demo_quality import _metric_tools, score  # noqa: E402 - the same scores as the demo benchmark
from report import report_result  # noqa: E402

from lvcd.data.synthetic import BENCHMARK_SPLITS, split_seed, synth_shot  # noqa: E402
from lvcd.demo.quality import colorize_synthetic, mean_scores  # noqa: E402
from lvcd.diffusion import SAMPLERS  # noqa: E402
from lvcd.errors import LVCDError  # noqa: E402

COLUMNS = ("region", "psnr", "ssim", "tc", "edmd")


def load(args):
    from lvcd.pipeline import LVCDPipeline

    if args.svd:
        return LVCDPipeline.from_single_file(args.svd, args.lvcd, config=args.config, device=args.device)
    if args.model == "demo":
        return LVCDPipeline.from_pretrained("demo", device=args.device)
    return LVCDPipeline.from_single_file(args.model, config=args.config, device=args.device, dtype=torch.float32)


def run(pipe, shots, sampler: str, steps: int, tools) -> dict:
    rows, seconds, frames = [], 0.0, 0
    for index, shot in enumerate(shots):
        started = time.perf_counter()
        pred = colorize_synthetic(pipe, shot, num_steps=steps, seed=index, sampler=sampler)
        if pipe.device.type == "cuda":
            torch.cuda.synchronize(pipe.device)
        seconds += time.perf_counter() - started
        frames += len(shot.frames) - 1  # frame 0 is the given reference
        rows.append(score(pred, shot, tools))
    return {"sampler": sampler, "steps": steps, "seconds_per_frame": seconds / frames, "scores": mean_scores(rows)}


def markdown(result: dict) -> str:
    def fmt(value, digits=3):
        return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"

    lines = [
        f"### Samplers: {result['shots']} held-out shots x {result['frames']} frames at "
        f"{result['size_hw'][0]}x{result['size_hw'][1]}, {result['device']}",
        "",
        "| sampler | steps | s / frame | region acc. | PSNR (dB) | SSIM | TC | EDMD |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for entry in result["runs"]:
        values = " | ".join(fmt(entry["scores"].get(name)) for name in COLUMNS)
        lines.append(f"| {entry['sampler']} | {entry['steps']} | {fmt(entry['seconds_per_frame'], 3)} | {values} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="demo", help="'demo' (packaged) or a whole-model .safetensors file")
    parser.add_argument("--svd", default=None, help="official svd.safetensors (with --lvcd) instead of --model")
    parser.add_argument("--lvcd", default=None)
    parser.add_argument("--config", default=None, help="model config (default: the file's own)")
    parser.add_argument("--samplers", default=",".join(SAMPLERS))
    parser.add_argument("--steps", default="25,15,10,6", help="comma-separated step counts")
    parser.add_argument("--shots", type=int, default=8, help="held-out shots (at most 24)")
    parser.add_argument("--frames", type=int, default=None, help="frames per shot (default: the split's, 45)")
    parser.add_argument("--size", default=None, help="HxW (default: the model's training size)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the markdown table here")
    args = parser.parse_args(argv)
    samplers = args.samplers.split(",")
    unknown = [name for name in samplers if name not in SAMPLERS]
    if unknown:
        parser.error(f"unknown sampler(s) {unknown}; choose from {', '.join(SAMPLERS)}")
    steps = [int(value) for value in args.steps.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        pipe = load(args)
    except LVCDError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    size = tuple(int(v) for v in args.size.lower().split("x")) if args.size else tuple(pipe.config.train_size_hw)
    count, split_frames = BENCHMARK_SPLITS["heldout"]
    frames = args.frames or split_frames
    shots = [synth_shot(split_seed("heldout", index), frames, size) for index in range(min(args.shots, count))]
    tools = _metric_tools()
    result = {
        "benchmark": "sampler_quality",
        "model": args.svd or args.model,
        "torch": torch.__version__,
        "device": str(pipe.device),
        "device_name": torch.cuda.get_device_name(pipe.device) if pipe.device.type == "cuda" else platform.machine(),
        "threads": torch.get_num_threads(),
        "loadavg_before": os.getloadavg(),
        "shots": len(shots),
        "frames": frames,
        "size_hw": list(size),
        "runs": [],
    }
    for sampler in samplers:
        for step_count in steps:
            result["runs"].append(run(pipe, shots, sampler, step_count, tools))
            print(json.dumps(result["runs"][-1]), file=sys.stderr, flush=True)
    result["loadavg_after"] = os.getloadavg()
    report_result(result, markdown(result), args.output, args.markdown)
    return result


if __name__ == "__main__":
    main()
