"""The pack's nodes called in one process with ComfyUI's own modules (nodes.load_custom_node, comfy.model_management,
comfy.utils, folder_paths; no server), to see the IMAGE tensors themselves, which the API only shows as 8-bit PNGs:
float32 (batch, height, width, 3) in [0, 1] on the CPU.

    python inprocess.py /path/to/ComfyUI results/synth_truth.npz demo-file-name     (prints one JSON line)
"""

from __future__ import annotations

import asyncio
import json
import os
import sys


def describe(image) -> dict:
    return {"dtype": str(image.dtype), "shape": list(image.shape), "device": str(image.device),
            "min": float(image.min()), "max": float(image.max()), "contiguous": image.is_contiguous()}  # fmt: skip


def main(comfyui: str, truth: str, demo_name: str) -> dict:
    sys.path.insert(0, comfyui)
    os.chdir(comfyui)
    import comfy.cli_args

    comfy.cli_args.args.cpu = True  # as `main.py --cpu` (set before model_management is imported)
    import nodes
    import numpy as np
    import torch

    asyncio.run(nodes.load_custom_node(os.path.join(comfyui, "custom_nodes", "lvcd-nodes")))
    classes = nodes.NODE_CLASS_MAPPINGS
    shot = np.load(truth)
    reference = torch.from_numpy(shot["frames"][:1]).float() / 255
    lineart = torch.from_numpy(shot["lineart"]).float()[..., None].expand(-1, -1, -1, 3) / 255
    with torch.inference_mode():  # as execution.py runs a node
        (pipeline,) = classes["LVCDLoader"]().load(demo_name, "none (svd is a whole-model file)", "auto", False)
        (frames,) = classes["LVCDColorize"]().colorize(pipeline, reference, lineart, 2, 0, 4, "auto")
        (lines,) = classes["LVCDLineart"]().extract(torch.from_numpy(shot["frames"]).float() / 255, "xdog", "auto")
    return {"colorize": describe(frames), "lineart": describe(lines)}


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:4])))
