"""RAFT-large (lvcd.metrics.raft) against the authors' code and torchvision's, on deterministic random weights.

tests/fixtures/raft/ holds the goldens (see its README): the weights are defined by formula in manifest.json
(``lvcd.testing.tiny_weights.make_tensor``), golden.safetensors holds inputs and the reference implementations'
outputs. Tolerances: features 1e-5 relative to their largest value; flows 2e-4 px (the reference's own fp32 vs fp64
difference is at most 7.2e-6 px after 12 iterations; a transposed lookup window moves it by 1.1 px, a dropped 0.25
mask factor by 0.06 px: see the README).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lvcd.errors import InputError, WeightsError
from lvcd.metrics.raft import RAFT, RAFTFlow, load_raft, raft_state_dict
from lvcd.testing.tiny_weights import make_tensor

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "raft"


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    """Images (uint8 in the file) as float 0..255, as the authors' code takes them; flows and features fp32."""
    return {key: value.float() for key, value in load_file(str(FIXTURES / "golden.safetensors")).items()}


@pytest.fixture(scope="module")
def authors_state() -> dict[str, torch.Tensor]:
    """The fixture's weights in the authors' layout (keys as in raft-things.pth, without ``module.``)."""
    manifest = json.loads((FIXTURES / "manifest.json").read_text())
    state = {}
    for key, spec in manifest["tensors"].items():
        if spec["kind"] == "int":
            state[key] = torch.zeros(spec["shape"], dtype=torch.int64)
        else:
            source = spec.get("alias_of", key)  # norm3 / downsample.1: one tensor under two names, as in the files
            state[key] = torch.from_numpy(
                make_tensor(manifest["seed"], source, spec["shape"], spec["mean"], spec["std"])
            )
    return state


@pytest.fixture(scope="module")
def authors_file(tmp_path_factory, authors_state) -> Path:
    """Saved as the authors' files are: a DataParallel state dict, every key prefixed ``module.``."""
    path = tmp_path_factory.mktemp("raft") / "raft-things.pth"
    torch.save({f"module.{key}": value for key, value in authors_state.items()}, path)
    return path


@pytest.fixture(scope="module")
def network(authors_file) -> RAFT:
    return load_raft(authors_file).network


def normalised(image: torch.Tensor) -> torch.Tensor:
    return 2 * (image / 255.0) - 1.0  # the authors' forward does this to its 0..255 inputs


def assert_close(actual: torch.Tensor, expected: torch.Tensor, atol: float, name: str) -> None:
    assert actual.shape == expected.shape, name
    assert torch.isfinite(expected).all(), f"{name}: the golden is not finite"
    error = (actual - expected).abs().max().item()
    assert error <= atol, f"{name}: max abs error {error:.3g} > {atol:.3g}"


def test_encoders_match_the_authors(network, golden):
    image1, image2 = normalised(golden["image1"]), normalised(golden["image2"])
    with torch.no_grad():
        fmap1, fmap2 = network.fnet(torch.cat([image1, image2])).split(1)
        cnet = network.cnet(image1)
    for name, value in (("fmap1", fmap1), ("fmap2", fmap2), ("cnet", cnet)):
        stored = golden[name].shape[1]  # the file keeps the first channels only
        assert_close(value[:, :stored], golden[name], 1e-5 * golden[name].abs().max().item(), name)


@pytest.mark.parametrize("iters", [1, 4, 12])
def test_flow_matches_the_authors(network, golden, iters):
    with torch.no_grad():
        low, up = network(normalised(golden["image1"]), normalised(golden["image2"]), iters)
    assert_close(low, golden[f"flow_low_iters{iters}"], 2e-4, f"flow_low_iters{iters}")
    assert_close(up, golden[f"flow_up_iters{iters}"], 2e-4, f"flow_up_iters{iters}")


def test_a_batch_is_computed_pair_by_pair(network, golden):
    with torch.no_grad():
        up = network(normalised(golden["batch_image1"]), normalised(golden["batch_image2"]), 4)[1]
    assert_close(up, golden["batch_flow_up_iters4"], 2e-4, "batch_flow_up_iters4")


def test_torchvision_weights_give_torchvision_flow(tmp_path, authors_state, golden):
    """torchvision's raft_large layout: renamed on load; the flow equals torchvision's own on the same weights."""
    to_authors = json.loads((FIXTURES / "torchvision_keys.json").read_text())
    torchvision_state = {tv_key: authors_state[key] for tv_key, key in to_authors.items()}
    assert raft_state_dict(dict(torchvision_state)).keys() == RAFT().state_dict().keys()
    path = tmp_path / "raft_large_C_T_SKHT_V2-ff5fadd5.pth"
    torch.save(torchvision_state, path)
    flow = load_raft(path, iters=12)
    with torch.no_grad():  # torchvision takes [-1, 1] images (its transforms normalise)
        up = flow.network(normalised(golden["image1"]), normalised(golden["image2"]), 12)[1]
    assert_close(up, golden["tv_flow_up_iters12"], 2e-4, "tv_flow_up_iters12")


def test_the_estimator_pads_to_multiples_of_8_and_crops_back(network, golden):
    """Frames in [0, 1] of any size >= 128: replicate-padded evenly to a multiple of 8, the flow cut back."""
    flow = RAFTFlow(network, iters=2, batch=2)
    frames = golden["batch_image1"][..., :60, :90] / 255.0  # (2, 3, 60, 90): too small
    with pytest.raises(InputError, match="at least 128x128"):
        flow(frames, frames)
    a = torch.nn.functional.interpolate(golden["batch_image1"] / 255.0, size=(130, 141), mode="bilinear")
    b = torch.nn.functional.interpolate(golden["batch_image2"] / 255.0, size=(130, 141), mode="bilinear")
    a, b = torch.cat([a, a[:1]]), torch.cat([b, b[:1]])  # 3 pairs in batches of 2
    out = flow(a, b)
    assert out.shape == (3, 2, 130, 141) and torch.isfinite(out).all()
    padded = [torch.nn.functional.pad(x * 2 - 1, (1, 2, 3, 3), mode="replicate") for x in (a, b)]  # 136 x 144
    with torch.no_grad():
        expected = network(*padded, 2)[1][:, :, 3:133, 1:142]
    assert torch.equal(out[:2], expected[:2]) and torch.allclose(out[2], expected[2], atol=1e-4)


def test_a_file_of_another_network_is_refused(tmp_path, authors_state):
    broken = dict(authors_state)
    broken.pop("update_block.flow_head.conv2.weight")
    broken["extra.weight"] = torch.zeros(1)
    path = tmp_path / "other.pth"
    torch.save(broken, path)
    with pytest.raises(WeightsError, match=r"RAFT-large.*missing: update_block\.flow_head\.conv2\.weight"):
        load_raft(path)
    with pytest.raises(InputError, match="at least 1 iteration"):
        RAFTFlow(RAFT(), iters=0)


def test_evaluate_scores_tc_with_raft_found_in_the_weights_folder(tmp_path, authors_file, monkeypatch):
    """`lvcd evaluate`: --flow auto (the default) takes RAFT when a RAFT file is in --weights-dir; a size too small
    for RAFT, or --raft-iters without RAFT, is a one-line error before any network loads or clip is read."""
    from typer.testing import CliRunner

    from lvcd.cli import app

    from .synthetic import moving_texture, write_pngs

    frames = moving_texture(frames=4, height=48, width=64, seed=3)
    gt, pred = write_pngs(tmp_path / "gt", frames), write_pngs(tmp_path / "pred", frames[::-1].copy())
    weights = tmp_path / "weights"
    weights.mkdir()
    (weights / "raft-things.pth").symlink_to(authors_file)
    out = tmp_path / "scores.json"
    base = ["evaluate", "--no-progress", "--pred", str(pred), "--gt", str(gt), "--metrics", "tc"]
    result = CliRunner().invoke(
        app, [*base, "--size", "128", "--weights-dir", str(weights), "--raft-iters", "2", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    settings = json.loads(out.read_text())["settings"]
    assert settings["flow"] == "raft" and settings["raft_iters"] == 2
    assert settings["raft_weights"].endswith("raft-things.pth")
    import lvcd.metrics.raft

    def no_loading(*args, **kwargs):
        raise AssertionError("a network was loaded before the options were checked")

    with monkeypatch.context() as patch:
        patch.setattr(lvcd.metrics.raft, "load_raft", no_loading)
        small = CliRunner().invoke(app, [*base, "--size", "64", "--flow", "raft", "--raft-weights", str(authors_file)])
        assert small.exit_code == 2 and len(small.output.strip().splitlines()) == 1
        assert "at least 128x128" in small.output and "--size" in small.output
        no_raft = CliRunner().invoke(app, [*base, "--raft-iters", "5"])
        assert no_raft.exit_code == 2 and "--raft-iters applies to RAFT" in no_raft.output
    padded = CliRunner().invoke(app, [*base, "--size", "121", "--raft-weights", str(authors_file), "--raft-iters", "1"])
    assert padded.exit_code == 0, padded.output  # 121 is padded to 128: enough
    dis = CliRunner().invoke(
        app,
        [*base, "--size", "64", "--weights-dir", str(weights), "--flow", "dis", "--json", str(tmp_path / "dis.json")],
    )
    assert dis.exit_code == 0, dis.output
    assert json.loads((tmp_path / "dis.json").read_text())["settings"]["flow"] == "dis"


def test_auto_flow_never_takes_a_file_that_is_not_raft_large(tmp_path, authors_file):
    """The authors' models.zip also holds raft-small.pth: never picked; a file named like RAFT-large that is not
    falls back to DIS under auto, saying why (given explicitly, it is an error)."""
    from lvcd.metrics import build_tools

    folder = tmp_path / "weights"
    folder.mkdir()
    torch.save({"module.fnet.conv1.weight": torch.zeros(32, 3, 7, 7)}, folder / "raft-small.pth")
    tools = build_tools(("tc",), weights_dir=folder)
    assert tools.info["flow"] == "dis" and not tools.notes
    (folder / "raft-small.pth").rename(folder / "raft-sintel.pth")
    tools = build_tools(("tc",), weights_dir=folder)
    assert tools.info["flow"] == "dis" and "raft-sintel.pth in the weights folder is not RAFT-large" in tools.notes[0]
    with pytest.raises(WeightsError):
        build_tools(("tc",), raft_weights=folder / "raft-sintel.pth")
    (folder / "raft-things.pth").symlink_to(authors_file)  # preferred over the others when present
    assert build_tools(("tc",), weights_dir=folder).info["raft_weights"].endswith("raft-things.pth")
