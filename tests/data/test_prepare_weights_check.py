"""Line-art weights of the wrong network (svd.safetensors, another model's .pth) given to `lvcd data prepare` (and to
every command using the extractor) are refused from the file's header, in one line naming the file and what it seems
to be, before any input is scanned, any network loaded or any of its tensors read; they used to be found only when the
line-art network loaded for the first frame, after every input was scene-scanned."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from lvcd.cli import app
from lvcd.demo import DEMO_WEIGHTS
from lvcd.errors import WeightsError
from lvcd.lineart import InformativeDrawingsGenerator
from lvcd.lineart.extractor import check_method
from lvcd.lineart.informative import DOWNLOAD_HINT
from lvcd.state_dict import WeightsFile
from test_early_errors_train_eval import never, one_error, write_frames

runner = CliRunner()


@pytest.fixture
def nothing_slow_runs(monkeypatch):
    """Scanning an input, or loading the VAE or the line-art network, fails the test."""
    monkeypatch.setattr("lvcd.data.prepare.scan_video", never("an input was scanned"))
    monkeypatch.setattr("lvcd.weights.PendingModel.load", never("the VAE's tensors were read"))
    monkeypatch.setattr("lvcd.lineart.get_extractor", never("the line-art network loaded"))


def _other_network(path):
    torch.save(torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.Linear(8, 2)).state_dict(), path)
    return path


def _prepare(tmp_path, weights):
    shot = write_frames(tmp_path / "shot", 3, size_hw=(64, 128))
    out = tmp_path / "root"
    args = ["data", "prepare", str(shot), "-o", str(out), "--svd", str(DEMO_WEIGHTS), "--size", "32x64",
            "--lineart-weights", str(weights), "--quiet"]  # fmt: skip
    return runner.invoke(app, args), out


def test_prepare_refuses_the_svd_checkpoint_as_line_art_weights_before_scanning(
    tmp_path, tiny_weights, nothing_slow_runs, monkeypatch
):
    (tmp_path / "weights").mkdir()
    given = tmp_path / "weights" / "sk_model.safetensors"
    given.symlink_to(tiny_weights["svd"])
    read_tensor = WeightsFile.get

    def no_line_art_tensor(self, key):  # the check reads the header only (the VAE's record reads --svd's tensors)
        assert self.path != given, "a tensor of the line-art weights was read"
        return read_tensor(self, key)

    monkeypatch.setattr(WeightsFile, "get", no_line_art_tensor)
    result, out = _prepare(tmp_path, given)
    line = one_error(result)
    assert line.startswith(
        f"{given} holds the weights of a diffusion model (an SVD checkpoint, like svd.safetensors), not the "
        "informative-drawings line-art generator: "
    ), line
    assert "24 missing" in line and line.endswith(f"{DOWNLOAD_HINT}.")
    assert not out.exists()


def test_prepare_refuses_another_networks_pth_before_scanning(tmp_path, nothing_slow_runs):
    given = _other_network(tmp_path / "sk_model.pth")
    result, out = _prepare(tmp_path, given)
    line = one_error(result)
    assert line.startswith(
        f"{given} holds the weights of another model (top-level names 0, 1), not the informative-drawings line-art "
        "generator: 4 tensors, 24 missing: "
    ), line
    assert not out.exists()


def test_every_command_using_the_extractor_checks_the_network_of_its_weights(tmp_path, tiny_weights, monkeypatch):
    """check_method (colorize --from-color, lineart, evaluate's sketches, data prepare): a file of another network is
    refused, the generator's own weights pass, and `lvcd lineart` says it before reading a frame."""
    monkeypatch.setattr("lvcd.state_dict.WeightsFile.get", never("a tensor was read"))
    with pytest.raises(WeightsError, match=r"an LVCD checkpoint, like lvcd\.ckpt\), not the informative-drawings"):
        check_method("informative", tiny_weights["lvcd"], ("--sketch-weights", "--sketch-method"))
    good = tmp_path / "sk_model.pth"
    torch.save(InformativeDrawingsGenerator().state_dict(), good)
    assert check_method("informative-coarse", good) == good
    monkeypatch.setattr("lvcd.io.frames.FrameSource.open", never("a frame was read"))
    colour = write_frames(tmp_path / "colour", 2)
    wrong = _other_network(tmp_path / "other.pth")
    line = one_error(runner.invoke(app, ["lineart", str(colour), "-o", str(tmp_path / "out"), "--weights", str(wrong)]))
    assert line.startswith(f"{wrong} holds the weights of another model (top-level names 0, 1), not the informative")
    assert not (tmp_path / "out").exists()
