"""The ComfyUI node pack (``comfyui/``), called the way ComfyUI calls nodes, without ComfyUI installed.

ComfyUI loads a custom-node folder by executing its ``__init__.py`` as a package, reads ``NODE_CLASS_MAPPINGS``,
builds each node's widgets from ``INPUT_TYPES()``, and runs ``getattr(node_class(), FUNCTION)(**inputs)`` under
``torch.inference_mode()``, expecting a tuple matching ``RETURN_TYPES``. The stand-ins below provide the three ComfyUI
modules the pack uses: ``comfy.utils.ProgressBar``, ``comfy.model_management`` (device, interruption) and
``folder_paths`` (model folders).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_CONFIG
from lvcd.pipeline import LVCDPipeline

PACK = Path(__file__).resolve().parents[1] / "comfyui"


class InterruptProcessingException(Exception):
    pass


class ProgressBar:
    """comfy.utils.ProgressBar's surface: total, current, update(n), update_absolute(value, total, preview)."""

    made: list[ProgressBar] = []
    on_update = None  # test hook, called with the bar after each update

    def __init__(self, total):
        self.total, self.current, self.values = total, 0, []
        ProgressBar.made.append(self)

    def update_absolute(self, value, total=None, preview=None):
        self.total = self.total if total is None else total
        self.current = min(value, self.total)
        self.values.append(self.current)
        if ProgressBar.on_update is not None:
            ProgressBar.on_update(self)

    def update(self, value):
        self.update_absolute(self.current + value)


def _model_management() -> types.ModuleType:
    module = types.ModuleType("comfy.model_management")
    module.InterruptProcessingException = InterruptProcessingException
    module.interrupted = False

    def interrupt_current_processing(value=True):
        module.interrupted = value

    def throw_exception_if_processing_interrupted():
        if module.interrupted:
            module.interrupted = False
            raise InterruptProcessingException

    module.interrupt_current_processing = interrupt_current_processing
    module.throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted
    module.get_torch_device = lambda: torch.device("cpu")
    module.freed = []  # (bytes, device) of every free_memory call: ComfyUI unloads its models to make that room
    module.free_memory = lambda memory_required, device, keep_loaded=(): module.freed.append((memory_required, device))
    return module


def _folder_paths(models: Path) -> types.ModuleType:
    module = types.ModuleType("folder_paths")
    module.models_dir = str(models)
    module.supported_pt_extensions = {".ckpt", ".pt", ".pth", ".safetensors", ".bin"}
    module.folder_names_and_paths = {"checkpoints": ([str(models / "checkpoints")], module.supported_pt_extensions)}

    def get_filename_list(folder):
        paths, extensions = module.folder_names_and_paths[folder]
        names = {
            str(file.relative_to(root))
            for root in map(Path, paths)
            if root.is_dir()
            for file in root.rglob("*")
            if file.is_file() and (not extensions or file.suffix in extensions)
        }
        return sorted(names)

    def get_full_path(folder, filename):
        for root in module.folder_names_and_paths.get(folder, ([], None))[0]:
            if (Path(root) / filename).is_file():
                return str(Path(root) / filename)
        return None

    module.get_filename_list, module.get_full_path = get_filename_list, get_full_path
    return module


@pytest.fixture(scope="module")
def comfy_modules(tmp_path_factory, tiny_weights):
    """ComfyUI's modules (stand-ins), the pack loaded into them, and a models folder holding the tiny model as the
    official files."""
    models = tmp_path_factory.mktemp("comfyui") / "models"
    (models / "checkpoints").mkdir(parents=True)
    (models / "lvcd").mkdir()
    os.symlink(tiny_weights["svd"], models / "checkpoints" / "tiny_svd.safetensors")
    os.symlink(tiny_weights["lvcd"], models / "lvcd" / "tiny_lvcd.ckpt")
    utils = types.ModuleType("comfy.utils")
    utils.ProgressBar = ProgressBar
    package = types.ModuleType("comfy")
    management = _model_management()
    package.utils, package.model_management = utils, management
    with pytest.MonkeyPatch.context() as patch:
        for name, module in {"comfy": package, "comfy.utils": utils, "comfy.model_management": management,
                             "folder_paths": _folder_paths(models)}.items():  # fmt: skip
            patch.setitem(sys.modules, name, module)
        yield types.SimpleNamespace(models=models, management=management, nodes=_load_pack(patch))


@pytest.fixture
def comfy(comfy_modules, monkeypatch):
    ProgressBar.made.clear()
    monkeypatch.setattr(ProgressBar, "on_update", None)
    comfy_modules.management.interrupted = False
    return comfy_modules


@pytest.fixture(scope="module")
def pipe(comfy_modules):
    """The pipeline as the loader node makes it, from the files in the models folder."""
    (pipeline,) = run(comfy_modules.nodes["LVCDLoader"], svd="tiny_svd.safetensors", lvcd="tiny_lvcd.ckpt",
                      dtype="auto", offload=False, config=str(TINY_CONFIG))  # fmt: skip
    assert isinstance(pipeline, LVCDPipeline)
    return pipeline


def _load_pack(monkeypatch) -> dict:
    """As ComfyUI's custom-node loader: the folder's __init__.py executed as a package under a path-derived name."""
    name = str(PACK).replace(".", "_x_")
    spec = importlib.util.spec_from_file_location(name, PACK / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    assert set(module.NODE_DISPLAY_NAME_MAPPINGS) == set(module.NODE_CLASS_MAPPINGS)
    return module.NODE_CLASS_MAPPINGS


def run(node_class, **inputs):
    """Validate inputs against INPUT_TYPES as ComfyUI's front end and executor do, then run the node."""
    spec = node_class.INPUT_TYPES()
    for name in spec["required"]:
        assert name in inputs, f"missing required input {name}"
    for name, value in inputs.items():
        kind, *options = spec["required"].get(name) or spec.get("optional", {})[name]
        settings = options[0] if options else {}
        if isinstance(kind, list):
            assert value in kind, f"{name}={value!r} is not one of the widget's options"
        elif kind == "INT":
            assert settings.get("min", -(2**63)) <= value <= settings.get("max", 2**64), name
    with torch.inference_mode():
        outputs = getattr(node_class(), node_class.FUNCTION)(**inputs)
    assert isinstance(outputs, tuple) and len(outputs) == len(node_class.RETURN_TYPES)
    return outputs


def _image(batch: int, seed: int = 0, height: int = 64, width: int = 128) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).random((batch, height, width, 3), dtype=np.float32))


def _lineart(count: int) -> torch.Tensor:
    frames = torch.ones(count, 64, 128, 3)
    for index in range(count):
        frames[index, :, 10 + 3 * index, :] = 0  # a dark line that moves
    return frames


def test_importing_the_pack_does_no_work():
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('pack', {str(PACK / '__init__.py')!r})\n"
        "module = importlib.util.module_from_spec(spec); sys.modules['pack'] = module; spec.loader.exec_module(module)\n"
        "print(sorted(module.NODE_CLASS_MAPPINGS), 'torch' in sys.modules, 'lvcd.pipeline' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["['LVCDColorize',", "'LVCDLineart',", "'LVCDLoader']", "False", "False"]


def test_widgets_follow_comfyui_conventions_and_list_the_model_folders(comfy):
    from lvcd.io.lineart_input import POLARITIES
    from lvcd.io.paper import LEVELS
    from lvcd.lineart import METHODS

    for name, node in comfy.nodes.items():
        spec = node.INPUT_TYPES()
        assert (
            set(spec) <= {"required", "optional"} and node.CATEGORY == "LVCD" and callable(getattr(node, node.FUNCTION))
        )
        for kind, *_ in [*spec["required"].values(), *spec.get("optional", {}).values()]:
            assert isinstance(kind, list) or kind in {"IMAGE", "INT", "STRING", "BOOLEAN", "LVCD_PIPELINE"}, name
    loader = comfy.nodes["LVCDLoader"].INPUT_TYPES()["required"]
    assert "tiny_svd.safetensors" in loader["svd"][0] and "tiny_lvcd.ckpt" in loader["lvcd"][0]
    colorize = comfy.nodes["LVCDColorize"].INPUT_TYPES()
    assert tuple(colorize["required"]["polarity"][0]) == POLARITIES
    assert tuple(colorize["optional"]["lineart_levels"][0]) == LEVELS
    assert colorize["required"]["seed"][1]["max"] == 2**64 - 1
    assert tuple(comfy.nodes["LVCDLineart"].INPUT_TYPES()["required"]["method"][0]) == METHODS


def test_colorize_returns_a_frame_per_drawing_with_comfyui_progress(comfy, pipe):
    reference, lineart = _image(1), _lineart(16)
    (frames,) = run(comfy.nodes["LVCDColorize"], pipeline=pipe, reference=reference, lineart=lineart, steps=2,
                    seed=2**64 - 1, overlap=4, polarity="auto")  # fmt: skip
    assert frames.shape == (16, 64, 128, 3) and frames.dtype == torch.float32
    assert 0 <= frames.min() and frames.max() <= 1 and frames.std() > 0.01
    (bar,) = ProgressBar.made
    assert bar.total == 2 * 2 and bar.values == [1, 2, 3, 4]  # 2 windows x 2 steps, the whole shot
    # the node adds nothing to the pipeline's own result
    direct = pipe(reference[0].permute(2, 0, 1), lineart.permute(0, 3, 1, 2), num_steps=2, seed=2**64 - 1,
                  progress=False)  # fmt: skip
    assert torch.equal(frames, direct.frames.permute(0, 2, 3, 1))


def test_cancel_stops_colorization_between_steps(comfy, pipe):

    def press_cancel_after_step_3(bar):
        if bar.current == 3:
            comfy.management.interrupt_current_processing(True)

    ProgressBar.on_update = press_cancel_after_step_3
    with pytest.raises(InterruptProcessingException):
        run(comfy.nodes["LVCDColorize"], pipeline=pipe, reference=_image(1), lineart=_lineart(16), steps=4, seed=1,
            overlap=4, polarity="dark-lines")  # fmt: skip
    assert ProgressBar.made[0].values == [1, 2, 3] and ProgressBar.made[0].total == 8
    assert comfy.management.interrupted is False  # the flag is consumed, as ComfyUI does


def test_cancel_stops_colorization_while_it_decodes(comfy, pipe, monkeypatch):
    """Cancel pressed during decoding (a long shot's last minutes) stops it between two frames, the bar left full."""
    checks = []
    original = comfy.management.throw_exception_if_processing_interrupted

    def check():  # calls: 1 before sampling, 2 steps (2 windows x 1 step), then one per decoded frame
        checks.append(1)
        if len(checks) == 5:
            comfy.management.interrupt_current_processing(True)  # while frame 2 of 16 is decoded
        original()

    monkeypatch.setattr(comfy.management, "throw_exception_if_processing_interrupted", check)
    with pytest.raises(InterruptProcessingException):
        run(comfy.nodes["LVCDColorize"], pipeline=pipe, reference=_image(1), lineart=_lineart(16), steps=1, seed=1,
            overlap=4, polarity="dark-lines")  # fmt: skip
    assert len(checks) == 5 and ProgressBar.made[0].values == [1, 2]


def test_keyframes_size_and_rgba_inputs(comfy, pipe):
    node = comfy.nodes["LVCDColorize"]
    common = {"pipeline": pipe, "steps": 1, "seed": 5, "overlap": 4, "polarity": "auto"}
    rgba = torch.cat([_image(1), torch.ones(1, 64, 128, 1)], dim=-1)  # opaque: the same picture as RGB
    (plain,) = run(node, reference=_image(1), lineart=_lineart(3), **common)
    (from_rgba,) = run(node, reference=rgba, lineart=_lineart(3), **common)
    assert torch.equal(plain, from_rgba)
    (sized,) = run(node, reference=_image(1), lineart=_lineart(3), width=128, height=128, **common)
    assert sized.shape == plain.shape and not torch.equal(sized, plain)  # processed at 128x128, back at 128x64
    (unkeyed,) = run(node, reference=_image(1), lineart=_lineart(16), **common)
    (keyed,) = run(node, reference=_image(1), lineart=_lineart(16), keyframes=_image(1, seed=9),
                   keyframe_indices="15", **common)  # fmt: skip
    assert keyed.shape == unkeyed.shape and not torch.equal(keyed, unkeyed)  # the keyframe is used


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"reference": _image(2)}, "LVCD Colorize: the reference must be one image, got a batch of 2"),
        ({"lineart": torch.ones(64, 128, 3)}, r"LVCD Colorize: line art: expected an IMAGE batch"),
        ({"width": 100, "height": 64}, "LVCD Colorize: width 100 and height 64 must both be multiples of 64"),
        ({"keyframes": _image(1), "keyframe_indices": "3, 7"}, "one frame index per keyframe image"),
        ({"keyframes": _image(1), "keyframe_indices": "40"}, r"keyframe index 40 is outside the shot \(1..15\)"),
        ({"keyframe_indices": "3"}, "no keyframes image batch is connected"),
    ],
)
def test_colorize_problems_are_exceptions_with_a_clear_message(comfy, pipe, change, message):
    inputs = {"pipeline": pipe, "reference": _image(1), "lineart": _lineart(16), "steps": 1, "seed": 0,
              "overlap": 4, "polarity": "auto", **change}  # fmt: skip
    with pytest.raises(ValueError, match=message) as caught:
        run(comfy.nodes["LVCDColorize"], **inputs)
    assert "--" not in str(caught.value)
    assert ProgressBar.made == []  # refused before any work


def test_loader_takes_the_vae_dtype(comfy_modules):
    """The optional vae_dtype widget: bf16 saves about 1 GB of GPU memory; fp32 (the default) as officially."""
    node = comfy_modules.nodes["LVCDLoader"]
    assert node.INPUT_TYPES()["optional"]["vae_dtype"][1]["default"] == "fp32"
    common = {"svd": "tiny_svd.safetensors", "lvcd": "tiny_lvcd.ckpt", "dtype": "fp32", "offload": False,
              "config": str(TINY_CONFIG)}  # fmt: skip
    (pipeline,) = run(node, **common, vae_dtype="bf16")
    assert next(pipeline.model.first_stage_model.parameters()).dtype == torch.bfloat16
    assert next(pipeline.model.unet.parameters()).dtype == torch.float32
    with pytest.raises(ValueError, match="LVCD Loader: vae_dtype 'int8' is not one of fp32, bf16, fp16"):
        getattr(node(), node.FUNCTION)(**common, vae_dtype="int8")  # past the widget (a hand-edited workflow)


def test_loader_problems_are_clear(comfy):
    node = comfy.nodes["LVCDLoader"]
    with pytest.raises(ValueError, match="needs a whole-model file chosen as svd"):
        run(node, svd="huggingface-cache", lvcd="none (svd is a whole-model file)", dtype="auto", offload=False)
    link = comfy.models / "checkpoints" / "tiny_svd.safetensors"
    target = link.readlink()
    link.unlink()
    try:
        with pytest.raises(
            FileNotFoundError, match=r"LVCD Loader: tiny_svd.safetensors is not in ComfyUI/models/checkpoints"
        ):
            getattr(node(), node.FUNCTION)(
                svd="tiny_svd.safetensors", lvcd="tiny_lvcd.ckpt", dtype="auto", offload=False
            )
    finally:
        link.symlink_to(target)  # the models folder is shared by the module's tests


def test_lineart_node_matches_the_library_extractor(comfy, tmp_path):
    from lvcd.lineart import InformativeDrawingsGenerator, get_extractor

    colour = (_image(3, height=40, width=56) * 255).round() / 255  # frames that came from 8-bit files
    (lines,) = run(comfy.nodes["LVCDLineart"], images=colour, method="xdog", weights="auto")
    expected = get_extractor("xdog")((colour[1].numpy() * 255).round().astype(np.uint8))
    assert lines.shape == (3, 40, 56, 3) and torch.equal(lines[1, ..., 0], torch.from_numpy(expected).float() / 255)
    assert torch.equal(lines[..., 0], lines[..., 2])
    torch.manual_seed(0)
    weights = comfy.models / "lvcd" / "sk_model.pth"
    torch.save(InformativeDrawingsGenerator().state_dict(), weights)
    try:
        (lines,) = run(comfy.nodes["LVCDLineart"], images=colour, method="informative", weights="auto")
    finally:
        weights.unlink()
    assert lines.shape == (3, 40, 56, 3) and 0 <= lines.min() and lines.max() <= 1
    assert ProgressBar.made[-1].values == [1, 2, 3]


def test_lineart_without_weights_says_where_to_put_them_and_cancel_works(comfy, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("LVCD_LINEART_WEIGHTS", raising=False)
    monkeypatch.setattr("lvcd.lineart.extractor._huggingface_cached", lambda filename: None)
    with pytest.raises(
        FileNotFoundError, match=r"sk_model.pth was not found. Put it in ComfyUI/models/lvcd/"
    ) as caught:
        run(comfy.nodes["LVCDLineart"], images=_image(2), method="informative", weights="auto")
    assert "--" not in str(caught.value)
    comfy.management.interrupt_current_processing(True)
    with pytest.raises(InterruptProcessingException):
        run(comfy.nodes["LVCDLineart"], images=_image(2), method="xdog", weights="auto")


def test_lineart_weights_found_but_unusable_say_why_not_that_they_are_missing(comfy):
    weights = comfy.models / "lvcd" / "sk_model.pth"
    weights.write_bytes(b"not a checkpoint at all")
    try:
        with pytest.raises(ValueError) as caught:
            run(comfy.nodes["LVCDLineart"], images=_image(2), method="informative", weights="auto")
    finally:
        weights.unlink()
    message = str(caught.value)
    assert message.startswith("LVCD Line Art: ") and "sk_model.pth" in message and "was not found" not in message


def test_the_registry_metadata_is_complete():
    import tomllib

    meta = tomllib.loads((PACK / "pyproject.toml").read_text())
    project, comfy_tool = meta["project"], meta["tool"]["comfy"]
    assert project["name"] == "lvcd-nodes" and "comfyui" not in project["name"].lower()
    assert len(project["version"].split(".")) == 3 and "Repository" in project["urls"]
    assert {"PublisherId", "DisplayName"} <= set(comfy_tool)
    assert (PACK / "requirements.txt").read_text().split() == project["dependencies"]


def test_colorize_node_passes_the_sampler(comfy, pipe, monkeypatch):
    from lvcd.diffusion import SAMPLERS

    choices, options = comfy.nodes["LVCDColorize"].INPUT_TYPES()["optional"]["sampler"]
    assert choices == list(SAMPLERS) and options["default"] == "euler"
    seen = []
    monkeypatch.setattr(type(pipe), "__call__", lambda self, *args, **kwargs: seen.append(kwargs) or 1 / 0)
    for sampler in (None, "dpmpp_2m"):
        extra = {} if sampler is None else {"sampler": sampler}
        with pytest.raises(ZeroDivisionError):
            run(comfy.nodes["LVCDColorize"], pipeline=pipe, reference=_image(1), lineart=_lineart(3), steps=6,
                seed=1, overlap=4, polarity="auto", **extra)  # fmt: skip
    assert [kwargs["sampler"] for kwargs in seen] == ["euler", "dpmpp_2m"] and seen[1]["num_steps"] == 6


def test_on_a_gpu_the_nodes_make_room_among_comfyuis_models(comfy, monkeypatch):
    """ComfyUI keeps its models in GPU memory: the loader asks it to free what the weights take, the colorize node
    what the shot needs beyond the weights already there (cpu:0 stands in for the GPU; on the CPU nothing is asked)."""
    from lvcd.memory import weight_bytes

    gpu = torch.device("cpu", 0)
    monkeypatch.setattr(comfy.management, "get_torch_device", lambda: gpu)
    comfy.management.freed.clear()
    (pipeline,) = run(comfy.nodes["LVCDLoader"], svd="tiny_svd.safetensors", lvcd="tiny_lvcd.ckpt", dtype="fp32",
                      offload=False, config=str(TINY_CONFIG))  # fmt: skip
    assert comfy.management.freed == [(sum(weight_bytes(pipeline.model).values()), gpu)]
    comfy.management.freed.clear()
    run(comfy.nodes["LVCDColorize"], pipeline=pipeline, reference=_image(1), lineart=_lineart(3), steps=1, seed=0,
        overlap=4, polarity="auto")  # fmt: skip
    needed = pipeline.memory_needed((64, 128)).peak_bytes
    resident = sum(weight_bytes(pipeline.model, gpu).values())
    assert comfy.management.freed == [(needed - resident, gpu)] and needed > resident > 0


def test_comfyuis_low_vram_mode_turns_offload_on(comfy, monkeypatch):
    """ComfyUI started with --lowvram / --novram: the loader offloads even with the widget off (cpu:0 stands in for
    the GPU, so the networks really move)."""
    gpu = torch.device("cpu", 0)
    monkeypatch.setattr(comfy.management, "get_torch_device", lambda: gpu)
    common = {"svd": "tiny_svd.safetensors", "lvcd": "tiny_lvcd.ckpt", "dtype": "fp32", "offload": False,
              "config": str(TINY_CONFIG)}  # fmt: skip
    for state, expected in (("NORMAL_VRAM", False), ("LOW_VRAM", True), ("NO_VRAM", True)):
        monkeypatch.setattr(comfy.management, "vram_state", types.SimpleNamespace(name=state), raising=False)
        (pipeline,) = run(comfy.nodes["LVCDLoader"], **common)
        assert pipeline.offload is expected, state
