"""Whole-shot colorization: wall time and peak host memory against shot length (JSON on stdout).

Each shot length runs in a fresh process, so its peak RSS is its own. Without ``--svd/--lvcd`` the tiny test model
(re-created from ``tests/fixtures/tiny/weights_manifest.json``) is used: the mechanics (windows, decoding, streaming,
memory) are real, the colours are not.

    python benchmarks/colorize_shot.py --frames 75,300 --steps 5
    python benchmarks/colorize_shot.py --svd svd.safetensors --lvcd lvcd.ckpt --config svd-lvcd --device cuda --frames 75,300
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "fixtures" / "tiny"


def write_shot(folder: Path, count: int, size_hw: tuple[int, int]) -> Path:
    """Dark-lines drawings of a moving ring, and a coloured frame 0 next to them."""
    folder.mkdir(parents=True, exist_ok=True)
    height, width = size_hw
    yy, xx = np.mgrid[:height, :width]
    for index in range(count):
        cx = width * (0.2 + 0.6 * (index % 50) / 50)
        ring = np.abs(np.hypot(xx - cx, yy - height / 2) - height / 4) < 2
        Image.fromarray(np.where(ring, 0, 255).astype(np.uint8)).save(folder / f"{index:05d}.png")
    reference = folder.parent / "reference.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)).save(reference)
    return reference


def run_one(args: argparse.Namespace) -> dict:
    """Colorize one synthetic shot in this process; report time and this process's peak RSS."""
    import torch

    from lvcd.pipeline import LVCDPipeline

    torch.set_num_threads(args.threads)
    size_hw = tuple(int(v) for v in args.frame_size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        reference = write_shot(Path(tmp) / "lineart", args.count, size_hw)
        start = time.perf_counter()
        pipe = LVCDPipeline.from_single_file(args.svd, args.lvcd, config=args.config, device=args.device)
        loaded = time.perf_counter()
        # an H.264 file as users write; PNG frames where PyAV is missing (the GPU machine has none)
        output = Path(tmp) / ("out.mp4" if importlib.util.find_spec("av") else "out")
        pipe(reference, Path(tmp) / "lineart", num_steps=args.steps, seed=0, output=output, progress=False)
        done = time.perf_counter()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {
        "frames": args.count,
        "frame_size": args.frame_size,
        "steps": args.steps,
        "load_s": round(loaded - start, 2),
        "colorize_s": round(done - loaded, 2),
        "frames_per_s": round(args.count / (done - loaded), 3),
        "output": output.name,
        "peak_rss_mb": round(peak_kib / 1024, 1),
        "device": args.device,
        "threads": args.threads,
        "torch": torch.__version__,
    }
    if args.device.startswith("cuda"):
        result["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated(args.device) / 2**20, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", default="75,300", help="comma-separated shot lengths")
    parser.add_argument("--frame-size", default="320x576", help="HxW of the synthetic line art")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--svd", default=None)
    parser.add_argument("--lvcd", default=None)
    parser.add_argument("--config", default=None, help="preset or sgm JSON (default: the tiny test config)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)  # internal: one shot, in a child process
    args = parser.parse_args()
    if args.svd is None:
        from lvcd.testing.tiny_weights import materialize

        paths = materialize(TINY / "weights_manifest.json", Path(tempfile.gettempdir()) / "lvcd-bench-tiny")
        args.svd, args.lvcd = str(paths["svd"]), str(paths["lvcd"])
        args.config = args.config or str(TINY / "tiny_config.json")
    if args.count is not None:
        print(json.dumps(run_one(args)))
        return
    results = []
    for count in (int(v) for v in args.frames.split(",")):
        command = [
            sys.executable,
            __file__,
            "--count",
            str(count),
            "--frame-size",
            args.frame_size,
            "--steps",
            str(args.steps),
            "--svd",
            args.svd,
            "--lvcd",
            args.lvcd,
            "--config",
            args.config,
            "--device",
            args.device,
            "--threads",
            str(args.threads),
        ]
        child = subprocess.run(command, capture_output=True, text=True, check=True)
        results.append(json.loads(child.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), file=sys.stderr)
    print(json.dumps({"benchmark": "colorize_shot", "results": results}, indent=2))


if __name__ == "__main__":
    main()
