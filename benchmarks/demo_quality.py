"""Quality of the demo model on the fixed held-out synthetic benchmark, and the paper's ablations (issue #13).

Part 1 (Table 1 analogue): the 24 held-out shots (45 frames, `lvcd.data.synthetic`, split "heldout") colorized from
their first frame by the demo model, next to two baselines (the reference copied to every frame; every region
filled with the reference's mean colour, line art drawn over it). Scores over frames 1..N-1 (frame 0 is the given
reference): PSNR, SSIM and region accuracy at the model's size; EDMD (paper form: sketch of the result against the
input line art; XDoG sketches) and TC (paper form, DIS flow of the ground truth) at 256x256, as the paper evaluates.

Part 2 (Tables 2 and 3 analogues): the 8 long held-out shots (105 frames, split "long"), colorized with the sampling
variants users can choose too: full (prev-reference attention + overlapped blending, overlap 4), no sampling
schemes (`prev_reference=False, blending=False`), the previous sample as reference
(`reference_mode="previous-sample"`), and overlaps 0/2/4/6/8 with the colorization time relative to overlap 0.

    python benchmarks/demo_quality.py                       # everything (CPU: about an hour on 2 cores)
    python benchmarks/demo_quality.py --part quality --shots 4 --steps 10    # a quick look

Prints one JSON object (also written with --output) and a markdown table (--markdown FILE).
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
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import report_result  # noqa: E402

from lvcd.data.synthetic import BENCHMARK_SPLITS, split_seed, synth_shot  # noqa: E402
from lvcd.demo.quality import BASELINES, baseline_frames, colorize_synthetic, mean_scores, score_frames, to_unit  # noqa: E402

METRIC_SIZE = (256, 256)
VARIANTS = {
    "full": {},
    "no sampling schemes": {"prev_reference": False, "blending": False},
    "previous sample as reference": {"reference_mode": "previous-sample"},
}
OVERLAPS = (0, 2, 4, 6, 8)


def _metric_tools():
    from lvcd.metrics import build_tools

    tools = build_tools(["edmd", "tc"], sketch_method="xdog", flow="dis")
    if tools.skipped:
        print(f"note: skipped {tools.skipped}", file=sys.stderr)
    return tools


def _resize(frames: torch.Tensor) -> torch.Tensor:
    return F.interpolate(frames.float(), size=METRIC_SIZE, mode="bilinear", antialias=False, align_corners=False)


def score(pred: torch.Tensor, shot, tools) -> dict[str, float]:
    """Model-size scores plus EDMD and TC at 256x256 (nearest-neighbour line art, bilinear frames)."""
    from lvcd.metrics.edmd import edmd_per_frame
    from lvcd.metrics.tc import temporal_consistency

    scores = score_frames(pred, shot)
    truth = to_unit(shot.frames)
    big_pred, big_truth = _resize(pred), _resize(truth)
    lineart = torch.from_numpy(shot.lineart).float()[:, None] / 255.0
    big_lineart = F.interpolate(lineart, size=METRIC_SIZE, mode="nearest").expand(-1, 3, -1, -1)
    if tools.sketch is not None:
        scores["edmd"] = float(np.mean(edmd_per_frame(big_pred[1:], big_lineart[1:], tools.sketch)))
    if tools.flow is not None:
        scores["tc"] = float(temporal_consistency(big_pred, big_truth, tools.flow).tc)
    return scores


def quality_part(pipe, args, tools) -> dict:
    count = min(args.shots, BENCHMARK_SPLITS["heldout"][0])
    frames = BENCHMARK_SPLITS["heldout"][1]
    size = tuple(pipe.config.train_size_hw)
    rows: dict[str, list] = {"lvcd": [], **{name: [] for name in BASELINES}}
    seconds = 0.0
    for index in range(count):
        shot = synth_shot(split_seed("heldout", index), frames, size)
        started = time.perf_counter()
        pred = colorize_synthetic(pipe, shot, num_steps=args.steps, seed=index)
        seconds += time.perf_counter() - started
        rows["lvcd"].append(score(pred, shot, tools))
        for name in BASELINES:
            rows[name].append(score(baseline_frames(shot, name), shot, tools))
        print(f"shot {index}: {rows['lvcd'][-1]}", file=sys.stderr)
    return {
        "shots": count,
        "frames": frames,
        "size_hw": list(size),
        "steps": args.steps,
        "seconds_per_frame": seconds / (count * (frames - 1)),
        "methods": {name: mean_scores(values) for name, values in rows.items()},
        "per_shot": rows,
    }


def _run_long(pipe, args, tools, options: dict) -> dict:
    count = min(args.long_shots, BENCHMARK_SPLITS["long"][0])
    frames = BENCHMARK_SPLITS["long"][1]
    size = tuple(pipe.config.train_size_hw)
    rows, seconds = [], 0.0
    for index in range(count):
        shot = synth_shot(split_seed("long", index), frames, size)
        started = time.perf_counter()
        pred = colorize_synthetic(pipe, shot, num_steps=args.steps, seed=index, **options)
        seconds += time.perf_counter() - started
        rows.append(score(pred, shot, tools))
    return {"options": options, "seconds": seconds, "scores": mean_scores(rows), "per_shot": rows}


def ablation_part(pipe, args, tools) -> dict:
    variants = {}
    for name, options in VARIANTS.items():
        variants[name] = _run_long(pipe, args, tools, options)
        print(f"{name}: {variants[name]['scores']}", file=sys.stderr)
    overlaps = {}
    for overlap in OVERLAPS:
        overlaps[overlap] = _run_long(pipe, args, tools, {"overlap": overlap}) if overlap != 4 else variants["full"]
        print(
            f"overlap {overlap}: {overlaps[overlap]['scores']} in {overlaps[overlap]['seconds']:.1f} s", file=sys.stderr
        )
    base_time = overlaps[0]["seconds"]
    for entry in overlaps.values():
        entry["time_vs_overlap0"] = entry["seconds"] / base_time if base_time else float("nan")
    return {
        "shots": min(args.long_shots, BENCHMARK_SPLITS["long"][0]),
        "frames": BENCHMARK_SPLITS["long"][1],
        "variants": variants,
        "overlaps": {str(k): v for k, v in overlaps.items()},
    }


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def markdown(result: dict) -> str:
    lines = []
    names = ("psnr", "ssim", "region", "edmd", "tc")
    if "quality" in result:
        q = result["quality"]
        lines += [
            f"### Held-out shots: {q['shots']} x {q['frames']} frames at {q['size_hw'][0]}x{q['size_hw'][1]}, "
            f"{q['steps']} steps ({_fmt(q['seconds_per_frame'], 2)} s per frame)",
            "",
            "| method | PSNR (dB) | SSIM | region acc. | EDMD | TC |",
            "|---|---|---|---|---|---|",
        ]
        for method, values in q["methods"].items():
            lines.append(f"| {method} | " + " | ".join(_fmt(values.get(n)) for n in names) + " |")
        lines.append("")
    if "ablations" in result:
        a = result["ablations"]
        lines += [
            f"### Sampling schemes on the long shots ({a['shots']} x {a['frames']} frames) (paper Table 2)",
            "",
            "| variant | PSNR (dB) | SSIM | region acc. | EDMD | TC |",
            "|---|---|---|---|---|---|",
        ]
        for name, entry in a["variants"].items():
            lines.append(f"| {name} | " + " | ".join(_fmt(entry["scores"].get(n)) for n in names) + " |")
        lines += [
            "",
            "### Overlap (paper Table 3)",
            "",
            "| overlap | PSNR (dB) | SSIM | region acc. | EDMD | TC | time vs o=0 |",
            "|---|---|---|---|---|---|---|",
        ]
        for overlap, entry in a["overlaps"].items():
            row = " | ".join(_fmt(entry["scores"].get(n)) for n in names)
            lines.append(f"| {overlap} | {row} | {_fmt(entry['time_vs_overlap0'], 2)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", choices=("all", "quality", "ablations"), default="all")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--shots", type=int, default=24, help="held-out shots for part 1 (at most 24)")
    parser.add_argument("--long-shots", type=int, default=8, help="long shots for part 2 (at most 8)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--weights", default=None, help="a whole-model file instead of the packaged demo weights")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", type=Path, default=None, help="also write the JSON here")
    parser.add_argument("--markdown", type=Path, default=None, help="also write the markdown tables here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from lvcd.pipeline import LVCDPipeline

    if args.weights:
        pipe = LVCDPipeline.from_single_file(args.weights, device=args.device, dtype=torch.float32)
    else:
        pipe = LVCDPipeline.from_pretrained("demo", device=args.device)
    tools = _metric_tools()
    result = {
        "benchmark": "demo_quality",
        "weights": args.weights or "packaged demo",
        "torch": torch.__version__,
        "device": str(pipe.device),
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "loadavg_before": os.getloadavg(),
    }
    if args.part in ("all", "quality"):
        result["quality"] = quality_part(pipe, args, tools)
    if args.part in ("all", "ablations"):
        result["ablations"] = ablation_part(pipe, args, tools)
    result["loadavg_after"] = os.getloadavg()
    report_result(result, markdown(result), args.output, args.markdown)


if __name__ == "__main__":
    main()
