"""The informative-drawings generator: official layout, loading, call semantics and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from lvcd.errors import InputError, WeightsError
from lvcd.lineart import (
    InformativeDrawingsGenerator,
    LineartExtractor,
    get_extractor,
    load_informative_drawings,
    resolve_weights,
)

# From the official Generator(3, 1, n_residual_blocks=3) of ControlNet-1.1 annotator/lineart (= informative-drawings):
# model0 = [ReflPad3, Conv 3->64 k7, IN, ReLU]; model1 = [Conv 64->128 s2, IN, ReLU, Conv 128->256 s2, IN, ReLU];
# model2 = 3 x ResidualBlock(conv_block = [ReflPad1, Conv, IN, ReLU, ReflPad1, Conv, IN]);
# model3 = [ConvT 256->128, IN, ReLU, ConvT 128->64, IN, ReLU]; model4 = [ReflPad3, Conv 64->1 k7, Sigmoid].
# InstanceNorm2d(affine=False, track_running_stats=False) has no state. ConvTranspose weights are (in, out, k, k).
OFFICIAL_KEYS = {
    "model0.1.weight": (64, 3, 7, 7),
    "model0.1.bias": (64,),
    "model1.0.weight": (128, 64, 3, 3),
    "model1.0.bias": (128,),
    "model1.3.weight": (256, 128, 3, 3),
    "model1.3.bias": (256,),
    **{
        f"model2.{block}.conv_block.{index}.{kind}": (256, 256, 3, 3) if kind == "weight" else (256,)
        for block in range(3)
        for index in (1, 5)
        for kind in ("weight", "bias")
    },
    "model3.0.weight": (256, 128, 3, 3),
    "model3.0.bias": (128,),
    "model3.3.weight": (128, 64, 3, 3),
    "model3.3.bias": (64,),
    "model4.1.weight": (1, 64, 7, 7),
    "model4.1.bias": (1,),
}
OFFICIAL_PARAMETER_COUNT = 4_290_945  # x 4 bytes = 17.2 MB, the size of sk_model.pth


@pytest.fixture(scope="module")
def generator() -> InformativeDrawingsGenerator:
    torch.manual_seed(0)
    return InformativeDrawingsGenerator().eval()


@pytest.fixture(scope="module")
def weights_path(generator, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "sk_model.pth"
    torch.save(generator.state_dict(), path)  # the official files are plain state dicts saved this way
    return path


@pytest.fixture(scope="module")
def extractor(weights_path) -> LineartExtractor:
    return get_extractor("informative", weights=weights_path)


def _frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A flat-colour drawing: a few rectangles on a light background, with a little noise."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), (235, 225, 210), np.float64)
    for _ in range(4):
        top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
        image[top : top + height // 3, left : left + width // 3] = rng.integers(0, 256, 3)
    return np.clip(image + rng.normal(0, 2, image.shape), 0, 255).astype(np.uint8)


def _official_call(model: torch.nn.Module, image: np.ndarray) -> np.ndarray:
    """The official LineartDetector.__call__ (spec §6), written out step by step."""
    with torch.no_grad():
        tensor = torch.from_numpy(image).float() / 255.0
        line = model(tensor.permute(2, 0, 1)[None])[0][0]
        return (line.numpy() * 255.0).clip(0, 255).astype(np.uint8)


def test_state_dict_matches_official_layout(generator):
    state = generator.state_dict()
    assert {key: tuple(value.shape) for key, value in state.items()} == OFFICIAL_KEYS
    assert sum(value.numel() for value in state.values()) == OFFICIAL_PARAMETER_COUNT
    assert list(generator.buffers()) == []


def test_pth_round_trip_loads_strictly(generator, weights_path):
    loaded = load_informative_drawings(weights_path)
    assert not loaded.training
    for key, value in generator.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_accepts_module_prefix_nested_state_dict_and_safetensors(generator, tmp_path):
    state = generator.state_dict()
    prefixed = tmp_path / "prefixed.pth"
    torch.save({"state_dict": {f"module.{key}": value for key, value in state.items()}}, prefixed)
    as_safetensors = tmp_path / "sk_model.safetensors"
    save_file({key: value.contiguous() for key, value in state.items()}, str(as_safetensors))
    misnamed = tmp_path / "safetensors_named.pth"
    misnamed.write_bytes(as_safetensors.read_bytes())
    half = tmp_path / "half.pth"
    torch.save({key: value.half() for key, value in state.items()}, half)
    for path in (prefixed, as_safetensors, misnamed, half):
        loaded = load_informative_drawings(path).state_dict()
        assert all(loaded[key].dtype == torch.float32 and loaded[key].device.type == "cpu" for key in loaded), path
        assert torch.allclose(loaded["model4.1.weight"], state["model4.1.weight"], atol=1e-3), path


def test_output_contract_and_official_equality_at_multiples_of_4(generator, extractor):
    image = _frame(32, 48)
    lines = extractor(image)
    assert lines.dtype == np.uint8 and lines.shape == (32, 48)
    # No padding path at multiples of 4: bit-identical to the official call on the bare network.
    np.testing.assert_array_equal(lines, _official_call(generator, image))
    assert extractor.method == "informative" and extractor.in_distribution and extractor.warning is None


@pytest.mark.parametrize("size", [(37, 53), (41, 30), (5, 3), (1, 1)])
def test_any_frame_size_keeps_its_size(extractor, size):
    image = _frame(max(size[0], 2), max(size[1], 2))[: size[0], : size[1]]
    lines = extractor(image)
    assert lines.shape == size and lines.dtype == np.uint8


def test_bare_network_refuses_non_multiples_of_4(generator):
    with pytest.raises(ValueError, match="multiples of 4"):
        generator(torch.rand(1, 3, 30, 32))


def test_batch_matches_single_calls(extractor):
    images = [_frame(21, 27, seed) for seed in range(3)]
    frames = torch.stack([torch.from_numpy(image).permute(2, 0, 1) for image in images]).float() / 255.0
    extractor.chunk_size = 2  # exercise chunking
    lines = extractor.batch(frames)
    assert lines.shape == (3, 1, 21, 27) and lines.dtype == torch.float32
    assert 0.0 <= lines.min() and lines.max() <= 1.0
    for index, image in enumerate(images):
        single = extractor(image).astype(np.int16)
        assert np.abs((lines[index, 0].numpy() * 255.0).astype(np.int16) - single).max() <= 1


def test_bad_inputs_raise_input_error(extractor):
    with pytest.raises(InputError, match="HxWx3 uint8"):
        extractor(np.zeros((8, 8), np.uint8))
    with pytest.raises(InputError, match="HxWx3 uint8"):
        extractor(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        extractor.batch(torch.full((1, 3, 8, 8), 255.0))
    with pytest.raises(InputError, match="method"):
        get_extractor("canny")


def test_missing_file_says_where_to_download(tmp_path):
    with pytest.raises(WeightsError, match=r"does not exist.*huggingface\.co/lllyasviel/Annotators"):
        load_informative_drawings(tmp_path / "sk_model.pth")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<html>404 Not Found</html>\n", r"not a readable line-art weights file \(an HTML page"),
        ("model0.1.weight = 1\n", r"not a readable line-art weights file \(not a weights format"),
        ("version https://git-lfs.github.com/spec/v1\noid sha256:00\n", "Git LFS pointer"),
    ],
)
def test_text_file_named_pth(tmp_path, text, expected):
    path = tmp_path / "sk_model.pth"
    path.write_text(text)
    with pytest.raises(WeightsError, match=expected + ".*lllyasviel/Annotators"):
        load_informative_drawings(path)


def test_truncated_files(generator, weights_path, tmp_path):
    path = tmp_path / "sk_model.pth"
    path.write_bytes(weights_path.read_bytes()[:100_000])
    with pytest.raises(WeightsError, match="not a readable PyTorch weights file.*truncated or corrupt"):
        load_informative_drawings(path)
    legacy = tmp_path / "legacy.pth"
    torch.save(generator.state_dict(), legacy, _use_new_zipfile_serialization=False)
    legacy.write_bytes(legacy.read_bytes()[:5_000])
    with pytest.raises(WeightsError, match="truncated or corrupt"):
        load_informative_drawings(legacy)
    as_safetensors = tmp_path / "sk_model.safetensors"
    save_file({key: value.contiguous() for key, value in generator.state_dict().items()}, str(as_safetensors))
    as_safetensors.write_bytes(as_safetensors.read_bytes()[:5_000])
    with pytest.raises(WeightsError, match="not a readable safetensors file"):
        load_informative_drawings(as_safetensors)


class _RunsOnLoad:
    """Unpickling this would create ``marker`` (GLOBAL + REDUCE of a function)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickled_objects_never_run_and_a_file_without_tensors_is_refused(tmp_path):
    path, marker = tmp_path / "sk_model.pth", tmp_path / "pwned"
    torch.save({"model0.1.weight": _RunsOnLoad(marker)}, path)
    with pytest.raises(WeightsError, match="not a plain checkpoint.*lllyasviel/Annotators"):
        load_informative_drawings(path)
    assert not marker.exists()


def test_state_dict_of_another_model(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Linear(8, 2)).state_dict(), path)
    with pytest.raises(WeightsError, match=r"another model.*4 tensors.*24 missing.*4 unexpected"):
        load_informative_drawings(path)
    lvcd_like = tmp_path / "lvcd.pth"
    torch.save({"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(1)}, lvcd_like)
    with pytest.raises(WeightsError, match="diffusion model"):
        load_informative_drawings(lvcd_like)


def test_wrong_shapes_are_reported(generator, tmp_path):
    state = dict(generator.state_dict())
    state["model4.1.weight"] = torch.zeros(3, 64, 7, 7)  # e.g. an RGB-output variant
    path = tmp_path / "sk_model.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError, match=r"shape mismatch model4\.1\.weight: file \(3, 64, 7, 7\)"):
        load_informative_drawings(path)


@pytest.fixture()
def no_default_weights(tmp_path, monkeypatch):
    """Isolate weight lookup from this machine: empty cache dir, no env var, no Hugging Face cache."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("LVCD_LINEART_WEIGHTS", raising=False)
    monkeypatch.setattr("lvcd.lineart.extractor._huggingface_cached", lambda filename: None)
    return tmp_path / "cache" / "lvcd" / "lineart"


def test_missing_weights_explain_download_and_xdog(no_default_weights):
    with pytest.raises(WeightsError) as info:
        get_extractor("informative")
    message = str(info.value)
    for needed in (
        "sk_model.pth",
        "huggingface.co/lllyasviel/Annotators",
        "pass weights=PATH",  # the Python keyword: no command's flag reaches a Python caller
        "line-art method 'xdog' works",
        "training distribution",
    ):
        assert needed in message
    assert "--weights" not in message and "--method" not in message
    with pytest.raises(WeightsError, match="sk_model2.pth"):
        get_extractor("informative-coarse")
    # each command's own option names (evaluate's here), in the error and in xdog's warning
    options = ("--sketch-weights", "--sketch-method")
    with pytest.raises(WeightsError, match="pass --sketch-weights PATH .* --sketch-method xdog works"):
        get_extractor("informative", options=options)
    assert "Use --sketch-method informative" in get_extractor("xdog", options=options).warning


def test_weight_lookup_order(weights_path, no_default_weights, monkeypatch):
    # default cache folder
    no_default_weights.mkdir(parents=True)
    (no_default_weights / "sk_model2.pth").write_bytes(weights_path.read_bytes())
    assert resolve_weights("informative-coarse") == no_default_weights / "sk_model2.pth"
    coarse = get_extractor("informative-coarse")
    assert coarse.method == "informative-coarse" and not coarse.in_distribution and "sk_model2" in coarse.warning
    # the environment variable, as a folder or a file, wins over the cache folder
    monkeypatch.setenv("LVCD_LINEART_WEIGHTS", str(weights_path.parent))
    assert resolve_weights("informative") == weights_path
    monkeypatch.setenv("LVCD_LINEART_WEIGHTS", str(weights_path.parent / "nope.pth"))
    with pytest.raises(WeightsError, match="LVCD_LINEART_WEIGHTS"):
        resolve_weights("informative")
    # an explicit argument wins over everything
    assert resolve_weights("informative", weights_path) == weights_path
