"""lvcd.config.config_from_dict: a config document (as our files carry it) is checked value by value."""

from __future__ import annotations

import json

import pytest

from conftest import TINY_CONFIG
from lvcd.config import PRESETS, config_from_dict, config_from_sgm_json, config_to_dict


def _doc(**changes) -> dict:
    doc = json.loads(json.dumps(config_to_dict(PRESETS["svd-lvcd"])))
    for dotted, value in changes.items():
        *path, key = dotted.split("__")
        target = doc
        for part in path:
            target = target[part]
        target[key] = value
    return doc


@pytest.mark.parametrize("config", [PRESETS["svd-lvcd"], config_from_sgm_json(TINY_CONFIG)])
def test_a_written_config_reads_back_exactly(config):
    assert config_from_dict(json.loads(json.dumps(config_to_dict(config)))) == config


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ([1], "a JSON array, expected an object"),
        ("x", "a JSON string, expected an object"),
        (None, "a JSON null, expected an object"),
        (_doc(unet=[1, 2]), "Config section 'unet' is a JSON array, expected an object"),
        (_doc(unet__model_channels=-8), "unet.model_channels is -8, expected a positive whole number"),
        (_doc(unet__model_channels=0), "unet.model_channels is 0, expected a positive whole number"),
        (_doc(unet__model_channels=2.5), "unet.model_channels is 2.5, expected a positive whole number"),
        (_doc(unet__model_channels=True), "unet.model_channels is True, expected a positive whole number"),
        (_doc(vae__ch="128"), "vae.ch is '128', expected a positive whole number"),
        (_doc(vae__ch_mult=[]), "vae.ch_mult is [], expected a list of one or more positive whole numbers"),
        (_doc(unet__channel_mult=[1, -2]), "unet.channel_mult is [1, -2], expected a list of one or more positive"),
        (_doc(unet__video_kernel_size=[3, 1]), "unet.video_kernel_size is [3, 1], expected a list of 3 positive"),
        (_doc(train_size_hw=[320]), "train_size_hw is [320], expected a list of 2 positive whole numbers"),
        (_doc(train_size_hw=320), "train_size_hw is 320, expected a list of 2 positive whole numbers"),
        (_doc(video_frames=-1), "video_frames is -1, expected a positive whole number"),
        (_doc(sampling__overlap=-1), "sampling.overlap is -1, expected a whole number, 0 or more"),
        (_doc(sampling__rho="x"), "sampling.rho is 'x', expected a finite number"),
        (_doc(clip__mlp_ratio=None), "clip.mlp_ratio is None, expected a finite number"),
        (_doc(sampling__sigma_max=10**400), "sampling.sigma_max is 1000000000000"),  # past float's range: no overflow
        (_doc(name=["a"]), "name is a JSON array, expected a string"),
        (_doc(unet__channel_mult=[1] * 999 + [-1]), "unet.channel_mult is [1, 1, 1, 1, 1, 1"),  # shown cut short
    ],
)
def test_values_of_the_wrong_type_or_impossible_sizes_are_value_errors(doc, message):
    with pytest.raises(ValueError, match="^" + r"(Not an lvcd config document|Config (value|section))") as info:
        config_from_dict(doc)
    assert message in str(info.value) and len(str(info.value)) < 200


def test_zero_is_allowed_where_it_means_something():
    config = config_from_dict(_doc(sampling__overlap=0, sampling__motion_bucket_id=0, unet__attention_resolutions=[]))
    assert config.sampling.overlap == 0 and config.unet.attention_resolutions == ()
    assert config_from_dict(_doc(sampling__p_mean=-1, sampling__rho=7)).sampling.rho == 7.0
