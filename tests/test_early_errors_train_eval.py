"""User errors of `lvcd evaluate`, `lvcd train` and `lvcd data synth | prepare` that used to surface only after a
slow step (metric networks loaded, model tensors read, the VAE loaded, every input scene-scanned): each is now ONE
`error:` line, exit code 2, no traceback, and the slow step never runs (it is replaced by one that fails the test)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from lvcd.cli import app
from lvcd.demo import DEMO_WEIGHTS

runner = CliRunner()


def one_error(result) -> str:
    """The text of the one `error:` line a refused command printed (exit code 2, no traceback)."""
    assert not isinstance(result.exception, AssertionError), f"the slow step ran: {result.exception}"
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0].removeprefix("error: ")


def never(what: str):
    def refuse(*args, **kwargs):
        raise AssertionError(f"{what} before the input was checked")

    return refuse


def write_frames(folder: Path, count: int, size_hw=(32, 32), seed: int = 0) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        Image.fromarray(rng.integers(0, 255, (*size_hw, 3), dtype=np.uint8)).save(folder / f"{index:05d}.png")
    return folder


# ------------------------------------------------------------------------------------------------ A: lvcd evaluate


@pytest.fixture(scope="module")
def eval_world(tmp_path_factory) -> dict[str, Path]:
    """Frame folders (a prediction of 3 frames, ground truths of 2 and 3) and stand-ins for metric weight files:
    their networks never load here, so any bytes do."""
    root = tmp_path_factory.mktemp("eval")
    world = {
        "pred": write_frames(root / "pred", 3),
        "gt2": write_frames(root / "gt2", 2, seed=1),
        "gt": write_frames(root / "gt", 3, seed=1),
    }
    for name in ("alex.pth", "alexnet-owt-7be5be79.pth", "pt_inception-2015-12-05-6726825d.pth"):
        world[name] = root / name
        world[name].write_bytes(b"weights that never load")
    world["missing"] = root / "nothere"
    return world


@pytest.fixture
def no_metric_networks(monkeypatch):
    """Every metric network's loader fails the test (LPIPS, Inception, I3D, the flow, the sketch extractor)."""
    monkeypatch.setattr("lvcd.metrics.lpips.load_lpips", never("LPIPS loaded"))
    monkeypatch.setattr("lvcd.metrics.inception.load_inception", never("Inception loaded"))
    monkeypatch.setattr("lvcd.metrics.i3d.load_i3d", never("I3D loaded"))
    monkeypatch.setattr("lvcd.metrics.flow.load_flow", never("the flow network loaded"))
    monkeypatch.setattr("lvcd.lineart.get_extractor", never("the sketch extractor loaded"))


def evaluate(world, *args, gt: str = "gt") -> list[str]:
    """`lvcd evaluate` on the world's clips with LPIPS weights given (the first network build_tools loads)."""
    lpips = ["--lpips-weights", str(world["alex.pth"]), "--lpips-weights", str(world["alexnet-owt-7be5be79.pth"])]
    return ["evaluate", "--no-progress", "--pred", str(world["pred"]), "--gt", str(world[gt]), *lpips, *map(str, args)]


def test_evaluate_refuses_clips_of_unequal_length_before_any_network_loads(eval_world, no_metric_networks):
    line = one_error(runner.invoke(app, evaluate(eval_world, gt="gt2")))
    assert line == (
        "clip 'pred': the prediction has 3 frames but the ground truth has 2 frames; metrics compare frame t with "
        "frame t, so give frame-aligned sequences of equal length"
    )


def test_evaluate_refuses_a_missing_pred_before_any_network_loads(eval_world, no_metric_networks):
    args = evaluate(eval_world)
    args[args.index("--pred") + 1] = str(eval_world["missing"])
    line = one_error(runner.invoke(app, args))
    # the rest of the line (the readable kinds of input) is lvcd.io's
    assert line.startswith(f"clip 'nothere': {eval_world['missing']}: not found. Give a folder of images"), line


@pytest.mark.parametrize(
    "option, expected",
    [
        ("--sketch-method", "--sketch-method 'xdg' is not one of informative, informative-coarse, xdog."),
        ("--sketch-weights", "--sketch-weights {missing} does not exist: give sk_model.pth or the folder holding it."),
        (
            "--i3d-weights",
            "--i3d-weights {missing} does not exist: give i3d_pretrained_400.pt (or i3d_torchscript.pt with "
            "--allow-torchscript)",
        ),
        (
            "--raft-weights",
            "--raft-weights {missing} does not exist: give raft-things.pth (the authors') or torchvision's "
            "raft_large_*.pth",
        ),
    ],
    ids=["sketch-method", "sketch-weights", "i3d-weights", "raft-weights"],
)
def test_evaluate_checks_every_weights_option_before_any_network_loads(
    eval_world, no_metric_networks, option, expected
):
    """Each used to be found only after the networks before it loaded (LPIPS, Inception, ...)."""
    value = "xdg" if option == "--sketch-method" else eval_world["missing"]
    inception = ("--inception-weights", eval_world["pt_inception-2015-12-05-6726825d.pth"])
    line = one_error(runner.invoke(app, evaluate(eval_world, *inception, option, value)))
    assert line == expected.format(missing=eval_world["missing"])


# ------------------------------------------------------------------------------------------------- B: lvcd train


@pytest.fixture(scope="module")
def train_root(tmp_path_factory) -> Path:
    """A training root of one 5-frame clip at 64x64 (clips of 4 frames: 2 samples)."""
    from train.test_cli_config import write_official_root

    root = tmp_path_factory.mktemp("train") / "root"
    write_official_root(root, frames=5)
    return root


def train_config(folder: Path, root: Path, svd: Path, lvcd: Path | None = None, batch_size: int = 1) -> Path:
    lines = [
        f'output_dir = "{folder / "run"}"',
        "[model]",
        f'svd = "{svd}"',
        *([f'lvcd = "{lvcd}"'] if lvcd is not None else []),
        "[data]",
        f'root = "{root}"',
        "size = [64, 64]",
        "num_frames = 4",
        "nframe_range = [4, 100]",
        "num_workers = 0",
        "[train]",
        f"batch_size = {batch_size}",
        "max_steps = 1",
        'mixed_precision = "no"',
        "[log]",
        'trackers = ["csv"]',
    ]
    path = folder / "train.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def no_tensors_read(monkeypatch):
    monkeypatch.setattr("lvcd.weights.PendingModel.load", never("model tensors were read"))


def train(config: Path):
    return runner.invoke(app, ["train", "--config", str(config), "--no-progress"])


def test_train_refuses_a_missing_model_lvcd_before_reading_the_encoders(tmp_path, train_root, no_tensors_read):
    missing = tmp_path / "lvcd.ckpt"
    line = one_error(train(train_config(tmp_path, train_root, DEMO_WEIGHTS, lvcd=missing)))
    assert line == (
        f"model.lvcd {missing} does not exist: give the path of lvcd.ckpt (or a checkpoint's lvcd.safetensors), or "
        "leave model.lvcd out to start the ControlNet from the UNet."
    )


def test_train_refuses_model_lvcd_of_another_model_from_its_headers(
    tmp_path, train_root, tiny_weights, no_tensors_read
):
    """The demo model's base with the tiny model's LVCD weights: the key report, before any tensor is read."""
    line = one_error(train(train_config(tmp_path, train_root, DEMO_WEIGHTS, lvcd=tiny_weights["lvcd"])))
    assert line.startswith(
        f"The training weights ({DEMO_WEIGHTS} + {tiny_weights['lvcd']}) do not fit the 'lvcd-demo' model: "
    ), line
    assert "shape mismatch control_model." in line, line
    assert line.endswith(". Give model.config the config these files were made with, or the files of this model.")


def test_train_refuses_a_batch_larger_than_the_data_before_the_models_load(tmp_path, train_root, no_tensors_read):
    line = one_error(train(train_config(tmp_path, train_root, DEMO_WEIGHTS, batch_size=64)))
    assert line == (
        "The dataset has 2 samples: fewer than train.batch_size 64 x 1 process(es); lower train.batch_size (or the "
        "processes), or add data."
    )


# ------------------------------------------------------------------------------------------- C: lvcd data synth


@pytest.fixture
def no_vae_loading(monkeypatch):
    monkeypatch.setattr("lvcd.weights.load_first_stage", never("the VAE loaded"))
    monkeypatch.setattr("lvcd.weights.PendingModel.load", never("the VAE's tensors were read"))


SYNTH_CASES = {
    "split": (("--split", "heldot"), "--split 'heldot' is not one of train, heldout, long."),
    "frames": (("--frames", "10"), "--frames 10: a shot needs at least 15 frames (a training sample)."),
    "shots": (("--shots", "-1"), "--shots -1: give at least 1 shot."),
    "first": (("--first", "-5"), "--first -5: shots are numbered from 0; give 0 or more."),
    "size": (("--size", "64x60"), "--size 64x60: both sides must be multiples of 8 and at least 16."),
    "range": (
        ("--first", "9999999", "--shots", "2"),
        "--first 9999999 --shots 2: shots 9999999..10000000 are outside the split's range 0..9999999; give fewer "
        "shots or a smaller --first.",
    ),
}


@pytest.mark.parametrize("case", SYNTH_CASES, ids=list(SYNTH_CASES))
def test_synth_checks_its_options_before_the_vae_loads(tmp_path, no_vae_loading, case):
    args, expected = SYNTH_CASES[case]
    base = {"--shots": "1", "--frames": "15", "--size": "32x32"}
    given = dict(zip(args[::2], args[1::2], strict=True))
    options = [item for name, value in {**base, **given}.items() for item in (name, value)]
    out = tmp_path / "out"
    result = runner.invoke(app, ["data", "synth", str(out), *options, "--vae", str(DEMO_WEIGHTS), "--quiet"])
    assert one_error(result) == expected
    assert not out.exists()


def test_synth_says_what_to_do_with_a_vae_of_another_config(tmp_path, no_vae_loading):
    """A VAE whose file names no model config and does not fit the official one: `data synth` has no --config, so
    the advice is the file that carries its config."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(DEMO_WEIGHTS), framework="pt") as weights:
        vae = {key: weights.get_tensor(key) for key in weights.keys() if key.startswith("first_stage_model.")}
    other = tmp_path / "other_vae.safetensors"
    save_file(vae, str(other))  # no metadata: no model config carried
    out = tmp_path / "out"
    line = one_error(runner.invoke(app, ["data", "synth", str(out), "--shots", "1", "--frames", "15", "--size",
                                         "32x32", "--vae", str(other), "--quiet"]))  # fmt: skip
    assert line.startswith(
        f"--vae {other}: its VAE does not fit 'svd-lvcd' (it names no model config, so the official one; "
    ), line
    assert line.endswith("); give the base.safetensors that `lvcd train-vae` writes in its output_dir."), line
    assert "--config" not in line and not out.exists()


# ----------------------------------------------------------------------------------------- D: lvcd data prepare


def test_prepare_refuses_damaged_lineart_weights_before_scanning_any_input(tmp_path, monkeypatch):
    from lvcd.lineart.informative import DOWNLOAD_HINT

    monkeypatch.setattr("lvcd.data.prepare.scan_video", never("an input was scanned"))
    monkeypatch.setattr("lvcd.weights.PendingModel.load", never("the VAE's tensors were read"))
    shot = write_frames(tmp_path / "shot", 3, size_hw=(64, 128))
    page = tmp_path / "sk_model.pth"
    page.write_bytes(b"<!DOCTYPE html><html><body>Sign in to download</body></html>\n")
    out = tmp_path / "root"
    args = ["data", "prepare", str(shot), "-o", str(out), "--svd", str(DEMO_WEIGHTS), "--size", "32x64",
            "--lineart-weights", str(page), "--quiet"]  # fmt: skip
    line = one_error(runner.invoke(app, args))
    assert line == (
        f"{page} is not a readable line-art weights file (an HTML page, starts with b'<!DOCTYPE html><'): it is "
        f"corrupt or another kind of file; download it again. {DOWNLOAD_HINT}."
    )
    assert not out.exists()
