"""Fine-tuning LVCD (spec §4): the loss, the trainable set, the config, the accelerate loop and its checkpoints.

>>> from lvcd.train import load_train_config, train          # doctest: +SKIP
>>> result = train(load_train_config("examples/train_config.toml"))   # doctest: +SKIP
"""

from lvcd.train.config import TrainConfig, TrainConfigError, load_train_config
from lvcd.train.loss import LossOutput, build_conditioning, diffusion_loss, draw_sigma_and_noise
from lvcd.train.trainable import (
    enable_gradient_checkpointing,
    init_controlnet_from_unet,
    is_trainable_key,
    set_trainable,
    trainable_parameters,
)

__all__ = [
    "LossOutput",
    "TrainConfig",
    "TrainConfigError",
    "TrainResult",
    "build_conditioning",
    "diffusion_loss",
    "draw_sigma_and_noise",
    "enable_gradient_checkpointing",
    "init_controlnet_from_unet",
    "is_trainable_key",
    "load_train_config",
    "set_trainable",
    "train",
    "trainable_parameters",
]


def __getattr__(name: str):
    # The loop imports accelerate lazily: `import lvcd.train` works without the [train] extra.
    if name in ("train", "TrainResult"):
        from lvcd.train import loop

        return getattr(loop, name)
    raise AttributeError(name)
