"""A colour key inside the shot (``reference_frame``): quality against how far each frame is from its reference.

The demo model colorizes held-out synthetic shots (``lvcd.data.synthetic``, split "heldout", 45 frames) twice: from
frame 0 (the official single pass) and from the middle frame (``reference_frame=N // 2``: two passes, back to 0 and
on to the end), each time given that frame's true colours. Scores leave out the given frame: PSNR, SSIM and region
accuracy over the shot, and region accuracy by distance (in frames) from the reference. The middle key halves the
farthest distance; the table says what that is worth.

    python benchmarks/reference_frame.py                       # demo model, 8 shots, 25 steps
    python benchmarks/reference_frame.py --shots 2 --steps 10  # a quick look

Prints one JSON object (also written with --output) and a markdown table (stderr; --markdown FILE).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import report_result  # noqa: E402

from lvcd.data.synthetic import BENCHMARK_SPLITS, split_seed, synth_shot  # noqa: E402
from lvcd.demo.quality import lineart_tensor, mean_scores, to_unit  # noqa: E402
from lvcd.metrics.psnr_ssim import psnr, ssim  # noqa: E402
from lvcd.metrics.region import region_accuracy  # noqa: E402

DISTANCES = ((1, 11), (12, 22), (23, 44))  # frames from the reference, inclusive


def colorize_from(pipe, shot, reference_frame: int, steps: int, seed: int) -> torch.Tensor:
    truth = to_unit(shot.frames)
    result = pipe(truth[reference_frame], lineart_tensor(shot), num_steps=steps, seed=seed, polarity="dark-lines",
                  reference_frame=reference_frame, progress=False)  # fmt: skip
    return result.frames.float().clamp(0, 1)


def score(pred: torch.Tensor, shot, reference_frame: int) -> dict[str, float]:
    """Scores over every frame but the given one, and region accuracy by distance from it."""
    truth = to_unit(shot.frames)
    labels = torch.from_numpy(shot.labels.astype(np.int64))
    lines = torch.from_numpy(shot.line_mask)
    others = [index for index in range(len(truth)) if index != reference_frame]
    scores = {
        "psnr": float(psnr(pred[others], truth[others]).mean()),
        "ssim": float(ssim(pred[others], truth[others]).mean()),
        "region": region_accuracy(pred[others], truth[others], labels[others], lines[others]).accuracy,
    }
    for low, high in DISTANCES:
        near = [index for index in others if low <= abs(index - reference_frame) <= high]
        scores[f"region {low}-{high}"] = (
            region_accuracy(pred[near], truth[near], labels[near], lines[near]).accuracy if near else float("nan")
        )
    return scores


def markdown(result: dict) -> str:
    def fmt(value, digits=3):
        return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"

    buckets = [f"region {low}-{high}" for low, high in DISTANCES]
    lines = [
        f"### Reference frame: {result['shots']} held-out shots x {result['frames']} frames at "
        f"{result['size_hw'][0]}x{result['size_hw'][1]}, {result['steps']} steps, {result['device']}",
        "",
        "| reference | s / frame | PSNR (dB) | SSIM | region acc. | " + " | ".join(
            f"region acc. {b.split(' ')[1]} frames away" for b in buckets
        ) + " |",
        "|---|---|---|---|---|" + "---|" * len(buckets),
    ]  # fmt: skip
    for name, entry in result["runs"].items():
        scores = entry["scores"]
        values = " | ".join(fmt(scores[key]) for key in ("psnr", "ssim", "region", *buckets))
        lines.append(f"| {name} | {fmt(entry['seconds_per_frame'])} | {values} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shots", type=int, default=8, help="held-out shots (at most 24)")
    parser.add_argument("--frames", type=int, default=None, help="frames per shot (default: the split's, 45)")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the markdown table here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    from lvcd.pipeline import LVCDPipeline

    pipe = LVCDPipeline.from_pretrained("demo", device=args.device)
    size = tuple(pipe.config.train_size_hw)
    count, split_frames = BENCHMARK_SPLITS["heldout"]
    frames = args.frames or split_frames
    shots = [synth_shot(split_seed("heldout", index), frames, size) for index in range(min(args.shots, count))]
    result = {
        "benchmark": "reference_frame",
        "torch": torch.__version__,
        "device": str(pipe.device),
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "loadavg_before": os.getloadavg(),
        "shots": len(shots),
        "frames": frames,
        "size_hw": list(size),
        "steps": args.steps,
        "runs": {},
    }
    for name, reference_frame in (("frame 0", 0), (f"frame {frames // 2} (middle)", frames // 2)):
        rows, seconds = [], 0.0
        for index, shot in enumerate(shots):
            started = time.perf_counter()
            pred = colorize_from(pipe, shot, reference_frame, args.steps, seed=index)
            seconds += time.perf_counter() - started
            rows.append(score(pred, shot, reference_frame))
        result["runs"][name] = {
            "reference_frame": reference_frame,
            "seconds_per_frame": seconds / (len(shots) * (frames - 1)),
            "scores": mean_scores(rows),
            "per_shot": rows,
        }
        print(f"{name}: {result['runs'][name]['scores']}", file=sys.stderr, flush=True)
    result["loadavg_after"] = os.getloadavg()
    report_result(result, markdown(result), args.output, args.markdown)
    return result


if __name__ == "__main__":
    main()
