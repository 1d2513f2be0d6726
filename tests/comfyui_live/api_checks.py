"""The prompts the check queues through ComfyUI's HTTP API, and what it checks of their results."""

from __future__ import annotations

import hashlib
import io
import json
import time

import numpy as np
from comfy_client import Comfy, Run
from PIL import Image

WHOLE_MODEL = "none (svd is a whole-model file)"


def loader(demo_name: str, **overrides) -> dict:
    values = {
        "svd": demo_name,
        "lvcd": WHOLE_MODEL,
        "dtype": "auto",
        "offload": False,
        "config": "",
        "vae_dtype": "fp32",
    }
    return {"class_type": "LVCDLoader", "inputs": {**values, **overrides}}


def synth_prompt(names: dict, demo_name: str, steps=2, seed=0, save="SaveImage", **colorize) -> dict:
    """Load Image (reference) + Load Video (line art) -> Get Video Components -> LVCD Colorize -> Save Image, and
    Create Video (at the line art's frame rate) -> Save Video."""
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": names["synth_reference"]}},
        "2": {"class_type": "LoadVideo", "inputs": {"file": names["synth_lineart"]}},
        "3": {"class_type": "GetVideoComponents", "inputs": {"video": ["2", 0]}},
        "4": loader(demo_name),
        "5": {
            "class_type": "LVCDColorize",
            "inputs": {
                "pipeline": ["4", 0],
                "reference": ["1", 0],
                "lineart": ["3", 0],
                "steps": steps,
                "seed": seed,
                "overlap": 4,
                "polarity": "auto",
                **colorize,
            },
        },
        "6": {"class_type": save, "inputs": {"images": ["5", 0]}},
    }
    if save == "SaveImage":
        prompt["6"]["inputs"]["filename_prefix"] = "lvcd_check/frames"
        prompt["7"] = {"class_type": "CreateVideo", "inputs": {"images": ["5", 0], "fps": ["3", 2]}}
        prompt["8"] = {
            "class_type": "SaveVideo",
            "inputs": {"video": ["7", 0], "filename_prefix": "lvcd_check/video", "format": "auto", "codec": "auto"},
        }
    return prompt


async def images_of(comfy: Comfy, run: Run, node: str) -> np.ndarray:
    """The images a Save/Preview Image node wrote, as (N, H, W, 3) floats in [0, 1]."""
    frames = []
    for image in run.history["outputs"][node]["images"]:
        query = f"/view?filename={image['filename']}&subfolder={image['subfolder']}&type={image['type']}"
        frames.append(np.asarray(Image.open(io.BytesIO(await comfy.get(query))).convert("RGB")))
    return np.stack(frames).astype(np.float32) / 255


async def video_of(comfy: Comfy, run: Run, node: str) -> np.ndarray:
    import av

    entry = run.history["outputs"][node]["images"][0]
    query = f"/view?filename={entry['filename']}&subfolder={entry['subfolder']}&type={entry['type']}"
    with av.open(io.BytesIO(await comfy.get(query))) as container:
        return np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def digest(frames: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(frames).tobytes()).hexdigest()[:12]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1 / max(np.mean((a - b) ** 2), 1e-12)))


def one_line_error(run: Run, node_type: str, *expected: str) -> tuple[bool, str]:
    message = run.error.get("exception_message", "").rstrip("\n")
    ok = (
        run.outcome == "execution_error"
        and run.error.get("node_type") == node_type
        and "\n" not in message
        and message.startswith(("LVCD Loader: ", "LVCD Colorize: ", "LVCD Line Art: "))
        and all(text in message for text in expected)
    )
    return ok, f"{run.outcome}: {message!r}"


async def run_all(report, args, names: dict, demo_name: str, ui_prompts: dict) -> None:
    async with Comfy(args.url) as comfy:
        await comfy.wait_idle()
        await colorize_synthetic(report, comfy, names, demo_name, args.results)
        await keyframes_and_rgba(report, comfy, names, demo_name)
        if "real_colour" in names:
            await real_frames(report, comfy, names, demo_name)
        await informative_lineart(report, comfy, names, args.comfyui)
        await bad_inputs(report, comfy, names, demo_name, args.hub)
        await cancel(report, comfy, names, demo_name)
        await caching(report, comfy, names, demo_name)
        for name, prompt in ui_prompts.items():
            await ui_prompt(report, comfy, name, prompt, names, demo_name)


async def colorize_synthetic(report, comfy, names, demo_name, results) -> None:
    steps = 4
    run = await comfy.run(synth_prompt(names, demo_name, steps=steps, seed=1))
    if not report.check(
        "colorize: a synthetic shot with the demo model",
        run.outcome == "execution_success",
        run.error.get("exception_message"),
    ):
        return
    frames = await images_of(comfy, run, "6")
    count, height, width = names["synth_shape"]
    report.check(
        "colorize: one frame per drawing, at the line art's size",
        frames.shape == (count, height, width, 3),
        frames.shape,
    )
    ours = [(value, top) for node, value, top, _ in run.progress if node == "5"]
    report.check("colorize: progress events, one per step", ours == [(i + 1, steps) for i in range(steps)], ours)
    truth = np.load(results / "synth_truth.npz")
    colours = truth["frames"].astype(np.float32) / 255
    copy = np.repeat(colours[:1], count, axis=0)
    saturation = float(np.mean(frames.max(-1) - frames.min(-1)))
    scores = {
        "psnr": psnr(frames[1:], colours[1:]),
        "copy-reference psnr": psnr(copy[1:], colours[1:]),
        "line-art psnr": psnr(truth["lineart"][1:, ..., None] / 255, colours[1:]),
        "saturation": saturation,
        "seconds": round(run.seconds, 1),
        "steps": steps,
    }
    coloured = saturation > 0.2 and scores["psnr"] > scores["line-art psnr"] + 3
    report.check("colorize: the frames are coloured, near the truth", coloured, json.dumps(scores))
    Image.fromarray(np.concatenate(list((frames * 255).round().astype(np.uint8)), axis=1)).save(
        results / "synth_colorized.png"
    )
    video = await video_of(comfy, run, "8")
    report.check(
        "colorize: Create Video + Save Video write every frame", video.shape == (count, height, width, 3), video.shape
    )


async def keyframes_and_rgba(report, comfy, names, demo_name) -> None:
    prompt = synth_prompt(names, demo_name, steps=2, seed=2, save="PreviewImage", keyframe_indices="8")
    prompt["10"] = {"class_type": "LoadImage", "inputs": {"image": names["synth_key8"]}}
    prompt["5"]["inputs"]["keyframes"] = ["10", 0]
    prompt["11"] = {"class_type": "JoinImageWithAlpha", "inputs": {"image": ["1", 0], "alpha": ["1", 1]}}
    prompt["5"]["inputs"]["reference"] = ["11", 0]  # RGBA (opaque: Load Image's mask of a PNG without alpha)
    run = await comfy.run(prompt)
    report.check(
        "colorize: a keyframe (index 8) and an RGBA reference",
        run.outcome == "execution_success",
        run.error.get("exception_message"),
    )


async def real_frames(report, comfy, names, demo_name) -> None:
    count, height, width = names["real_shape"]
    prompt = {
        "1": {"class_type": "LoadImage", "inputs": {"image": names["real_reference"]}},
        "2": {"class_type": "LoadVideo", "inputs": {"file": names["real_colour"]}},
        "3": {"class_type": "GetVideoComponents", "inputs": {"video": ["2", 0]}},
        "4": loader(demo_name),
        "9": {"class_type": "LVCDLineart", "inputs": {"images": ["3", 0], "method": "xdog", "weights": "auto"}},
        "10": {"class_type": "PreviewImage", "inputs": {"images": ["9", 0]}},
        "5": {
            "class_type": "LVCDColorize",
            "inputs": {
                "pipeline": ["4", 0],
                "reference": ["1", 0],
                "lineart": ["9", 0],
                "steps": 2,
                "seed": 0,
                "overlap": 4,
                "polarity": "auto",
            },
        },
        "6": {"class_type": "PreviewImage", "inputs": {"images": ["5", 0]}},
    }
    run = await comfy.run(prompt)
    if not report.check(
        "real frames: LVCD Line Art (xdog) then Colorize at the automatic size",
        run.outcome == "execution_success",
        run.error.get("exception_message"),
    ):
        return
    lineart, frames = await images_of(comfy, run, "10"), await images_of(comfy, run, "6")
    shapes = (lineart.shape, frames.shape)
    report.check(
        "real frames: line art and colours at the frames' size", shapes == ((count, height, width, 3),) * 2, shapes
    )
    lines = [(value, top) for node, value, top, _ in run.progress if node == "9"]
    report.check("real frames: line-art progress, one per frame", lines == [(i + 1, count) for i in range(count)])
    dark = float(np.mean(lineart < 0.5))
    report.check("real frames: the line art is dark lines on white", 0.005 < dark < 0.3, f"dark fraction {dark:.3f}")


async def informative_lineart(report, comfy, names, comfyui) -> None:
    """informative-drawings weights put in models/lvcd (random ones: the path, not the quality) are listed in the
    Line Art node's menu without a restart, and run; the file (and the folder, if made here) is removed after."""
    import torch

    from lvcd.lineart import InformativeDrawingsGenerator

    folder = comfyui / "models" / "lvcd"
    made = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "lvcd_check_random_sk_model.pth"
    torch.manual_seed(0)
    torch.save(InformativeDrawingsGenerator().state_dict(), weights)
    try:
        menu = (await comfy.get("/object_info/LVCDLineart"))["LVCDLineart"]["input"]["required"]["weights"][0]
        report.check("line art: weights put in models/lvcd are in the menu (no restart)", weights.name in menu, menu)
        prompt = {"1": {"class_type": "LoadVideo", "inputs": {"file": names["synth_lineart"]}},
                  "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
                  "3": {"class_type": "LVCDLineart", "inputs": {"images": ["2", 0], "method": "informative",
                                                                "weights": weights.name}},
                  "4": {"class_type": "PreviewImage", "inputs": {"images": ["3", 0]}}}  # fmt: skip
        run = await comfy.run(prompt)
        ok = run.outcome == "execution_success"
        detail = (await images_of(comfy, run, "4")).shape if ok else run.error.get("exception_message")
        report.check("line art: the informative method with weights chosen in the menu", ok, detail)
    finally:
        weights.unlink()
        if made:
            folder.rmdir()


async def bad_inputs(report, comfy, names, demo_name, hub: bool) -> None:
    cases = {
        "a size not a multiple of the model's": (
            "LVCDColorize",
            synth_prompt(names, demo_name, save="PreviewImage", width=100, height=64),
            ["width 100 and height 64", "near the trained 64x64 area"],
        ),
        "a batch as reference": ("LVCDColorize", None, ["the reference must be one image, got a batch of 2"]),
        "keyframe indices with no keyframes": (
            "LVCDColorize",
            synth_prompt(names, demo_name, save="PreviewImage", keyframe_indices="5"),
            ["no keyframes image batch"],
        ),
        "a reference frame outside the shot": (
            "LVCDColorize",
            synth_prompt(names, demo_name, save="PreviewImage", reference_frame=12),
            ["outside the shot"],
        ),
        "informative line art without sk_model.pth": ("LVCDLineart", None, ["sk_model.pth was not found"]),
        "an unknown config": ("LVCDLoader", None, ["whatever"]),
    }
    batch = synth_prompt(names, demo_name, save="PreviewImage")
    batch["10"] = {"class_type": "LoadVideo", "inputs": {"file": names["reference_batch"]}}
    batch["11"] = {"class_type": "GetVideoComponents", "inputs": {"video": ["10", 0]}}
    batch["5"]["inputs"]["reference"] = ["11", 0]
    cases["a batch as reference"] = (*cases["a batch as reference"][:1], batch, cases["a batch as reference"][2])
    lineart = {
        "1": {"class_type": "LoadImage", "inputs": {"image": names["synth_reference"]}},
        "2": {"class_type": "LVCDLineart", "inputs": {"images": ["1", 0], "method": "informative", "weights": "auto"}},
        "3": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }
    cases["informative line art without sk_model.pth"] = (
        "LVCDLineart",
        lineart,
        cases["informative line art without sk_model.pth"][2],
    )
    config = synth_prompt(names, demo_name, save="PreviewImage")
    config["4"] = loader(demo_name, config="whatever")
    cases["an unknown config"] = ("LVCDLoader", config, cases["an unknown config"][2])
    if hub:
        offline = synth_prompt(names, demo_name, save="PreviewImage")
        offline["4"] = loader(demo_name, svd="huggingface-cache", lvcd="huggingface-cache")
        cases["huggingface-cache with nothing cached, no network"] = ("LVCDLoader", offline, ["svd.safetensors"])
    for name, (node_type, prompt, expected) in cases.items():
        run = await comfy.run(prompt)
        ok, detail = one_line_error(run, node_type, *expected)
        report.check(f"bad input: {name} -> one line in the node's error", ok, detail)
    status, body = await comfy.queue({**synth_prompt(names, demo_name), "4": loader("no-such-file.safetensors")})
    refused = status == 400 and "value_not_in_list" in json.dumps(body)
    report.check("bad input: a weights file not in the menu is refused by ComfyUI's validation", refused, status)


async def cancel(report, comfy, names, demo_name) -> None:
    """POST /interrupt at the first progress event: the prompt ends interrupted with no further step done."""
    sent = {}

    def interrupt_at_first_step_of(node: str):
        async def interrupt(run, event):
            if event.get("node") == node and not sent:
                sent["at"], sent["count"] = time.monotonic(), len(run.progress)
                await comfy.post("/interrupt")

        return interrupt

    prompt = synth_prompt(names, demo_name, steps=30, seed=7, save="PreviewImage")
    run = await comfy.run(prompt, on_progress=interrupt_at_first_step_of("5"))
    after = len(run.progress) - sent.get("count", 0)
    seconds = time.monotonic() - sent["at"] if sent else None
    report.check(
        "cancel: POST /interrupt stops Colorize within a step",
        run.outcome == "execution_interrupted" and after == 0 and len(run.progress) < 30,
        f"{run.outcome}, {after} step(s) after the interrupt, stopped {seconds:.1f} s after it"
        if seconds
        else run.outcome,
    )
    sent.clear()
    prompt = {
        "1": {"class_type": "LoadVideo", "inputs": {"file": names.get("real_colour", names["synth_lineart"])}},
        "3": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
        "2": {"class_type": "LVCDLineart", "inputs": {"images": ["3", 0], "method": "xdog", "weights": "auto"}},
        "4": {"class_type": "PreviewImage", "inputs": {"images": ["2", 0]}},
    }
    run = await comfy.run(prompt, on_progress=interrupt_at_first_step_of("2"))
    report.check(
        "cancel: POST /interrupt stops LVCD Line Art within a frame",
        run.outcome == "execution_interrupted" and len(run.progress) == sent.get("count"),
        f"{run.outcome}, {len(run.progress)} frame(s)",
    )


async def caching(report, comfy, names, demo_name) -> None:
    """Identical prompt: all cached; another seed: Colorize re-runs (the loader does not); back: the same frames."""
    runs = []
    for seed in (11, 11, 12, 11):
        run = await comfy.run(synth_prompt(names, demo_name, steps=2, seed=seed, save="PreviewImage"))
        if run.outcome != "execution_success":
            report.check("caching: the runs succeed", False, run.error.get("exception_message"))
            return
        runs.append((run, digest(await images_of(comfy, run, "6"))))
    (_, a), (second, _), (third, c), (fourth, d) = runs
    report.check(
        "caching: the identical prompt again is all cached",
        not second.executed and "5" in second.cached,
        f"ran {second.executed}, cached {second.cached}",
    )
    report.check(
        "caching: a new seed re-runs Colorize only",
        third.executed == ["5", "6"] and "4" in third.cached and c != a,
        f"ran {third.executed}, cached {third.cached}",
    )
    report.check(
        "caching: the first seed again gives the same frames (no state left in the cached pipeline)",
        d == a and "5" in fourth.executed,
        f"{a} {d}",
    )


async def ui_prompt(report, comfy, name, prompt, names, demo_name) -> None:
    """The frontend's own API prompt of an example workflow (app.graphToPrompt), with this check's files and 2 steps."""
    by_type = {node["class_type"]: node for node in prompt.values()}
    if "LVCDLineart" in by_type:  # recolour a colour video: the real frames (else two synthetic colour frames)
        image, video = (
            names.get("real_reference", names["synth_reference"]),
            names.get("real_colour", names["reference_batch"]),
        )
    else:
        image, video = names["synth_reference"], names["synth_lineart"]
    by_type["LoadImage"]["inputs"]["image"], by_type["LoadVideo"]["inputs"]["file"] = image, video
    by_type["LVCDLoader"]["inputs"].update(svd=demo_name, lvcd=WHOLE_MODEL)
    by_type["LVCDColorize"]["inputs"]["steps"] = 2
    if "LVCDLineart" in by_type:
        by_type["LVCDLineart"]["inputs"]["method"] = "xdog"  # no sk_model.pth here
    by_type["SaveVideo"]["inputs"]["filename_prefix"] = f"lvcd_check/{name}"
    run = await comfy.run(prompt)
    ok = run.outcome == "execution_success"
    detail = run.error.get("exception_message")
    if ok:
        video = next(node for node, entry in prompt.items() if entry["class_type"] == "SaveVideo")
        detail = (await video_of(comfy, run, video)).shape
    report.check(f"frontend prompt: {name} (as the frontend converts it) runs and saves its video", ok, detail)
