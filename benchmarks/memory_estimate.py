"""Where a shot's accelerator memory goes, estimated on the meta device (``lvcd.memory_estimate``): no GPU, no
weights, seconds on a CPU. For each size, weight dtype and offload setting: the weights of each part, the peak of
the tensors each phase creates (conditioning, one denoiser window, one decode chunk), the estimated peak of each
phase (resident weights + its tensors) and of the shot, against issue #12's targets.

These are estimates of ``max_memory_allocated`` without the allocator's rounding and the kernels' workspaces (a
lower bound), not GPU measurements; the GPU suite prints them beside its measured peaks.

    python benchmarks/memory_estimate.py --markdown table.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from report import report_result  # noqa: E402

from lvcd.config import get_config  # noqa: E402
from lvcd.io.sizing import parse_size  # noqa: E402
from lvcd.memory_estimate import PHASES, estimate_shot_memory  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# Issue #12's targets (GB) at a processing size: (default, offload)
TARGETS = {(320, 576): (8.0, 6.0), (576, 1024): (24.0, 24.0)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="svd-lvcd")
    parser.add_argument("--sizes", default="320x576,576x1024")
    parser.add_argument("--dtypes", default="bf16,fp16,fp32")
    parser.add_argument("--vae-dtype", default="fp32", choices=sorted(DTYPES))
    parser.add_argument("--decode-chunk", type=int, default=10)
    parser.add_argument("--output", type=Path, default=None)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args(argv)
    config = get_config(args.config)
    rows = []
    for size in (parse_size(text, "--sizes") for text in args.sizes.split(",")):
        for name in args.dtypes.split(","):
            for offload in (False, True):
                estimate = estimate_shot_memory(
                    config, size, DTYPES[name], DTYPES[args.vae_dtype], offload, args.decode_chunk
                )
                target = TARGETS.get(tuple(size), (None, None))[int(offload)]
                rows.append({**estimate.as_dict(), "target_gb": target})
    result = {
        "benchmark": "memory_estimate",
        "config": config.name,
        "torch": torch.__version__,
        "decode_chunk": args.decode_chunk,
        "rows": rows,
    }
    report_result(result, markdown(result), args.output, args.markdown)
    return result


def _gb(value: int) -> str:
    return f"{value / 1e9:.2f}"


def markdown(result: dict) -> str:
    lines = [
        f"#### Memory estimate (meta device, {result['config']}, decode chunk {result['decode_chunk']}; "
        "not a GPU measurement)",
        "",
        "| size | weights | VAE | offload | weights GB (UNet / ControlNet / CLIP+enc / VAE) | "
        + " | ".join(f"{phase} GB (tensors)" for phase in PHASES)
        + " | peak GB | target GB |",
        "|---|---|---|---|---|" + "---|" * len(PHASES) + "---|---|",
    ]
    for row in result["rows"]:
        weights = row["weights_bytes"]
        phases = " | ".join(
            f"{_gb(row['phase_bytes'][phase])} ({_gb(row['activations_bytes'][phase])})" for phase in PHASES
        )
        target = row["target_gb"]
        verdict = "" if target is None else (" (over)" if row["peak_bytes"] / 1e9 > target else " (under)")
        lines.append(
            f"| {row['size_hw'][0]}x{row['size_hw'][1]} | {row['dtype']} | {row['vae_dtype']} | {row['offload']} | "
            f"{_gb(weights['unet'])} / {_gb(weights['controlnet'])} / {_gb(weights['clip'])} / "
            f"{_gb(weights['first_stage'])} | {phases} | **{_gb(row['peak_bytes'])}** ({row['peak_phase']}) | "
            f"{target if target is not None else 'n/a'}{verdict} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
