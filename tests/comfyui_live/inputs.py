"""Inputs for the check, written into ComfyUI's input folder (top level: Load Image and Load Video list only that).

- ``lvcd_check_synth_reference.png`` + ``lvcd_check_synth_lineart.mp4``: a held-out synthetic shot at 64x64 (what the
  demo model knows), its frame 0 coloured and the line art of every frame; ``lvcd_check_synth_key8.png``: its frame 8
  coloured (a keyframe). The truth (colour frames, region labels) is saved to score the output.
- ``lvcd_check_reference_batch.mp4``: two colour frames, a batch where one reference image is expected.
- ``lvcd_check_real_reference.png`` + ``lvcd_check_real_colour.mp4``: real animation frames (a folder of numbered
  PNGs), the first as the reference, all as a colour video for LVCD Line Art.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
from PIL import Image

PREFIX = "lvcd_check_"
SYNTH_FRAMES = 12
KEY_FRAME = 8
REAL_FRAMES = 10
FPS = 12


def write_video(path: Path, frames: np.ndarray, fps: int = FPS) -> None:
    """(N, H, W, 3) uint8 -> a lossless H.264 mp4 (crf 0, 4:4:4: thin lines and colours survive)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv444p"
        stream.options = {"crf": "0"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def prepare(input_dir: Path, results: Path, real_frames_dir: Path | None) -> dict:
    """Write the inputs; return their file names as Load Image / Load Video list them, and the shapes."""
    from lvcd.data.synthetic import split_seed, synth_shot

    input_dir.mkdir(parents=True, exist_ok=True)
    results.mkdir(parents=True, exist_ok=True)
    shot = synth_shot(split_seed("heldout", 0), SYNTH_FRAMES, (64, 64))
    names = {f"synth_{what}": f"{PREFIX}synth_{what}.png" for what in ("reference", "key8")}
    Image.fromarray(shot.frames[0]).save(input_dir / names["synth_reference"])
    Image.fromarray(shot.frames[KEY_FRAME]).save(input_dir / names["synth_key8"])
    names["synth_lineart"] = f"{PREFIX}synth_lineart.mp4"
    write_video(input_dir / names["synth_lineart"], np.repeat(shot.lineart[..., None], 3, axis=3))
    names["reference_batch"] = f"{PREFIX}reference_batch.mp4"
    write_video(input_dir / names["reference_batch"], shot.frames[:2])
    np.savez_compressed(results / "synth_truth.npz", frames=shot.frames, labels=shot.labels, lineart=shot.lineart)
    names["synth_shape"] = (SYNTH_FRAMES, 64, 64)
    if real_frames_dir is not None:
        paths = sorted(real_frames_dir.glob("*.png"), key=lambda path: (len(path.stem), path.stem))  # 2.png < 10.png
        real = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in paths[:REAL_FRAMES]])
        real = real[:, : real.shape[1] // 2 * 2, : real.shape[2] // 2 * 2]  # H.264 wants even sizes
        names["real_reference"], names["real_colour"] = f"{PREFIX}real_reference.png", f"{PREFIX}real_colour.mp4"
        Image.fromarray(real[0]).save(input_dir / names["real_reference"])
        write_video(input_dir / names["real_colour"], real)
        names["real_shape"] = real.shape[:3]
    return names
