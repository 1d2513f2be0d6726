"""`lvcd convert` end to end through the typer app (in process, CliRunner), on the tiny official-format files."""

from __future__ import annotations

import pathlib

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from typer.testing import CliRunner

from conftest import TINY_CONFIG
from lvcd.cli import app
from lvcd.errors import InputError, WeightsError
from lvcd.weights import WeightsFile, load_model

runner = CliRunner()


def _convert(svd, lvcd, output, *options: str):
    args = [
        "convert",
        "--svd",
        str(svd),
        "--lvcd",
        str(lvcd),
        "-o",
        str(output),
        "--config",
        str(TINY_CONFIG),
        *options,
    ]
    return runner.invoke(app, args)


def _load(svd, lvcd, **kwargs):
    """load_model with the tiny config; a WeightsError becomes a one-line failure (see tests/test_weights.py)."""
    try:
        return load_model(svd, lvcd, config=TINY_CONFIG, **kwargs)
    except WeightsError as err:
        message = str(err)
    pytest.fail(message, pytrace=False)


@pytest.fixture(scope="module")
def ckpt_state(tiny_weights) -> dict[str, torch.Tensor]:
    return torch.load(tiny_weights["lvcd"], map_location="cpu", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def reference_state(tiny_weights) -> dict[str, torch.Tensor]:
    """The model's state after the official two-file load."""
    model, report = _load(tiny_weights["svd"], tiny_weights["lvcd"])
    assert report.ok
    return model.state_dict()


@pytest.fixture(scope="module")
def converted(tmp_path_factory, tiny_weights) -> dict[str, pathlib.Path]:
    out = tmp_path_factory.mktemp("converted")
    paths = {
        "lvcd": out / "lvcd.safetensors",
        "lvcd-fp16": out / "lvcd-fp16.safetensors",
        "full": out / "full.safetensors",
    }
    options = {"lvcd": (), "lvcd-fp16": ("--dtype", "fp16"), "full": ("--subset", "full")}
    for name, path in paths.items():
        result = _convert(tiny_weights["svd"], tiny_weights["lvcd"], path, *options[name])
        assert result.exit_code == 0, result.output
        assert f"Wrote {path}" in result.stdout
    return paths


def _keys_and_dtypes(path: pathlib.Path) -> dict[str, torch.dtype]:
    with safe_open(str(path), framework="pt") as f:
        return {key: f.get_slice(key).get_dtype() for key in f.keys()}


def test_lvcd_subset_holds_exactly_the_ckpt_tensors(converted, ckpt_state):
    tensors = load_file(str(converted["lvcd"]))
    assert set(tensors) == set(ckpt_state) and len(tensors) == 831
    for key, tensor in tensors.items():
        assert tensor.dtype == torch.float32
        assert torch.equal(tensor, ckpt_state[key]), key
    assert WeightsFile(converted["lvcd"], "lvcd").kind() == "lvcd"


def test_lvcd_subset_loads_in_place_of_the_ckpt(converted, tiny_weights, reference_state):
    model, report = _load(tiny_weights["svd"], converted["lvcd"])
    assert report.ok and report.loaded[str(converted["lvcd"])] == 831
    state = model.state_dict()
    assert set(state) == set(reference_state)
    for key, tensor in state.items():
        assert torch.equal(tensor, reference_state[key]), key


def test_summary_line(tmp_path, tiny_weights):
    output = tmp_path / "out.safetensors"
    result = _convert(tiny_weights["svd"], tiny_weights["lvcd"], output, "--dtype", "bf16")
    assert result.exit_code == 0, result.output
    summary = result.stdout.strip().splitlines()[-1]
    assert f"Wrote {output}: 831 tensors" in summary and "bf16" in summary and "MB" in summary
    assert "in place of lvcd.ckpt" in summary
    assert set(_keys_and_dtypes(output).values()) == {"BF16"}


def test_fp16_halves_the_size_and_loads(converted, tiny_weights, ckpt_state):
    fp32_size, fp16_size = converted["lvcd"].stat().st_size, converted["lvcd-fp16"].stat().st_size
    assert 0.49 < fp16_size / fp32_size < 0.51, (fp16_size, fp32_size)
    assert set(_keys_and_dtypes(converted["lvcd-fp16"]).values()) == {"F16"}

    model, report = _load(tiny_weights["svd"], converted["lvcd-fp16"])  # fp32 model from an fp16 file
    assert report.ok
    state = model.state_dict()
    for key, original in ckpt_state.items():
        assert state[key].dtype == torch.float32
        assert torch.equal(state[key], original.half().float()), key


def test_full_file_loads_alone_and_equals_the_two_file_load(converted, reference_state):
    assert WeightsFile(converted["full"], "svd").kind() == "full"
    model, report = _load(converted["full"], None)
    assert report.ok and report.loaded == {str(converted["full"]): len(reference_state)}
    assert report.ignored == []  # the known-unused tensors are not written
    state = model.state_dict()
    assert set(state) == set(reference_state)
    for key, tensor in state.items():
        assert torch.equal(tensor, reference_state[key]), key


def test_refuses_to_overwrite(converted, tiny_weights):
    target = converted["lvcd"]
    before = target.read_bytes()
    result = _convert(tiny_weights["svd"], tiny_weights["lvcd"], target, "--dtype", "fp16")
    assert result.exit_code == 2
    assert f"error: {target} exists; pass --overwrite" in result.stderr
    assert "Traceback" not in result.output
    assert target.read_bytes() == before


def test_overwrite_replaces(tmp_path, tiny_weights):
    target = tmp_path / "lvcd.safetensors"
    target.write_bytes(b"old")
    result = _convert(tiny_weights["svd"], tiny_weights["lvcd"], target, "--dtype", "fp16", "--overwrite")
    assert result.exit_code == 0, result.output
    assert len(_keys_and_dtypes(target)) == 831
    assert [p.name for p in tmp_path.iterdir()] == ["lvcd.safetensors"]  # no temporary file left behind


def test_a_second_convert_to_the_same_file_is_refused_while_the_first_writes(tmp_path, tiny_weights):
    """Two `lvcd convert` to one output: the second is refused (before reading the weights, and again when writing)
    instead of both spending the time and the last rename silently winning."""
    from lvcd.io.atomic import AtomicOutput
    from lvcd.weights import convert

    target = tmp_path / "lvcd.safetensors"
    first = AtomicOutput(target)  # a writer in progress: its locked temporary beside the target
    try:
        result = _convert(tiny_weights["svd"], tiny_weights["lvcd"], target)
        assert result.exit_code == 2 and "Reading" not in result.stderr
        assert f"error: --output {target} is being written by another process right now" in result.stderr
        with pytest.raises(InputError, match="being written by another process"):
            convert(tiny_weights["svd"], tiny_weights["lvcd"], target, config=TINY_CONFIG)
    finally:
        first.discard()
    assert _convert(tiny_weights["svd"], tiny_weights["lvcd"], target).exit_code == 0  # the writer gone: it works


def test_swapped_inputs_exit_2_with_the_fix(tmp_path, tiny_weights):
    output = tmp_path / "out.safetensors"
    result = _convert(tiny_weights["lvcd"], tiny_weights["svd"], output)
    assert result.exit_code == 2
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1
    assert (
        "swapped" in error_lines[0] and f"--svd {tiny_weights['svd']} --lvcd {tiny_weights['lvcd']}" in error_lines[0]
    )
    assert "Traceback" not in result.output
    assert not output.exists()


def test_missing_input_exits_2(tmp_path, tiny_weights):
    absent = tmp_path / "lvcd.ckpt"
    result = _convert(tiny_weights["svd"], absent, tmp_path / "out.safetensors")
    assert result.exit_code == 2
    assert f"error: The lvcd weights file {absent} does not exist" in result.stderr
    assert "luckyhzt/lvcd_pretrained_models" in result.stderr


def test_bad_config_exits_2(tmp_path, tiny_weights):
    args = ["convert", "--svd", str(tiny_weights["svd"]), "--lvcd", str(tiny_weights["lvcd"])]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "out.safetensors"), "--config", "no-such-preset"])
    assert result.exit_code == 2
    assert (
        "error: --config no-such-preset: Unknown config 'no-such-preset'" in result.stderr
        and "svd-lvcd" in result.stderr
    )


def test_output_folder_is_refused(tmp_path, tiny_weights):
    result = _convert(tiny_weights["svd"], tiny_weights["lvcd"], tmp_path)
    assert result.exit_code == 2
    assert "is a folder" in result.stderr


def test_output_may_not_replace_an_input(tmp_path, tiny_weights):
    svd_copy = tmp_path / "svd.safetensors"
    svd_copy.write_bytes(tiny_weights["svd"].read_bytes())
    result = _convert(svd_copy, tiny_weights["lvcd"], svd_copy, "--subset", "full", "--overwrite")
    assert result.exit_code == 2
    assert "would write onto or into --svd" in result.stderr and "never writes its inputs" in result.stderr
    assert svd_copy.read_bytes() == tiny_weights["svd"].read_bytes()


def test_listed_in_help():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0 and "convert" in result.stdout


def test_an_output_that_appears_while_converting_is_kept_without_overwrite(tmp_path, tiny_weights, monkeypatch):
    """Another process finished the same output while this one read the weights: without --overwrite it is kept."""
    import lvcd.weights

    target = tmp_path / "lvcd.safetensors"
    real_read = lvcd.weights.PendingModel.read

    def read_then_other_writer_finishes(*args, **kwargs):
        tensors = real_read(*args, **kwargs)
        target.write_bytes(b"the other process's file")
        return tensors

    monkeypatch.setattr(lvcd.weights.PendingModel, "read", read_then_other_writer_finishes)
    result = _convert(tiny_weights["svd"], tiny_weights["lvcd"], target)
    assert result.exit_code == 2 and "was created by another process while this one was writing it" in result.stderr
    assert target.read_bytes() == b"the other process's file" and [p.name for p in tmp_path.iterdir()] == [target.name]


def test_only_an_output_made_meanwhile_is_reported_as_another_process(tmp_path):
    from lvcd.weights import save_safetensors

    (tmp_path / "afile").write_text("x")
    with pytest.raises(OSError) as raised:  # a parent that is a file: the system's own error, not "another process"
        save_safetensors({"w": torch.zeros(1)}, tmp_path / "afile" / "out.safetensors", overwrite=False)
    assert not isinstance(raised.value, WeightsError)


def test_subset_lvcd_refuses_to_drop_the_trained_unet_of_a_from_scratch_checkpoint(tiny_weights, tmp_path):
    """A checkpoint of train.trainable = "all" holds the whole UNet: --subset lvcd would silently drop most of it."""
    from safetensors.torch import save_file

    from lvcd.weights import convert

    svd = load_file(str(tiny_weights["svd"]))
    unet = {key: value for key, value in svd.items() if key.startswith("model.diffusion_model.")}
    scratch = tmp_path / "ema.safetensors"
    save_file(unet, str(scratch), metadata={"lvcd_subset": "all"})
    output = tmp_path / "sub.safetensors"
    with pytest.raises(WeightsError, match=r"UNet tensors outside the lvcd subset .*'all'.*use --subset full") as err:
        convert(tiny_weights["svd"], scratch, output, config=str(TINY_CONFIG))
    assert "\n" not in str(err.value) and not output.exists()


@pytest.mark.parametrize(("name", "suggested"), [("lvcd.ckpt", "lvcd.safetensors"), ("weights", "weights.safetensors")])
def test_an_output_not_named_safetensors_is_refused_before_reading(
    tmp_path, tiny_weights, monkeypatch, name, suggested
):
    """-o lvcd.ckpt wrote a safetensors file under a pickle's name (the official code's torch.load then fails on it);
    now one line, before the weights are read, and in the library's convert too."""
    import lvcd.weights

    def no_reading(*args, **kwargs):
        raise AssertionError("the weights were read")

    monkeypatch.setattr(lvcd.weights, "open_model", no_reading)
    result = _convert(tiny_weights["svd"], tiny_weights["lvcd"], tmp_path / name)
    assert result.exit_code == 2 and "Reading" not in result.stderr, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"error: {tmp_path / name}: ") and f"must end in .safetensors (e.g. {suggested})" in line
    with pytest.raises(WeightsError, match="must end in .safetensors"):
        lvcd.weights.convert(tiny_weights["svd"], tiny_weights["lvcd"], tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def test_subset_lvcd_reads_only_the_tensors_it_writes(tmp_path, tiny_weights, ckpt_state, monkeypatch):
    """The lvcd subset's tensors all come from lvcd.ckpt: svd.safetensors (the UNet, ~6 GB of it in the official
    file) is read for its header only, not loaded whole to be dropped."""
    from lvcd.state_dict import WeightsFile as Reader

    read_from: dict[str, int] = {}
    real_get = Reader.get

    def counting_get(self, key):
        read_from[self.path.name] = read_from.get(self.path.name, 0) + 1
        return real_get(self, key)

    monkeypatch.setattr(Reader, "get", counting_get)
    output = tmp_path / "lvcd.safetensors"
    assert _convert(tiny_weights["svd"], tiny_weights["lvcd"], output).exit_code == 0
    assert read_from == {tiny_weights["lvcd"].name: len(ckpt_state)}
    assert load_file(str(output)).keys() == ckpt_state.keys()
