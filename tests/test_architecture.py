"""Full-size architecture on the meta device: the official key set and shapes, the LVCD-trained subset and the
Reference Attention layer numbering (no memory is allocated)."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import FULL_MANIFEST, TINY_CONFIG
from lvcd.config import config_from_sgm_json, get_config
from lvcd.model import LVCDModel
from lvcd.models.transformer import SpatialVideoTransformer
from lvcd.weights import is_known_unused, lvcd_trained_keys


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads(FULL_MANIFEST.read_text())


@pytest.fixture(scope="module")
def full_model() -> LVCDModel:
    with torch.device("meta"):
        return LVCDModel(get_config("svd-lvcd"))


def _manifest_shapes(manifest: dict) -> dict[str, list[int]]:
    return {k: v for component in manifest["components"].values() for k, v in component.items()}


def test_full_size_keys_and_shapes_equal_the_official_manifest(manifest, full_model):
    official = _manifest_shapes(manifest)
    assert len(official) == manifest["_n_tensors_total"] == 3117
    ours = {k: list(v.shape) for k, v in full_model.state_dict().items()}
    unused = {k for k in official if is_known_unused(k)}
    # Every official key is either ours (same shape) or a declared never-computed leftover, and nothing else.
    assert set(ours) | unused == set(official)
    assert not set(ours) & unused
    assert {k: official[k] for k in ours} == ours
    # The leftovers are exactly the CLIP text-tower remains and the conditioner VAE's decoder side.
    assert len(ours) == 2971 and len(unused) == 146
    assert all(
        k.startswith(("conditioner.embedders.0.open_clip.model.", "conditioner.embedders.3.encoder.")) for k in unused
    )
    assert not any(part in k for k in unused for part in (".visual.", ".encoder.encoder.", ".encoder.quant_conv."))


def test_parameter_count_matches_manifest(manifest, full_model):
    official = _manifest_shapes(manifest)
    n_ours = sum(p.numel() for p in full_model.parameters())
    n_official = sum(torch.Size(s).numel() for k, s in official.items() if not is_known_unused(k))
    assert n_ours == n_official
    assert sum(p.numel() for p in full_model.control_model.parameters()) == 682_021_537
    assert sum(p.numel() for p in full_model.unet.parameters()) == 1_524_623_082


def test_lvcd_trained_subset_equals_official_ckpt_keys(manifest, full_model):
    assert sorted(lvcd_trained_keys(full_model)) == sorted(manifest["_lvcd_ckpt_keys"])
    assert len(manifest["_lvcd_ckpt_keys"]) == 831


def _attention_layers(network: torch.nn.Module) -> dict[int, str]:
    return {
        module.layer_index: f"{name}.transformer_blocks.0.attn1"
        for name, module in network.named_modules()
        if isinstance(module, SpatialVideoTransformer)
    }


def test_reference_attention_layer_numbering_equals_official_hook_order(manifest, full_model):
    hooks = dict(manifest["_refattn_hook_layers"])
    for prefix, network, count in (("cnet", full_model.control_model, 7), ("unet", full_model.unet, 16)):
        ours = _attention_layers(network)
        assert len(ours) == count
        assert ours == {i: hooks[f"{prefix}-refcond-{i}"] for i in range(count)}


def test_tiny_config_builds_the_fixture_architecture():
    cfg = config_from_sgm_json(TINY_CONFIG)
    assert cfg.unet.model_channels == 32 and cfg.unet.context_dim == 64 and cfg.clip.width == 64
    weights = json.loads((TINY_CONFIG.parent / "weights_manifest.json").read_text())["tensors"]
    with torch.device("meta"):
        model = LVCDModel(cfg)
    ours = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert {k: weights[k]["shape"] for k in ours} == ours
    assert {k for k in weights if not is_known_unused(k)} == set(ours)


def test_unknown_preset_and_missing_config_file_raise_helpful_errors(tmp_path):
    with pytest.raises(ValueError, match="preset"):
        get_config("svd-xl")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        get_config(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        get_config(bad)


def _imported_modules(path) -> set[str]:
    import ast

    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def test_the_cli_is_a_leaf_library_modules_never_import_it():
    """The CLI, the page and the node pack sit on top of the library: nothing below imports them, and nothing but the
    CLI imports the CLI or typer."""
    from pathlib import Path

    import lvcd

    package = Path(lvcd.__file__).parent
    leaves = ("lvcd.cli", "lvcd.ui", "lvcd.comfyui")
    # The single-file page of before issue #9 still imports lvcd.cli.options; #9 replaces it by a package that does not.
    legacy_page = package / "ui.py"
    offenders = []
    for path in sorted(package.rglob("*.py")):
        module = ".".join(path.relative_to(package.parent).with_suffix("").parts).removesuffix(".__init__")
        if module.startswith("lvcd.cli") or path == legacy_page:
            continue
        forbidden = ("typer", "lvcd.cli") if module.startswith(leaves) else ("typer", *leaves)
        offenders += [f"{module} imports {name}" for name in _imported_modules(path) if name.startswith(forbidden)]
    assert offenders == []


def test_transformer_depth_builds_that_many_block_pairs():
    from dataclasses import replace

    from lvcd.models.transformer import ClipLayout

    cfg = config_from_sgm_json(TINY_CONFIG)
    deeper = replace(cfg, unet=replace(cfg.unet, transformer_depth=2))
    with torch.device("meta"):
        keys = LVCDModel(deeper, parts=("unet",)).state_dict()
    prefix = "model.diffusion_model.input_blocks.1.1."
    assert {f"{prefix}transformer_blocks.1.attn1.to_q.weight", f"{prefix}time_stack.1.attn1.to_q.weight"} <= set(keys)
    torch.manual_seed(0)
    svt = SpatialVideoTransformer(32, 2, 16, 64, layer_index=0, depth=2).eval()
    x, context = torch.randn(6, 32, 4, 4), torch.randn(6, 1, 64)
    layout = ClipLayout.training(num_frames=3)
    with torch.no_grad():
        out = svt(x, context, layout)
        svt.transformer_blocks[1].ff.net[2].weight.zero_()  # the second pair takes part
        assert out.shape == x.shape and not torch.allclose(out, svt(x, context, layout))


def test_the_package_exports_what_a_caller_handles_and_imports_torch_only_when_asked():
    """``from lvcd import ...`` gives the pipeline, its result and progress types, and the errors to catch; importing
    the errors (a CLI's or a service's except clause) does not import torch."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from lvcd import LVCDError, InputError, WeightsError\n"
        "assert 'torch' not in sys.modules, 'the errors imported torch'\n"
        "import lvcd\n"
        "from lvcd import ColorizeResult, LVCDPipeline, SamplingProgress, get_config\n"
        "assert issubclass(InputError, LVCDError) and issubclass(WeightsError, LVCDError)\n"
        "assert set(lvcd.__all__) >= {'ColorizeResult', 'SamplingProgress', 'LVCDError', 'LVCDPipeline'}\n"
        "assert all(getattr(lvcd, name) is not None for name in lvcd.__all__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
