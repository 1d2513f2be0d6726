"""Scanned line art: how the demo model colorizes drawings on grey, grainy paper, read as drawn or levelled.

Held-out synthetic shots (`lvcd.data.synthetic`, split "heldout") whose exact line art is turned into scans:
``gray = light * (paper * (1 - d) + ink * d) + N(0, grain)`` with ``d`` the line darkness and ``light`` 1, or for
photos under a lamp falling across the frame, rounded to 8 bits, one draw per pixel and frame. Each shot is colorized from its first frame with ``lineart_levels="off"`` (the official mapping
``1 - gray/255``) and ``"auto"`` (lvcd.io.paper: each frame's paper to white, its ink to black), and scored as
benchmarks/demo_quality.py scores (region accuracy, PSNR over frames 1..N-1).

    python benchmarks/scanned_lineart.py                    # 4 shots x 25 frames, 10 steps: ~3 minutes on 2 cores
    python benchmarks/scanned_lineart.py --output results/scanned_lineart.json --markdown results/scanned_lineart.md
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import report_result  # noqa: E402

from lvcd.data.synthetic import split_seed, synth_shot  # noqa: E402
from lvcd.demo.quality import score_frames, to_unit  # noqa: E402
from lvcd.testing.drawings import scanned  # noqa: E402

# (paper, ink, grain, lighting drop): the clean line art; scans on grey paper; pencil (grey ink) on darker paper; grainy
# white paper; photos under a lamp whose light on the paper falls by `drop` levels across the frame (diagonally)
SHEETS = {
    "clean": None,
    "grey paper 200, ink 40, grain 4": (200, 40, 4, 0),
    "pencil: paper 170, ink 90, grain 6": (170, 90, 6, 0),
    "grainy white paper 250, ink 30, grain 8": (250, 30, 8, 0),
    "photo: paper 240 -> 130 across, ink 15 % of the light, grain 3": (240, 36, 3, 110),
    "photo: paper 240 -> 70 across, ink 15 % of the light, grain 3": (240, 36, 3, 170),
}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", type=int, default=4)
    parser.add_argument("--frames", type=int, default=25)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--output", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)

    from lvcd.pipeline import LVCDPipeline

    pipe = LVCDPipeline.from_pretrained("demo", device="cpu")
    size = tuple(pipe.config.train_size_hw)
    rows: dict[str, dict[str, list]] = {name: {"off": [], "auto": []} for name in SHEETS}
    for index in range(args.shots):
        shot = synth_shot(split_seed("heldout", index), args.frames, size)
        reference = to_unit(shot.frames[:1])[0]
        for name, sheet in SHEETS.items():
            frames = list(shot.lineart if sheet is None else scanned(shot.lineart, *sheet[:3], index, sheet[3]))
            for levels in ("off", "auto"):
                result = pipe(reference, frames, num_steps=args.steps, seed=0, polarity="dark-lines",
                              lineart_levels=levels, progress=False)  # fmt: skip
                scores = score_frames(result.frames, shot)
                rows[name][levels].append((scores["region"], scores["psnr"], result.lineart_levels is not None))
            print(f"shot {index}: {name} done", file=sys.stderr)
    summary = {
        name: {
            levels: {
                "region": float(np.mean([r[0] for r in runs])),
                "psnr": float(np.mean([r[1] for r in runs])),
                "levelled_shots": int(sum(r[2] for r in runs)),
            }
            for levels, runs in by_levels.items()
        }
        for name, by_levels in rows.items()
    }
    result = {
        "benchmark": "scanned_lineart",
        "settings": {"shots": args.shots, "frames": args.frames, "steps": args.steps, "seed": 0, "size": list(size)},
        "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(),
        "results": summary,
    }
    lines = [
        f"Demo model, {args.shots} held-out shots x {args.frames} frames, {args.steps} steps: region accuracy / PSNR",
        "",
        "| line art | read as drawn (`off`) | levelled (`auto`, the default) | shots levelled by `auto` |",
        "| --- | --- | --- | --- |",
    ]
    for name, by_levels in summary.items():
        off, auto = by_levels["off"], by_levels["auto"]
        lines.append(
            f"| {name} | {off['region']:.3f} / {off['psnr']:.2f} dB | {auto['region']:.3f} / {auto['psnr']:.2f} dB "
            f"| {auto['levelled_shots']} of {args.shots} |"
        )
    report_result(result, "\n".join(lines) + "\n", args.output, args.markdown)
    return result


if __name__ == "__main__":
    main()
