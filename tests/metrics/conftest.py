"""Fixtures of the metrics tests: tiny TorchScript feature networks and random LPIPS weight files."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from .synthetic import TinyImageFeatures, TinyVideoFeatures


@pytest.fixture(scope="session")
def tiny_torchscripts(tmp_path_factory) -> dict[str, Path]:
    """TorchScript files with the call signatures of inception-2015-12-05.pt and i3d_torchscript.pt."""
    folder = tmp_path_factory.mktemp("tiny_torchscripts")
    paths = {"inception": folder / "tiny_inception.pt", "i3d": folder / "tiny_i3d.pt"}
    with warnings.catch_warnings():  # torch.jit is deprecated, but the public files are TorchScript
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(TinyImageFeatures().eval()), str(paths["inception"]))
        torch.jit.save(torch.jit.script(TinyVideoFeatures().eval()), str(paths["i3d"]))
    return paths


@pytest.fixture(scope="session")
def lpips_files(tmp_path_factory) -> list[Path]:
    """Random LPIPS weights split as the public files: lin layers (alex.pth) and a torchvision AlexNet file."""
    from lvcd.metrics.lpips import LPIPS

    torch.manual_seed(0)
    model = LPIPS()
    for lin in model.lins:  # LPIPS lin weights are non-negative
        lin.weight.data.abs_()
    folder = tmp_path_factory.mktemp("lpips")
    lins = {f"lin{k}.model.1.weight": lin.weight.detach().clone() for k, lin in enumerate(model.lins)}
    backbone = {
        f"features.{key.split('.', 2)[2]}": v.clone()
        for key, v in model.state_dict().items()
        if key.startswith("backbone.")
    }
    backbone.update({"classifier.1.weight": torch.zeros(4096, 9216), "classifier.1.bias": torch.zeros(4096)})
    torch.save(lins, folder / "alex.pth")
    torch.save(backbone, folder / "alexnet-owt-7be5be79.pth")
    return [folder / "alex.pth", folder / "alexnet-owt-7be5be79.pth"]
