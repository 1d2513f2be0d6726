"""LPIPS, FID InceptionV3 and I3D: key layouts of the public weight files, strict loading, TorchScript paths."""

from __future__ import annotations

import warnings

import pytest
import torch

from lvcd.errors import InputError, WeightsError
from lvcd.metrics.checkpoints import is_torchscript, load_strict
from lvcd.metrics.i3d import I3D_SIZE, InceptionI3d, _same_padding, load_i3d, to_i3d_input
from lvcd.metrics.inception import FIDInceptionV3, load_inception
from lvcd.metrics.lpips import LPIPS, load_lpips

from .synthetic import InputProbe

# --- LPIPS ---------------------------------------------------------------------------------------------------------


def test_lpips_identical_images_is_zero(lpips_files):
    model = load_lpips(lpips_files)
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert model(images, images).abs().max().item() == 0.0
        different = model(images, images.flip(-1))
    assert different.shape == (3,) and torch.all(different > 0)


def test_lpips_accepts_a_whole_lpips_state_dict(lpips_files, tmp_path):
    reference = load_lpips(lpips_files)
    whole = {
        f"net.slice1.{k.split('.', 2)[2]}": v for k, v in reference.state_dict().items() if k.startswith("backbone.")
    }
    whole.update({f"lin{i}.model.1.weight": lin.weight for i, lin in enumerate(reference.lins)})
    whole.update({"scaling_layer.shift": reference.shift, "scaling_layer.scale": reference.scale})
    torch.save(whole, tmp_path / "lpips_full.pth")
    model = load_lpips([tmp_path / "lpips_full.pth"])
    x, y = torch.rand(1, 3, 40, 40), torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        assert torch.equal(model(x, y), reference(x, y))


def _lpips_package_state_dict(model: LPIPS) -> dict[str, torch.Tensor]:
    """The layout of ``lpips.LPIPS(net="alex").state_dict()`` (lpips 0.1.4): the scaling layer's constants, AlexNet in
    five slices keeping torchvision's layer indices, and each linear layer twice, as ``lin{k}`` and in ``lins``."""
    state = {
        "scaling_layer.shift": torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1),
        "scaling_layer.scale": torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1),
    }
    for slice_number, index in enumerate((0, 3, 6, 8, 10), start=1):
        conv = model.backbone.features[index]
        state[f"net.slice{slice_number}.{index}.weight"] = conv.weight.detach().clone()
        state[f"net.slice{slice_number}.{index}.bias"] = conv.bias.detach().clone()
    for prefix in ("lin{}", "lins.{}"):
        state.update(
            {f"{prefix.format(k)}.model.1.weight": lin.weight.detach().clone() for k, lin in enumerate(model.lins)}
        )
    return state


def test_lpips_loads_the_lpips_packages_own_state_dict(lpips_files, tmp_path):
    """The docs promise a whole LPIPS state dict works as one file, but lpips.LPIPS().state_dict() also holds the
    aliases lins.{k}.model.1.weight, which were refused as unexpected keys."""
    reference = load_lpips(lpips_files)
    state = _lpips_package_state_dict(reference)
    assert state["lins.4.model.1.weight"].shape == (1, 256, 1, 1) and len(state) == 22  # as the package's
    torch.save(state, tmp_path / "lpips_alex.pth")
    model = load_lpips([tmp_path / "lpips_alex.pth"])
    x, y = torch.rand(2, 3, 48, 48), torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(model(x, y), reference(x, y))
    state["lins.2.model.1.weight"] = state["lins.2.model.1.weight"] + 0.5  # an alias that does not repeat its layer
    torch.save(state, tmp_path / "inconsistent.pth")
    with pytest.raises(WeightsError, match=r"lins\.2\.model\.1\.weight differs from lin2") as refused:
        load_lpips([tmp_path / "inconsistent.pth"])
    assert "\n" not in str(refused.value)


def test_lpips_reports_missing_backbone_and_foreign_keys(lpips_files, tmp_path):
    with pytest.raises(WeightsError, match="backbone"):
        load_lpips(lpips_files[:1])
    torch.save({"lin0.model.1.weight": torch.zeros(1, 64, 1, 1), "foo.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(WeightsError, match="1 unexpected: foo.weight"):
        load_lpips([tmp_path / "bad.pth", lpips_files[1]])
    with pytest.raises(WeightsError, match="does not exist"):
        load_lpips([tmp_path / "absent.pth"])


def test_lpips_module_layout():
    keys = set(LPIPS().state_dict())
    assert {"backbone.features.0.weight", "backbone.features.10.bias", "lins.4.weight"} <= keys
    assert not any("shift" in key for key in keys)  # constants, not weights


# --- FID InceptionV3 -------------------------------------------------------------------------------------------------


def test_fid_inception_has_the_pytorch_fid_key_layout():
    state = FIDInceptionV3().state_dict()
    assert state["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert state["Mixed_5b.branch_pool.conv.weight"].shape == (32, 192, 1, 1)
    assert state["Mixed_6e.branch7x7dbl_5.conv.weight"].shape == (192, 192, 1, 7)
    assert state["Mixed_7c.branch3x3dbl_3b.bn.running_var"].shape == (384,)
    assert state["fc.weight"].shape == (1008, 2048)
    assert not any(key.startswith("AuxLogits") for key in state)
    params = sum(
        v.numel() for k, v in state.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
    )
    # torchvision's inception_v3 has 27,161,264 parameters; minus its aux head (3,326,696), plus 8 classes (16,392).
    assert params == 27_161_264 - 3_326_696 + 16_392


def _variance_preserving(network: torch.nn.Module) -> torch.nn.Module:
    """He-initialise convolutions so random activations neither vanish into slow denormals nor explode."""
    for module in network.modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Conv3d)):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return network.eval()


def test_fid_inception_strict_load_and_features(tmp_path):
    torch.manual_seed(0)
    network = _variance_preserving(FIDInceptionV3())
    state = {k: v for k, v in network.state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "pt_inception.pth")
    extractor = load_inception(tmp_path / "pt_inception.pth")
    assert extractor.source == "state_dict"
    with torch.no_grad():  # 75x75 is the smallest input the network takes; the extractor itself resizes to 299
        features = extractor.network(torch.rand(1, 3, 75, 75) * 2 - 1)
    assert features.shape == (1, 2048) and torch.all(features >= 0)
    del state["Mixed_7c.branch_pool.conv.weight"]
    with pytest.raises(WeightsError, match="1 missing: Mixed_7c.branch_pool.conv.weight"):
        load_strict(extractor.network, state, "FID InceptionV3", "broken.pth")


def test_inception_torchscript_is_detected_and_runs_only_when_allowed(tiny_torchscripts):
    """A TorchScript archive is a program: refused (one line naming the flag and the state-dict file) unless
    allowed."""
    assert is_torchscript(tiny_torchscripts["inception"])
    with pytest.raises(InputError, match=r"TorchScript archive \(FID Inception\).*--allow-torchscript.*pt_inception"):
        load_inception(tiny_torchscripts["inception"])
    extractor = load_inception(tiny_torchscripts["inception"], allow_torchscript=True)
    assert extractor.source == "torchscript"
    assert extractor(torch.rand(2, 3, 20, 30)).shape == (2, 16)


def test_torchscript_inception_is_fed_as_stylegan2_ada_feeds_it(tmp_path):
    """StyleGAN2-ADA calls inception-2015-12-05.pt with uint8 images at their own size and return_features=True, and
    the network resizes them to 299 itself; lvcd resized to 299 (bilinear, as floats) first, bypassing that resize."""
    probe = tmp_path / "inception-2015-12-05.pt"
    with warnings.catch_warnings():  # torch.jit is deprecated, but the public file is TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(InputProbe()), str(probe))
    extractor = load_inception(probe, allow_torchscript=True)
    frames = torch.randint(0, 256, (2, 3, 256, 256), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    frames[:, :, 0, :2] = torch.tensor([0, 255], dtype=torch.uint8)
    for given in (frames, frames.float() / 255.0):  # the evaluation passes [0, 1] floats: the same call
        # per image: height, width, uint8, return_features, min, max
        assert extractor(given).tolist() == [[256, 256, 1, 1, 0, 255]] * 2


# --- I3D --------------------------------------------------------------------------------------------------------------


def test_i3d_has_the_i3d_pretrained_400_key_layout():
    state = InceptionI3d().state_dict()
    assert state["Conv3d_1a_7x7.conv3d.weight"].shape == (64, 3, 7, 7, 7)
    assert state["Conv3d_2c_3x3.bn.running_mean"].shape == (192,)
    assert state["Mixed_4b.b1b.conv3d.weight"].shape == (208, 96, 3, 3, 3)
    assert state["Mixed_5c.b3b.bn.weight"].shape == (128,)
    assert state["logits.conv3d.weight"].shape == (400, 1024, 1, 1, 1)
    assert state["logits.conv3d.bias"].shape == (400,)
    assert not any(key.startswith("logits.bn") for key in state)


def test_i3d_strict_load_and_torchscript(tmp_path, tiny_torchscripts):
    torch.save(InceptionI3d().state_dict(), tmp_path / "i3d_pretrained_400.pt")
    assert load_i3d(tmp_path / "i3d_pretrained_400.pt").source == "state_dict"
    torch.save({"Conv3d_1a_7x7.conv3d.weight": torch.zeros(64, 3, 7, 7, 7)}, tmp_path / "partial.pt")
    with pytest.raises(WeightsError, match="missing: "):
        load_i3d(tmp_path / "partial.pt")
    with pytest.raises(InputError, match=r"--allow-torchscript.*i3d_pretrained_400\.pt"):
        load_i3d(tiny_torchscripts["i3d"])
    extractor = load_i3d(tiny_torchscripts["i3d"], allow_torchscript=True)
    assert extractor.source == "torchscript"
    assert extractor(torch.rand(2, 16, 3, 32, 48)).shape == (2, 12)


def test_tf_same_padding():
    assert _same_padding(224, 7, 2) == (2, 3)
    assert _same_padding(16, 7, 2) == (2, 3)
    assert _same_padding(15, 3, 2) == (1, 1)
    assert _same_padding(7, 3, 1) == (1, 1)
    assert _same_padding(8, 2, 2) == (0, 0)


def test_i3d_input_is_224_centre_crop_in_minus_one_one():
    windows = torch.zeros(1, 16, 3, 256, 320)
    windows[..., :, 128:192] = 1.0  # a bright band in the middle survives the centre crop
    x = to_i3d_input(windows)
    assert x.shape == (1, 3, 16, I3D_SIZE, I3D_SIZE)
    assert x.min().item() == -1.0 and x.max().item() == 1.0


@pytest.mark.slow
def test_i3d_forward_shape():
    with torch.no_grad():
        logits = _variance_preserving(InceptionI3d())(torch.rand(1, 3, 16, I3D_SIZE, I3D_SIZE) * 2 - 1)
    assert logits.shape == (1, 400)
