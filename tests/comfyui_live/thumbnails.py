"""Make the template thumbnails of the example workflows (``comfyui/example_workflows/<name>.jpg``).

ComfyUI's template browser shows ``<workflow>.jpg`` beside ``<workflow>.json`` as the card's picture. Each thumbnail
is a 2x2 grid made with the demo model (the examples themselves load the official weights, which never reach the
machines these were made on) on a held-out synthetic shot, each panel labelled:

- ``lvcd_colorize_lineart_video``: the reference | line art of a later frame / LVCD's colours of that frame | of a
  frame later still;
- ``lvcd_recolour_colour_video``: a frame of the colour video | its line art / a reference painted in other colours |
  LVCD's colours of the frame.

    python tests/comfyui_live/thumbnails.py [--shot 1] [--output-dir comfyui/example_workflows]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from lvcd.data.synthetic import SyntheticShot, split_seed, synth_shot
from lvcd.demo.quality import colorize_synthetic
from lvcd.io.atomic import write_bytes_atomic
from lvcd.pipeline import LVCDPipeline

PANEL = 256  # pixels a side of each of the four panels (the demo model's 64x64 frames, 4x, nearest neighbour)
LABEL = 20  # label text height in pixels (Pillow's built-in scalable font)
FRAMES = 45
EXAMPLES = Path(__file__).resolve().parents[2] / "comfyui" / "example_workflows"


def panel(image: np.ndarray, label: str) -> Image.Image:
    """An (h, w[, 3]) uint8 frame scaled to PANEL (crisp lines), its label on a white strip at the bottom."""
    picture = Image.fromarray(image).convert("RGB").resize((PANEL, PANEL), Image.Resampling.NEAREST)
    draw, font = ImageDraw.Draw(picture), ImageFont.load_default(size=LABEL)
    width = draw.textlength(label, font=font)
    draw.rectangle((0, PANEL - LABEL - 8, PANEL, PANEL), fill="white")
    draw.text(((PANEL - width) / 2, PANEL - LABEL - 5), label, fill="black", font=font)
    return picture


def grid(panels: list[Image.Image]) -> bytes:
    """Four panels, 2x2, 4-pixel white gutters, as JPEG bytes."""
    side = 2 * PANEL + 4
    sheet = Image.new("RGB", (side, side), "white")
    for index, picture in enumerate(panels):
        sheet.paste(picture, ((index % 2) * (PANEL + 4), (index // 2) * (PANEL + 4)))
    import io

    buffer = io.BytesIO()
    sheet.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def recoloured(shot: SyntheticShot, seed: int) -> SyntheticShot:
    """The same shot painted in other colours (each region's colour moved to another region); lines kept."""
    rng = np.random.default_rng(seed)
    palette = shot.palette[rng.permutation(len(shot.palette))]
    frames = np.where(shot.line_mask[..., None], shot.frames, palette[shot.labels])
    return SyntheticShot(shot.seed, frames.astype(np.uint8), shot.lineart, shot.labels, palette)


def uint8(frames) -> np.ndarray:
    return (frames.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shot", type=int, default=1, help="held-out synthetic shot (1: what the pack ships)")
    parser.add_argument("--output-dir", type=Path, default=EXAMPLES)
    args = parser.parse_args()
    pipe = LVCDPipeline.from_pretrained("demo")
    shot = synth_shot(split_seed("heldout", args.shot), FRAMES, tuple(pipe.config.train_size_hw))
    later, last = 24, FRAMES - 1
    colours = uint8(colorize_synthetic(pipe, shot, seed=0))
    thumbnail = grid(
        [
            panel(shot.frames[0], "reference (frame 0)"),
            panel(shot.lineart[later], f"line art (frame {later})"),
            panel(colours[later], f"LVCD (frame {later})"),
            panel(colours[last], f"LVCD (frame {last})"),
        ]
    )
    write_bytes_atomic(args.output_dir / "lvcd_colorize_lineart_video.jpg", thumbnail)
    other = recoloured(shot, seed=1)
    colours = uint8(colorize_synthetic(pipe, other, seed=0))
    thumbnail = grid(
        [
            panel(shot.frames[later], f"colour video (frame {later})"),
            panel(shot.lineart[later], "its line art"),
            panel(other.frames[0], "new reference (frame 0)"),
            panel(colours[later], f"LVCD (frame {later})"),
        ]
    )
    write_bytes_atomic(args.output_dir / "lvcd_recolour_colour_video.jpg", thumbnail)


if __name__ == "__main__":
    main()
