"""Loading the official weight files (tiny analogues): strict key report, override order, dtype casting,
user-facing errors, the restricted unpickler for Lightning checkpoints, and meta-device / one-copy loading."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import TINY_CONFIG
from lvcd.errors import WeightsError
from lvcd.model import PART_PREFIXES
from lvcd.weights import LoadReport, WeightsFile, load_model

# The tiny files: 1926 tensors in the svd file (146 of them known-unused), 831 in the ckpt.
SVD_TENSORS_USED, SVD_TENSORS_UNUSED, CKPT_TENSORS = 1780, 146, 831
VAE_PREFIXES = (PART_PREFIXES["first_stage"], PART_PREFIXES["cond_encoder"])


def _is_unet_attention(key: str) -> bool:
    return key.startswith(PART_PREFIXES["unet"]) and (
        ".transformer_blocks.0.attn1." in key or ".time_stack.0.attn1." in key
    )


@pytest.fixture(scope="module")
def ckpt_state(tiny_weights) -> dict[str, torch.Tensor]:
    return torch.load(tiny_weights["lvcd"], map_location="cpu", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def svd_state(tiny_weights) -> dict[str, torch.Tensor]:
    return load_file(str(tiny_weights["svd"]))


@pytest.fixture(scope="module")
def loaded(tiny_weights) -> tuple[torch.nn.Module, LoadReport]:
    return _load(tiny_weights["svd"], tiny_weights["lvcd"])


@pytest.fixture(scope="module")
def realistic_svd(tmp_path_factory, svd_state, ckpt_state) -> pathlib.Path:
    """Like the real svd.safetensors: it also holds the 160 UNet attention tensors (with SVD values, here
    the ckpt values + 1), which lvcd.ckpt must override. The tiny fixture's svd file omits them."""
    tensors = dict(svd_state)
    tensors.update({k: v + 1.0 for k, v in ckpt_state.items() if _is_unet_attention(k)})
    path = tmp_path_factory.mktemp("realistic") / "svd.safetensors"
    save_file(tensors, str(path))
    return path


def _error(svd, lvcd, **kwargs) -> str:
    with pytest.raises(WeightsError) as info:
        load_model(svd, lvcd, config=TINY_CONFIG, **kwargs)
    return str(info.value)


def _load(svd, lvcd, **kwargs):
    """``load_model`` with the tiny config; a WeightsError becomes a one-line test failure. (Letting it propagate
    makes pytest's long traceback repr torch.load's whole-file mmap storage argument element by element: minutes.)"""
    try:
        return load_model(svd, lvcd, config=TINY_CONFIG, **kwargs)
    except WeightsError as err:
        message = f"{type(err).__name__}: {err}"
    pytest.fail(message, pytrace=False)


# ------------------------------------------------------------------------------------------------
# End to end
# ------------------------------------------------------------------------------------------------


def test_load_reports_every_tensor(loaded, tiny_weights):
    model, report = loaded
    assert report.ok, report.summary()
    assert report.loaded == {str(tiny_weights["svd"]): SVD_TENSORS_USED, str(tiny_weights["lvcd"]): CKPT_TENSORS}
    assert len(report.ignored) == SVD_TENSORS_UNUSED
    assert not (report.missing or report.unexpected or report.shape_mismatch)
    assert len(model.state_dict()) == SVD_TENSORS_USED + CKPT_TENSORS
    assert not model.training
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        assert tensor.device == torch.device("cpu"), name
        assert not tensor.requires_grad, name


def test_loaded_values_equal_the_files(loaded, svd_state, ckpt_state):
    model, _ = loaded
    state = model.state_dict()
    for key, tensor in state.items():
        expected = ckpt_state[key] if key in ckpt_state else svd_state[key]
        assert torch.equal(tensor, expected), key
    attention = [k for k in state if _is_unet_attention(k)]
    assert len(attention) == 160 and all(k in ckpt_state for k in attention)


def test_lvcd_ckpt_overrides_the_svd_attention(realistic_svd, tiny_weights, ckpt_state):
    """The real svd.safetensors holds the 160 attention tensors too; the ckpt's values must win (official order)."""
    model, report = _load(realistic_svd, tiny_weights["lvcd"])
    assert report.ok
    assert report.loaded[str(realistic_svd)] == SVD_TENSORS_USED
    assert report.loaded[str(tiny_weights["lvcd"])] == CKPT_TENSORS
    state = model.state_dict()
    attention = [k for k in ckpt_state if _is_unet_attention(k)]
    assert len(attention) == 160
    for key in attention:
        assert torch.equal(state[key], ckpt_state[key]), key


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_dtype_cast_keeps_the_vae_in_fp32(tiny_weights, svd_state, ckpt_state, dtype):
    model, report = _load(tiny_weights["svd"], tiny_weights["lvcd"], dtype=dtype)
    assert report.ok
    seen = set()
    for key, tensor in model.state_dict().items():
        part = next(p for p, prefix in PART_PREFIXES.items() if key.startswith(prefix))
        seen.add(part)
        expected_dtype = torch.float32 if key.startswith(VAE_PREFIXES) else dtype
        assert tensor.dtype == expected_dtype, key
        source = ckpt_state[key] if key in ckpt_state else svd_state[key]
        assert torch.equal(tensor, source.to(expected_dtype)), key
    assert seen == set(PART_PREFIXES)


def test_vae_dtype_can_be_lowered_too(tiny_weights):
    model, _ = _load(tiny_weights["svd"], tiny_weights["lvcd"], dtype=torch.float16, vae_dtype=torch.bfloat16)
    assert next(model.first_stage_model.parameters()).dtype == torch.bfloat16
    assert next(model.cond_encoder.parameters()).dtype == torch.bfloat16
    assert next(model.control_model.parameters()).dtype == torch.float16


# ------------------------------------------------------------------------------------------------
# User errors: each names the file and says what to do
# ------------------------------------------------------------------------------------------------


def test_swapped_files(tiny_weights):
    message = _error(tiny_weights["lvcd"], tiny_weights["svd"])
    assert "swapped" in message
    assert f"--svd {tiny_weights['svd']} --lvcd {tiny_weights['lvcd']}" in message


def test_ckpt_given_as_svd_alone(tiny_weights):
    message = _error(tiny_weights["lvcd"], None)
    assert str(tiny_weights["lvcd"]) in message and "where svd.safetensors was expected" in message


def test_svd_given_as_lvcd(tiny_weights):
    message = _error(tiny_weights["svd"], tiny_weights["svd"])
    assert "no ControlNet weights" in message and "lvcd.ckpt" in message and "huggingface.co/luckyhzt" in message


@pytest.mark.parametrize("role", ["svd", "lvcd"])
def test_missing_file(tmp_path, tiny_weights, role):
    absent = tmp_path / ("svd.safetensors" if role == "svd" else "lvcd.ckpt")
    args = (absent, tiny_weights["lvcd"]) if role == "svd" else (tiny_weights["svd"], absent)
    message = _error(*args)
    assert str(absent) in message and "does not exist" in message
    assert (
        "stabilityai/stable-video-diffusion-img2vid" if role == "svd" else "luckyhzt/lvcd_pretrained_models"
    ) in message


def test_folder_instead_of_file(tmp_path, tiny_weights):
    message = _error(tmp_path, tiny_weights["lvcd"])
    assert str(tmp_path) in message and "folder" in message


def _truncate(source: pathlib.Path, target: pathlib.Path) -> pathlib.Path:
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


def test_truncated_safetensors(tmp_path, tiny_weights):
    broken = _truncate(tiny_weights["svd"], tmp_path / "svd.safetensors")
    message = _error(broken, tiny_weights["lvcd"])
    assert str(broken) in message and "truncated or corrupt" in message and "download it again" in message


def test_truncated_ckpt(tmp_path, tiny_weights):
    broken = _truncate(tiny_weights["lvcd"], tmp_path / "lvcd.ckpt")
    message = _error(tiny_weights["svd"], broken)
    assert str(broken) in message and "truncated or corrupt" in message and "download it again" in message


@pytest.mark.parametrize("name", ["svd.safetensors", "lvcd.ckpt"])
def test_random_bytes(tmp_path, tiny_weights, name):
    garbage = tmp_path / name
    garbage.write_bytes(
        torch.randint(0, 256, (65536,), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)).numpy().tobytes()
    )
    args = (garbage, tiny_weights["lvcd"]) if name.startswith("svd") else (tiny_weights["svd"], garbage)
    message = _error(*args)
    assert str(garbage) in message and "corrupt" in message and "download it again" in message


def test_unrelated_model(tmp_path, tiny_weights):
    other = tmp_path / "bert.safetensors"
    save_file({"encoder.layer.0.weight": torch.zeros(4, 4), "embeddings.word.weight": torch.zeros(8, 4)}, str(other))
    message = _error(other, tiny_weights["lvcd"])
    assert str(other) in message and "not an SVD/LVCD checkpoint" in message and "encoder" in message


def test_other_unet_of_wrong_shapes(tmp_path, tiny_weights):
    other = tmp_path / "other_unet.safetensors"
    save_file(
        {
            "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(7, 8, 3, 3),
            "model.diffusion_model.out.2.bias": torch.zeros(9),
        },
        str(other),
    )
    message = _error(other, tiny_weights["lvcd"])
    assert str(other) in message and "do not fit the 'tiny_config' model" in message
    assert "of another shape (e.g. model.diffusion_model.input_blocks.0.0.weight: (7, 8, 3, 3) in the file" in message
    assert "missing from the files" in message and "--config" in message
    assert "\n" not in message  # one line, however many tensors differ (it listed up to 17 lines)


def test_files_carrying_another_config_say_to_leave_config_out(tmp_path):
    """A file of ours carries its model's config; forcing another one says so instead of listing tensors."""
    from lvcd.demo import demo_weights_path

    with pytest.raises(WeightsError) as info:
        load_model(demo_weights_path(), config=TINY_CONFIG, device="meta")
    message = str(info.value)
    assert "do not fit the 'tiny_config' model" in message and "of another shape" in message
    assert "carry the config of their own model ('lvcd-demo'): leave --config out" in message


def test_svd_only_says_the_controlnet_is_missing(realistic_svd):
    message = _error(realistic_svd, None)
    assert "ControlNet weights are missing" in message and "pass lvcd.ckpt" in message
    assert "luckyhzt/lvcd_pretrained_models" in message


def test_svd_only_without_attention_tensors_says_the_controlnet_is_missing(tiny_weights):
    message = _error(tiny_weights["svd"], None)
    assert "ControlNet weights are missing" in message and "pass lvcd.ckpt" in message


def test_lvcd_only_says_svd_is_missing(tiny_weights):
    message = _error(None, tiny_weights["lvcd"])
    assert "svd.safetensors" in message and "stabilityai/stable-video-diffusion-img2vid" in message


def test_no_files_at_all():
    assert "No weights given" in _error(None, None)


def test_extra_key_in_lvcd_file_is_reported(tmp_path, tiny_weights, ckpt_state):
    extra = tmp_path / "lvcd_extra.ckpt"
    torch.save({"state_dict": {**ckpt_state, "control_model.extra_block.weight": torch.zeros(3)}}, extra)
    message = _error(tiny_weights["svd"], extra)
    assert "1 unknown to the model (e.g. control_model.extra_block.weight (lvcd_extra.ckpt))" in message

    model, report = _load(tiny_weights["svd"], extra, strict=False)
    assert not report.ok and report.unexpected == ["control_model.extra_block.weight (lvcd_extra.ckpt)"]
    assert report.loaded[str(extra)] == CKPT_TENSORS


def test_wrong_shape_is_reported(tmp_path, tiny_weights, ckpt_state):
    key = "control_model.zero_convs.0.0.weight"
    wrong = tmp_path / "lvcd_wrong_shape.ckpt"
    torch.save({"state_dict": {**ckpt_state, key: torch.zeros(3, 3)}}, wrong)
    message = _error(tiny_weights["svd"], wrong)
    assert (
        f"1 of another shape (e.g. {key}: (3, 3) in the file, {tuple(ckpt_state[key].shape)} in the model)" in message
    )


def test_wrong_shape_with_strict_false_is_reported_not_raised(tmp_path, tiny_weights, ckpt_state):
    key = "control_model.zero_convs.0.0.weight"
    wrong = tmp_path / "lvcd_wrong_shape.ckpt"
    torch.save({"state_dict": {**ckpt_state, key: torch.zeros(3, 3)}}, wrong)
    try:
        model, report = load_model(tiny_weights["svd"], wrong, config=TINY_CONFIG, strict=False)
    except RuntimeError as err:
        message = f"{type(err).__name__}: {str(err)[:300]}"
    else:
        message = None
    if message:
        pytest.fail(message, pytrace=False)
    assert [k for k, _, _ in report.shape_mismatch] == [key]
    tensor = model.state_dict()[key]
    assert tensor.shape == ckpt_state[key].shape and tensor.device.type == "cpu"


def test_plain_state_dict_ckpt_loads(tmp_path, tiny_weights, ckpt_state):
    """A ckpt holding the state dict itself (no 'state_dict' wrapper) is accepted too."""
    plain = tmp_path / "plain.ckpt"
    torch.save(ckpt_state, plain)
    _, report = _load(tiny_weights["svd"], plain)
    assert report.ok and report.loaded[str(plain)] == CKPT_TENSORS


def test_legacy_format_ckpt_loads(tmp_path, tiny_weights, ckpt_state):
    legacy = tmp_path / "legacy.ckpt"
    torch.save({"state_dict": ckpt_state}, legacy, _use_new_zipfile_serialization=False)
    _, report = _load(tiny_weights["svd"], legacy)
    assert report.ok


# ------------------------------------------------------------------------------------------------
# Lightning checkpoints: pickled objects beyond tensors never run
# ------------------------------------------------------------------------------------------------


def _create_marker(path: str) -> None:
    pathlib.Path(path).touch()


class HyperParameters:
    """A plain object as Lightning pickles hyper-parameters (no custom reduce: NEWOBJ + BUILD)."""

    def __init__(self):
        self.lr = 1e-5
        self.name = "lvcd"


class RunsFunction:
    """Unpickling calls a module-level function of this test module (GLOBAL + REDUCE)."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (_create_marker, (str(self.marker),))


class RunsMethod:
    """Unpickling calls ``pathlib.Path.touch`` (protocol 2 pickles it as getattr(Path, 'touch'), then REDUCE)."""

    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def _lightning_ckpt(path: pathlib.Path, state: dict, hyper_parameters) -> pathlib.Path:
    torch.save(
        {
            "state_dict": state,
            "hyper_parameters": hyper_parameters,
            "callbacks": {"ModelCheckpoint{'monitor': None}": {"best_model_path": "", "kth": [HyperParameters()]}},
            "epoch": 3,
            "global_step": 1200,
            "optimizer_states": [{"state": {0: {"exp_avg": torch.zeros(2)}}, "param_groups": [{"lr": 1e-5}]}],
        },
        path,
    )
    return path


def _assert_state_intact(model, ckpt_state):
    state = model.state_dict()
    for key, tensor in ckpt_state.items():
        assert torch.equal(state[key], tensor), key


def test_lightning_checkpoint_with_objects_loads(tmp_path, tiny_weights, ckpt_state):
    ckpt = _lightning_ckpt(tmp_path / "lightning.ckpt", ckpt_state, HyperParameters())
    with pytest.raises(Exception, match="Weights only load failed"):  # the restricted path is really exercised
        torch.load(ckpt, weights_only=True)
    model, report = _load(tiny_weights["svd"], ckpt)
    assert report.ok and report.loaded[str(ckpt)] == CKPT_TENSORS
    _assert_state_intact(model, ckpt_state)


def test_pickled_function_call_is_refused_and_never_runs(tmp_path, tiny_weights, ckpt_state):
    marker = tmp_path / "pwned"
    ckpt = _lightning_ckpt(tmp_path / "evil.ckpt", ckpt_state, RunsFunction(marker))
    with pytest.raises(WeightsError, match="not a plain checkpoint"):
        load_model(tiny_weights["svd"], ckpt, config=TINY_CONFIG)
    assert not marker.exists()
    # Control: an unrestricted unpickler does run it, so the test would notice a regression.
    torch.load(ckpt, weights_only=False)
    assert marker.exists()


def test_pickled_method_call_is_refused_and_never_runs(tmp_path, tiny_weights, ckpt_state):
    marker = tmp_path / "pwned"
    ckpt = _lightning_ckpt(tmp_path / "evil.ckpt", ckpt_state, RunsMethod(marker))
    with pytest.raises(WeightsError, match="not a plain checkpoint"):
        load_model(tiny_weights["svd"], ckpt, config=TINY_CONFIG)
    assert not marker.exists()
    torch.load(ckpt, weights_only=False)
    assert marker.exists()


# ------------------------------------------------------------------------------------------------
# Meta build and one copy of the weights
# ------------------------------------------------------------------------------------------------

_INIT_FUNCTIONS = (
    "kaiming_uniform_",
    "kaiming_normal_",
    "uniform_",
    "normal_",
    "trunc_normal_",
    "xavier_uniform_",
    "ones_",
    "zeros_",
    "constant_",
)


def test_model_is_built_on_meta_and_filled_with_the_read_tensors(monkeypatch, tiny_weights):
    """No random init of real memory (the model is built on the meta device), and every parameter IS the tensor
    the reader returned (fp32 -> fp32 on CPU: no copy at all after reading)."""
    real_init_calls = []
    for name in _INIT_FUNCTIONS:
        original = getattr(torch.nn.init, name)

        def counting(tensor, *args, _original=original, _name=name, **kwargs):
            if tensor.device.type != "meta":
                real_init_calls.append(_name)
            return _original(tensor, *args, **kwargs)

        monkeypatch.setattr(torch.nn.init, name, counting)

    read = {}
    original_get = WeightsFile.get

    def recording_get(self, key):
        tensor = original_get(self, key)
        read[key] = tensor
        return tensor

    monkeypatch.setattr(WeightsFile, "get", recording_get)

    model, report = _load(tiny_weights["svd"], tiny_weights["lvcd"])
    assert report.ok
    assert real_init_calls == []
    state = model.state_dict()
    assert set(read) == set(state)
    for key, tensor in state.items():
        assert tensor.data_ptr() == read[key].data_ptr(), f"{key} was copied after reading"

    # Control: the patched init functions do see a build on a real device.
    from lvcd.config import get_config
    from lvcd.model import LVCDModel

    LVCDModel(get_config(TINY_CONFIG), parts=("controlnet",))
    assert real_init_calls


_PEAK_RSS_SCRIPT = textwrap.dedent(
    """
    import json, sys, torch
    from lvcd.config import get_config
    from lvcd.model import LVCDModel
    from lvcd.weights import load_model

    def status():
        fields = {}
        with open("/proc/self/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    fields[key] = int(value.split()[0]) * 1024
        return fields

    svd, lvcd, config = sys.argv[1:4]
    with torch.device("meta"):
        LVCDModel(get_config(config))  # warm up imports and lazy inits outside the measurement
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
    before = status()
    model, report = load_model(svd, lvcd, config=config)
    touched = sum(float(t.float().sum()) for t in model.state_dict().values())  # fault in every page
    after = status()
    weights = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    print(json.dumps({"ok": report.ok, "peak_extra": after["VmHWM"] - before["VmRSS"], "weights": weights}))
    """
)


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc to reset and read peak RSS")
def test_peak_memory_is_about_one_copy(tiny_weights):
    """Peak RSS growth while loading (and touching every weight) stays under 1.6x the weights' size.

    Measured in a fresh process: VmHWM reset via /proc/self/clear_refs, then load. Mapped file pages count in RSS,
    so this also catches a reader that keeps its own copy beside the model's. Measured: about 1.07x."""
    result = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS_SCRIPT, str(tiny_weights["svd"]), str(tiny_weights["lvcd"]), str(TINY_CONFIG)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    if result.returncode != 0 and "clear_refs" in result.stderr:
        pytest.skip(f"cannot reset peak RSS here: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, result.stderr
    measured = json.loads(result.stdout.strip().splitlines()[-1])
    assert measured["ok"]
    ratio = measured["peak_extra"] / measured["weights"]
    assert ratio < 1.6, (
        f"peak extra RSS {measured['peak_extra']:,} B = {ratio:.2f}x the weights ({measured['weights']:,} B)"
    )


def _with_model_config(tmp_path, name: str, config_text: str) -> pathlib.Path:
    """The demo's whole-model file with its ``lvcd_model_config`` metadata replaced."""
    from safetensors import safe_open

    from lvcd.demo import demo_weights_path
    from lvcd.weights import MODEL_CONFIG_KEY

    with safe_open(str(demo_weights_path()), "pt") as source:
        tensors = {key: source.get_tensor(key) for key in source.keys()}
        metadata = dict(source.metadata())
    path = tmp_path / name
    save_file(tensors, str(path), metadata={**metadata, MODEL_CONFIG_KEY: config_text})
    return path


def _demo_config_with(**unet) -> str:
    from lvcd.demo import demo_weights_path
    from lvcd.weights import MODEL_CONFIG_KEY

    doc = json.loads(WeightsFile(demo_weights_path(), "demo").metadata()[MODEL_CONFIG_KEY])
    doc["unet"].update(unet)
    return json.dumps(doc)


BAD_MODEL_CONFIGS = {
    "a JSON array": ("[1]", "a JSON array, expected an object"),
    "a JSON string": ('"x"', "a JSON string, expected an object"),
    "a negative channel count": (None, "unet.model_channels is -8, expected a positive whole number"),
    "a list of sizes with a string": (None, "unet.channel_mult is [1, 'x'], expected a list of one or more positive"),
    "JSON nested too deep": ("[" * 100_000 + "]" * 100_000, "pass --config"),
}


@pytest.mark.parametrize("case", list(BAD_MODEL_CONFIGS))
def test_a_malformed_carried_model_config_is_one_line_naming_the_file_and_config(tmp_path, case):
    """A file whose metadata carries a model config that is not an object, or has impossible sizes, is refused with
    one WeightsError naming it, by the loader, ``LVCDPipeline.from_single_file`` and ``lvcd convert`` (was an
    AttributeError or a RuntimeError from building a tensor of negative size)."""
    from typer.testing import CliRunner

    from lvcd.cli import app
    from lvcd.demo import demo_weights_path
    from lvcd.pipeline import LVCDPipeline

    text, expected = BAD_MODEL_CONFIGS[case]
    if text is None:
        text = _demo_config_with(model_channels=-8) if "negative" in case else _demo_config_with(channel_mult=[1, "x"])
    path = _with_model_config(tmp_path, "bad.safetensors", text)
    for attempt in (lambda: load_model(path, device="meta"), lambda: LVCDPipeline.from_single_file(path)):
        with pytest.raises(WeightsError) as info:
            attempt()
        message = str(info.value)
        assert message.startswith(f"{path} carries an unreadable model config") and expected in message
        assert "pass --config" in message and "\n" not in message and len(message) < 400
    result = CliRunner().invoke(
        app,
        ["convert", "--svd", str(path), "--lvcd", str(demo_weights_path()), "-o", str(tmp_path / "out.safetensors")],
    )
    assert result.exit_code == 2 and not isinstance(result.exception, (AttributeError, RuntimeError))
    assert f"error: {path} carries an unreadable model config" in result.output and "pass --config" in result.output
    # --config bypasses the carried config: the file loads
    model, report = load_model(path, config=_config_file(tmp_path), device="meta")
    assert report.ok


def _config_file(tmp_path) -> pathlib.Path:
    from lvcd.demo import demo_weights_path
    from lvcd.weights import MODEL_CONFIG_KEY

    path = tmp_path / "demo_config.json"
    path.write_text(WeightsFile(demo_weights_path(), "demo").metadata()[MODEL_CONFIG_KEY])
    return path
