"""The demo model: a small LVCD trained from scratch by lvcd's own code on synthetic cartoon shots.

It ships inside the package (``lvcd-demo.safetensors``, fp16, model config in its metadata; see ``MODEL_CARD.md``
beside this file), so a fresh install can colorize something real without the 12 GB official weights:

    >>> pipe = LVCDPipeline.from_pretrained("demo")                       # doctest: +SKIP
    >>> run_demo("demo.mp4")                                              # doctest: +SKIP   (= `lvcd demo -o demo.mp4`)

It knows synthetic flat-colour cartoons at 64x64 only (examples/demo/ has the recipe that made it).
"""

from __future__ import annotations

from pathlib import Path

from lvcd.errors import WeightsError

DEMO_NAME = "demo"
DEMO_WEIGHTS = Path(__file__).with_name("lvcd-demo.safetensors")
MODEL_CARD = Path(__file__).with_name("MODEL_CARD.md")


def demo_weights_path() -> Path:
    """The packaged demo weights (one whole-model safetensors file)."""
    if not DEMO_WEIGHTS.is_file():
        raise WeightsError(
            f"The demo weights {DEMO_WEIGHTS} are missing from this install: reinstall lvcd "
            "(`pip install -e .` from a full clone), or train them with the recipe in examples/demo/README.md."
        )
    return DEMO_WEIGHTS
