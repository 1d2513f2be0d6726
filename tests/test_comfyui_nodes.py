"""The ComfyUI node pack (``comfyui/``), called the way ComfyUI calls nodes, without ComfyUI installed.

ComfyUI (nodes.py ``load_custom_node``) loads a custom-node folder by executing its ``__init__.py`` as a package named
after the folder's path, reads ``NODE_CLASS_MAPPINGS``, builds each node's widgets from ``INPUT_TYPES()``, validates a
prompt's values against them (execution.py ``validate_inputs``) and runs ``getattr(node_class(), FUNCTION)(**inputs)``
under ``torch.inference_mode()``, expecting a tuple matching ``RETURN_TYPES``. The stand-ins below provide the three
ComfyUI modules the pack uses, with the behaviour of ComfyUI's own (comfy/utils.py, comfy/model_management.py,
folder_paths.py, and the progress hook main.py installs): ``comfy.utils.ProgressBar``, ``comfy.model_management``
(device, memory, VRAM mode, interruption) and ``folder_paths`` (model folders).
"""

from __future__ import annotations

import enum
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import TINY_CONFIG, cache_official_files
from lvcd.pipeline import LVCDPipeline

PACK = Path(__file__).resolve().parents[1] / "comfyui"


class InterruptProcessingException(BaseException):
    """comfy.model_management's: a BaseException since ComfyUI PR #13523 (an Exception before), so that a blanket
    ``except Exception`` cannot swallow a Cancel."""


class ProgressBar:
    """comfy.utils.ProgressBar: ``ProgressBar(total, node_id=None)``, ``update_absolute(value, total=None,
    preview=None)`` (the value clamped to the total) and ``update(n)``. Each update calls the global hook ComfyUI's
    main.py installs (``hijack_progress``), which first raises InterruptProcessingException when Cancel was pressed.
    (The real bar throttles the hook between its first and its last update; calling it on every update is the case
    where a node's progress reporting can be interrupted most often.)"""

    made: list[ProgressBar] = []
    on_update = None  # test hook, called with the bar after each update, before ComfyUI's hook
    global_hook = None  # comfy.utils.PROGRESS_BAR_HOOK

    def __init__(self, total, node_id=None):
        self.total, self.current, self.node_id, self.values = total, 0, node_id, []
        self.hook = ProgressBar.global_hook
        ProgressBar.made.append(self)

    def update_absolute(self, value, total=None, preview=None):
        if total is not None:
            self.total = total
        self.current = min(value, self.total)
        self.values.append(self.current)
        if ProgressBar.on_update is not None:
            ProgressBar.on_update(self)
        if self.hook is not None:
            self.hook(self.current, self.total, preview, node_id=self.node_id)

    def update(self, value):
        self.update_absolute(self.current + value)


class VRAMState(enum.Enum):
    """comfy.model_management.VRAMState; ``vram_state`` is LOW_VRAM with --lowvram, NO_VRAM with --novram,
    DISABLED without a GPU."""

    DISABLED = 0
    NO_VRAM = 1
    LOW_VRAM = 2
    NORMAL_VRAM = 3
    HIGH_VRAM = 4
    SHARED = 5


def _model_management() -> types.ModuleType:
    module = types.ModuleType("comfy.model_management")
    module.InterruptProcessingException = InterruptProcessingException
    module.VRAMState = VRAMState
    module.vram_state = VRAMState.DISABLED  # what ComfyUI sets on a machine without a GPU
    module.interrupted = False

    def interrupt_current_processing(value=True):
        module.interrupted = value

    def throw_exception_if_processing_interrupted():
        if module.interrupted:
            module.interrupted = False  # consumed: ComfyUI clears the flag as it raises
            raise module.InterruptProcessingException()

    def free_memory(memory_required, device, keep_loaded=(), for_dynamic=False, pins_required=0, ram_required=0):
        module.freed.append((memory_required, device))  # ComfyUI unloads its models until that much is free
        return []

    module.interrupt_current_processing = interrupt_current_processing
    module.throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted
    module.get_torch_device = lambda: torch.device("cpu")
    module.freed = []  # (bytes, device) of every free_memory call
    module.free_memory = free_memory
    return module


def _folder_paths(models: Path) -> types.ModuleType:
    """folder_paths: ``folder_names_and_paths`` maps a folder name to ``([paths], {extensions})``; a listing keeps the
    files whose extension (any case) is in the set, every file when the set is empty, and looks into linked folders;
    ``add_model_folder_path`` (what extra_model_paths.yaml calls at start-up) registers an unknown name with an empty
    set; ``get_filename_list`` keeps each listing in ``filename_list_cache`` and trusts it while no listed folder's
    modification time changed and no existing folder was added to the name."""
    module = types.ModuleType("folder_paths")
    module.models_dir = str(models)
    module.supported_pt_extensions = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
    module.folder_names_and_paths = {"checkpoints": ([str(models / "checkpoints")], module.supported_pt_extensions)}
    module.filename_list_cache = {}

    def add_model_folder_path(folder, path, is_default=False):
        if folder not in module.folder_names_and_paths:
            module.folder_names_and_paths[folder] = ([path], set())
            return
        paths = module.folder_names_and_paths[folder][0]
        if path in paths and is_default:
            paths.remove(path)
        if path not in paths:
            paths.insert(0, path) if is_default else paths.append(path)

    def scan(folder):
        roots, extensions = module.folder_names_and_paths[folder]
        names, times = set(), {}
        for root in filter(os.path.isdir, roots):
            for directory, subdirs, files in os.walk(root, followlinks=True):
                subdirs[:] = [name for name in subdirs if name != ".git"]
                times[directory] = os.path.getmtime(directory)
                for name in files:
                    if not extensions or os.path.splitext(name)[1].lower() in extensions:
                        names.add(os.path.relpath(os.path.join(directory, name), root))
        return sorted(names), times

    def get_filename_list(folder):
        cached = module.filename_list_cache.get(folder)
        if (
            cached is None
            or any(os.path.getmtime(directory) != time for directory, time in cached[1].items())
            or any(os.path.isdir(root) and root not in cached[1] for root in module.folder_names_and_paths[folder][0])
        ):
            cached = module.filename_list_cache[folder] = scan(folder)
        return list(cached[0])

    def get_full_path(folder, filename):
        if folder not in module.folder_names_and_paths:
            return None
        inside = os.path.normpath(os.path.join(os.sep, filename)).lstrip(os.sep)  # never outside the folder
        for root in module.folder_names_and_paths[folder][0]:
            if os.path.isfile(os.path.join(root, inside)):
                return os.path.join(root, inside)
        return None

    def get_full_path_or_raise(folder, filename):
        path = get_full_path(folder, filename)
        if path is None:
            raise FileNotFoundError(f"Model in folder '{folder}' with filename '{filename}' not found.")
        return path

    module.add_model_folder_path, module.get_filename_list = add_model_folder_path, get_filename_list
    module.get_full_path, module.get_full_path_or_raise = get_full_path, get_full_path_or_raise
    return module


@pytest.fixture(scope="module")
def comfy_modules(tmp_path_factory, tiny_weights):
    """ComfyUI's modules (stand-ins), the pack loaded into them, and a models folder holding the tiny model as the
    official files."""
    root = tmp_path_factory.mktemp("comfyui")
    models, custom_nodes = root / "models", root / "custom_nodes"
    (models / "checkpoints").mkdir(parents=True)
    (models / "lvcd").mkdir()
    custom_nodes.mkdir()
    os.symlink(tiny_weights["svd"], models / "checkpoints" / "tiny_svd.safetensors")
    os.symlink(tiny_weights["lvcd"], models / "lvcd" / "tiny_lvcd.ckpt")
    utils = types.ModuleType("comfy.utils")
    utils.ProgressBar = ProgressBar
    package = types.ModuleType("comfy")
    management = _model_management()
    package.utils, package.model_management = utils, management

    def progress_hook(value, total, preview_image, prompt_id=None, node_id=None):  # main.py's hijack_progress
        management.throw_exception_if_processing_interrupted()

    with pytest.MonkeyPatch.context() as patch:
        for name, module in {"comfy": package, "comfy.utils": utils, "comfy.model_management": management,
                             "folder_paths": _folder_paths(models)}.items():  # fmt: skip
            patch.setitem(sys.modules, name, module)
        patch.setattr(ProgressBar, "global_hook", staticmethod(progress_hook))
        pack = _load_pack(custom_nodes, patch)
        yield types.SimpleNamespace(models=models, management=management, nodes=pack.NODE_CLASS_MAPPINGS,
                                    display_names=pack.NODE_DISPLAY_NAME_MAPPINGS)  # fmt: skip


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


def _loader_code(module_path: str) -> str:
    """Python that loads a custom-node folder as ComfyUI's load_custom_node does (for a subprocess)."""
    return (
        "import importlib.util, os, sys\n"
        f"module_path = {module_path!r}\n"
        "name = module_path.replace('.', '_x_')\n"
        "spec = importlib.util.spec_from_file_location(name, os.path.join(module_path, '__init__.py'))\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "sys.modules[name] = module\n"
        "spec.loader.exec_module(module)\n"
    )


def _load_pack(custom_nodes: Path, monkeypatch) -> types.ModuleType:
    """The pack linked into custom_nodes as the README says (``lvcd-nodes``) and loaded as ComfyUI's load_custom_node
    loads a folder: a module named after the folder's path as listed (dots made "_x_"), put in sys.modules before
    its __init__.py runs (the relative import of .nodes needs that)."""
    (custom_nodes / "lvcd-nodes").symlink_to(PACK, target_is_directory=True)
    module_path = os.path.join(str(custom_nodes), "lvcd-nodes")
    name = module_path.replace(".", "_x_")
    spec = importlib.util.spec_from_file_location(name, os.path.join(module_path, "__init__.py"))
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    assert set(module.NODE_DISPLAY_NAME_MAPPINGS) == set(module.NODE_CLASS_MAPPINGS)
    assert getattr(module, "WEB_DIRECTORY", None) is None  # no front-end files to serve
    return module


CONVERT = {"INT": int, "FLOAT": float, "STRING": str, "BOOLEAN": bool}


def run(node_class, **inputs):
    """Validate the inputs as execution.py's validate_inputs does (every required input given; INT, FLOAT, STRING and
    BOOLEAN widget values converted, then checked against the min and max the widget gives; a combo value among the
    choices INPUT_TYPES lists now), then call the node as execution.py does: a new instance's FUNCTION with the
    inputs given (an unconnected optional input is left out), under torch.inference_mode()."""
    spec = node_class.INPUT_TYPES()
    for name in spec["required"]:
        assert name in inputs, f"missing required input {name}"
    for name, value in list(inputs.items()):
        kind, *options = spec["required"].get(name) or spec.get("optional", {})[name]
        settings = options[0] if options else {}
        if isinstance(kind, list):
            assert value in kind, f"{name}={value!r} is not one of the widget's options"
        elif kind in CONVERT:
            value = inputs[name] = CONVERT[kind](value)
            assert settings.get("min", value) <= value <= settings.get("max", value), f"{name}={value!r} out of range"
    with torch.inference_mode():
        outputs = getattr(node_class(), node_class.FUNCTION)(**inputs)
    assert isinstance(outputs, tuple) and len(outputs) == len(node_class.RETURN_TYPES)
    return outputs


def _image(batch: int, seed: int = 0, height: int = 64, width: int = 128) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).random((batch, height, width, 3), dtype=np.float32))


def _lineart(count: int, width: int = 128) -> torch.Tensor:
    frames = torch.ones(count, 64, width, 3)
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


def test_a_linked_pack_uses_the_library_of_its_clone(tmp_path):
    """lvcd not installed in ComfyUI's Python (``python -E -S``: no site-packages nor PYTHONPATH, so not this install):
    the pack, linked into custom_nodes under the README's name and loaded as ComfyUI loads it, makes the clone's src
    importable (found through the link, not beside custom_nodes)."""
    (tmp_path / "custom_nodes").mkdir()
    (tmp_path / "custom_nodes" / "lvcd-nodes").symlink_to(PACK, target_is_directory=True)
    code = _loader_code(str(tmp_path / "custom_nodes" / "lvcd-nodes"))
    code = "import importlib.util\nassert importlib.util.find_spec('lvcd') is None\n" + code
    code += "print(sorted(module.NODE_CLASS_MAPPINGS) == ['LVCDColorize', 'LVCDLineart', 'LVCDLoader'])\n"
    code += "print(importlib.util.find_spec('lvcd').origin)\n"
    done = subprocess.run([sys.executable, "-E", "-S", "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", str(PACK.parent / "src" / "lvcd" / "__init__.py")]


def test_widgets_follow_comfyui_conventions_and_list_the_model_folders(comfy):
    from lvcd.config import LVCDConfig
    from lvcd.demo import demo_weights_path
    from lvcd.io.lineart_input import POLARITIES
    from lvcd.io.paper import LEVELS
    from lvcd.lineart import METHODS
    from lvcd.weights import WeightsFile

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
    demo_config = WeightsFile(demo_weights_path(), "demo").model_config()
    # every size a model takes can be set: the widgets step by a divisor of each model's size multiple
    for side in ("width", "height"):
        step = colorize["optional"][side][1]["step"]
        assert all(config.size_multiple % step == 0 for config in (LVCDConfig(), demo_config)), (side, step)
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


@pytest.mark.parametrize("base", [BaseException, Exception], ids=["comfyui", "comfyui-before-pr-13523"])
def test_cancel_stops_colorization_between_steps(comfy, pipe, monkeypatch, base):
    """Cancel stops the shot before the next step, whether ComfyUI's InterruptProcessingException is a BaseException
    (now) or an Exception (before ComfyUI PR #13523): nothing between the bar and ComfyUI swallows it."""
    interrupt = type("InterruptProcessingException", (base,), {})
    monkeypatch.setattr(comfy.management, "InterruptProcessingException", interrupt)

    def press_cancel_after_step_3(bar):
        if bar.current == 3:
            comfy.management.interrupt_current_processing(True)

    ProgressBar.on_update = press_cancel_after_step_3
    with pytest.raises(interrupt):
        run(comfy.nodes["LVCDColorize"], pipeline=pipe, reference=_image(1), lineart=_lineart(16), steps=4, seed=1,
            overlap=4, polarity="dark-lines")  # fmt: skip
    assert ProgressBar.made[0].values == [1, 2, 3] and ProgressBar.made[0].total == 8
    assert comfy.management.interrupted is False  # the flag is consumed, as ComfyUI does


def test_cancel_stops_colorization_while_it_decodes(comfy, pipe, monkeypatch):
    """Cancel pressed during decoding (a long shot's last minutes) stops it between two frames, the bar left full."""
    checks = []
    original = comfy.management.throw_exception_if_processing_interrupted

    def check():  # calls: 1 before sampling, 2 a step (ComfyUI's progress hook, then the node's own; 2 windows x 1
        checks.append(1)  # step), then one per decoded frame
        if len(checks) == 7:
            comfy.management.interrupt_current_processing(True)  # while frame 2 of 16 is decoded
        original()

    monkeypatch.setattr(comfy.management, "throw_exception_if_processing_interrupted", check)
    with pytest.raises(InterruptProcessingException):
        run(comfy.nodes["LVCDColorize"], pipeline=pipe, reference=_image(1), lineart=_lineart(16), steps=1, seed=1,
            overlap=4, polarity="dark-lines")  # fmt: skip
    assert len(checks) == 7 and ProgressBar.made[0].values == [1, 2]


def test_keyframes_size_and_rgba_inputs(comfy, pipe):
    node = comfy.nodes["LVCDColorize"]
    common = {"pipeline": pipe, "steps": 1, "seed": 5, "overlap": 4, "polarity": "auto"}
    rgba = torch.cat([_image(1), torch.ones(1, 64, 128, 1)], dim=-1)  # opaque: the same picture as RGB
    (plain,) = run(node, reference=_image(1), lineart=_lineart(3), **common)
    (from_rgba,) = run(node, reference=rgba, lineart=_lineart(3), **common)
    assert torch.equal(plain, from_rgba)
    # Load Image gives a transparent PNG's alpha as a separate MASK (1 - alpha) and its colour where transparent is
    # often black: core Join Image with Alpha makes the RGBA IMAGE (alpha = 1 - mask), composited over white here
    mask = 1 - _lineart(3)[..., 0]  # black lines on a transparent sheet: 1 (masked) where there is no line
    joined = torch.cat([torch.zeros(3, 64, 128, 3), (1 - mask)[..., None]], dim=-1)
    (from_transparent,) = run(node, reference=_image(1), lineart=joined, **common)
    assert torch.equal(plain, from_transparent)
    # ComfyUI's loaders give IMAGE in its intermediate dtype: float16 with --fp16-intermediates
    (from_half,) = run(node, reference=_image(1).half(), lineart=_lineart(3).half(), **common)
    (expected,) = run(node, reference=_image(1).half().float(), lineart=_lineart(3), **common)
    assert from_half.dtype == torch.float32 and torch.equal(from_half, expected)
    (sized,) = run(node, reference=_image(1), lineart=_lineart(3), width=128, height=128, **common)
    assert sized.shape == plain.shape and not torch.equal(sized, plain)  # processed at 128x128, back at 128x64
    small = {"reference": _image(1, width=64), "lineart": _lineart(16, width=64)}  # 64x64: the smallest size
    (unkeyed,) = run(node, **small, **common)
    (keyed,) = run(node, **small, keyframes=_image(1, seed=9, width=64), keyframe_indices="15", **common)
    assert keyed.shape == unkeyed.shape and not torch.equal(keyed, unkeyed)  # the keyframe is used


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"reference": _image(2)}, "LVCD Colorize: the reference must be one image, got a batch of 2"),
        ({"lineart": torch.ones(64, 128, 3)}, r"LVCD Colorize: line art: expected an IMAGE batch"),
        ({"width": 100, "height": 64}, "LVCD Colorize: width 100 and height 64 must both be multiples of 64"),
        ({"keyframes": _image(1), "keyframe_indices": "3, 7"}, "one frame index per keyframe image"),
        ({"keyframes": _image(1), "keyframe_indices": "40"}, r"keyframe index 40 is outside the shot \(0..15\)"),
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


def test_a_size_error_names_the_models_own_trained_size(comfy, pipe, monkeypatch):
    """The automatic size is near the model's trained area: the demo model's (64x64) in ComfyUI, not always the
    official 576x320 the message named."""
    import dataclasses

    monkeypatch.setattr(pipe.model, "config", dataclasses.replace(pipe.config, train_size_hw=(64, 96)))
    with pytest.raises(ValueError, match=r"multiples of 64, or both 0 \(automatic: near the trained 96x64 area"):
        run(comfy.nodes["LVCDColorize"], pipeline=pipe, reference=_image(1), lineart=_lineart(3), steps=1, seed=0,
            overlap=4, polarity="auto", width=100, height=64)  # fmt: skip


@pytest.mark.parametrize("config", ["whatever", "missing.json", "not_json.json", "a_folder"])
def test_a_bad_config_input_is_the_loaders_one_line_error(comfy, tmp_path, config):
    """The config input's problems (unknown name, missing or unreadable file) came out of ComfyUI bare, without the
    node's name, as the library raised them (ValueError, FileNotFoundError, IsADirectoryError)."""
    (tmp_path / "not_json.json").write_text("not json")
    (tmp_path / "a_folder").mkdir()
    value = config if config == "whatever" else str(tmp_path / config)
    with pytest.raises(ValueError) as caught:
        run(comfy.nodes["LVCDLoader"], svd="tiny_svd.safetensors", lvcd="tiny_lvcd.ckpt", dtype="auto", offload=False,
            config=value)  # fmt: skip
    message = str(caught.value)
    assert message.startswith("LVCD Loader: ") and value.rsplit("/", 1)[-1] in message and "\n" not in message


@pytest.mark.parametrize("missing", ["svd", "lvcd"])
def test_a_file_the_hub_cannot_give_says_what_to_do_for_that_file(comfy, monkeypatch, missing):
    """huggingface-cache with a file neither cached nor downloadable: a login and SVD's licence are asked for when
    svd.safetensors is missing, not when only lvcd.ckpt (a public file) is."""
    from lvcd.errors import WeightsError
    from lvcd.pipeline import LVCD_REPO, SVD_REPO

    def hub_file(repo, cache_dir=None):
        if repo == {"svd": SVD_REPO, "lvcd": LVCD_REPO}[missing]:
            raise WeightsError("offline") from ConnectionError("no network")
        return str(comfy.models / "checkpoints" / "tiny_svd.safetensors")

    monkeypatch.setattr("lvcd.hub.hub_file", hub_file)
    with pytest.raises(RuntimeError) as caught:
        run(comfy.nodes["LVCDLoader"], svd="huggingface-cache", lvcd="huggingface-cache", dtype="auto", offload=False)
    message = str(caught.value)
    assert message.startswith(f"LVCD Loader: could not get {'svd.safetensors' if missing == 'svd' else 'lvcd.ckpt'}")
    folder = "checkpoints" if missing == "svd" else "lvcd"
    assert ("licence" in message) == (missing == "svd") and f"Put the file in ComfyUI/models/{folder}/" in message


def test_on_a_gpu_a_whole_model_file_frees_the_room_of_its_own_model(comfy, monkeypatch):
    """A whole-model file carries its model's config (the demo model's: 10 M parameters): the loader asked ComfyUI
    to free the room of the official model (about 2 G parameters) instead (cpu:0 stands in for the GPU)."""
    from lvcd.demo import demo_weights_path
    from lvcd.memory import weight_bytes

    gpu = torch.device("cpu", 0)
    monkeypatch.setattr(comfy.management, "get_torch_device", lambda: gpu)
    comfy.management.freed.clear()
    link = comfy.models / "checkpoints" / "demo.safetensors"
    link.symlink_to(demo_weights_path())
    try:
        (pipeline,) = run(comfy.nodes["LVCDLoader"], svd="demo.safetensors", lvcd="none (svd is a whole-model file)",
                          dtype="fp32", offload=False)  # fmt: skip
    finally:
        link.unlink()  # the models folder is shared by the module's tests
    assert comfy.management.freed == [(sum(weight_bytes(pipeline.model).values()), gpu)]


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


@pytest.mark.parametrize("carried", ["[1]", '"x"', "negative"])
def test_a_whole_model_file_with_a_malformed_config_is_a_clear_loader_error(comfy, carried):
    """A model config in the file's metadata that is not an object, or has a negative size, is the loader's one-line
    error naming the file and the config input, as other LVCD problems are (was a raw AttributeError or
    RuntimeError)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    from lvcd.demo import demo_weights_path
    from lvcd.weights import MODEL_CONFIG_KEY

    with safe_open(str(demo_weights_path()), "pt") as source:
        tensors = {key: source.get_tensor(key) for key in source.keys()}
        metadata = dict(source.metadata())
    if carried == "negative":
        doc = json.loads(metadata[MODEL_CONFIG_KEY])
        doc["unet"]["model_channels"] = -8
        carried = json.dumps(doc)
    path = comfy.models / "checkpoints" / "bad_config.safetensors"
    save_file(tensors, str(path), metadata={**metadata, MODEL_CONFIG_KEY: carried})
    node = comfy.nodes["LVCDLoader"]
    try:
        with pytest.raises(ValueError) as info:
            run(node, svd="bad_config.safetensors", lvcd="none (svd is a whole-model file)", dtype="auto",
                offload=False)  # fmt: skip
    finally:
        path.unlink()  # the models folder is shared by the module's tests
    message = str(info.value)
    assert (
        message.startswith("LVCD Loader: ") and "bad_config.safetensors carries an unreadable model config" in message
    )
    assert "pass the config input" in message and "--" not in message and "\n" not in message


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
    for state, expected in (("NORMAL_VRAM", False), ("LOW_VRAM", True), ("NO_VRAM", True), ("HIGH_VRAM", False)):
        monkeypatch.setattr(comfy.management, "vram_state", comfy.management.VRAMState[state])
        (pipeline,) = run(comfy.nodes["LVCDLoader"], **common)
        assert pipeline.offload is expected, state


def test_an_lvcd_folder_from_extra_model_paths_lists_model_files_only(comfy, tmp_path, monkeypatch):
    """extra_model_paths.yaml's ``lvcd: <folder>`` is registered at start-up by add_model_folder_path with no extension
    filter, and ComfyUI may have listed it (and cached that) before the pack runs: the loader still offers the model
    files only, from that folder and from models/lvcd (here not made yet), and the file chosen resolves."""
    models, extra = tmp_path / "models", tmp_path / "shared" / "lvcd"
    (models / "checkpoints").mkdir(parents=True)
    extra.mkdir(parents=True)
    (extra / "lvcd.ckpt").write_bytes(b"")
    (extra / "where these came from.txt").write_text("huggingface.co/luckyhzt/lvcd_pretrained_models")
    folder_paths = _folder_paths(models)
    monkeypatch.setitem(sys.modules, "folder_paths", folder_paths)
    folder_paths.add_model_folder_path("lvcd", str(extra))
    assert folder_paths.get_filename_list("lvcd") == ["lvcd.ckpt", "where these came from.txt"]
    loader = comfy.nodes["LVCDLoader"]
    assert loader.INPUT_TYPES()["required"]["lvcd"][0] == ["huggingface-cache", "none (svd is a whole-model file)",
                                                           "lvcd.ckpt"]  # fmt: skip
    assert folder_paths.folder_names_and_paths["lvcd"][0] == [str(extra), str(models / "lvcd")]
    assert comfy.nodes["LVCDLineart"].INPUT_TYPES()["required"]["weights"][0] == ["auto"]  # lvcd.ckpt: a model
    assert folder_paths.get_full_path("lvcd", "lvcd.ckpt") == str(extra / "lvcd.ckpt")


def test_each_menu_of_models_lvcd_leaves_out_the_other_kinds_files(comfy, tmp_path, monkeypatch):
    """models/lvcd holds the LVCD model and the line-art weights: the loader's menu did list sk_model.pth and the
    line-art node's menu lvcd.ckpt (choosing either failed only when run). Each leaves out the files named as the other
    kind's; a file named otherwise is in both, and the names follow the library's."""
    from lvcd.lineart import WEIGHT_FILES

    helpers = sys.modules[comfy.nodes["LVCDLoader"].__module__.rsplit(".", 1)[0] + ".helpers"]
    assert all(name.lower().startswith(helpers.LINEART_STEM) for name in WEIGHT_FILES.values())
    models = tmp_path / "models"
    (models / "checkpoints").mkdir(parents=True)
    (models / "lvcd" / "sub").mkdir(parents=True)
    names = ["lvcd.ckpt", "LVCD-converted.safetensors", "svd.safetensors", "sk_model.pth", "sk_model2.pth",
             "sub/sk_model.safetensors", "mine.pt"]  # fmt: skip
    for name in names:
        (models / "lvcd" / name).write_bytes(b"")
    monkeypatch.setitem(sys.modules, "folder_paths", _folder_paths(models))
    loader_menu = comfy.nodes["LVCDLoader"].INPUT_TYPES()["required"]["lvcd"][0]
    assert loader_menu[2:] == ["LVCD-converted.safetensors", "lvcd.ckpt", "mine.pt", "svd.safetensors"]
    lineart_menu = comfy.nodes["LVCDLineart"].INPUT_TYPES()["required"]["weights"][0]
    assert lineart_menu == [
        "auto",
        "mine.pt",
        "sk_model.pth",
        "sk_model2.pth",
        os.path.join("sub", "sk_model.safetensors"),
    ]


def test_a_pack_without_the_library_says_how_to_install_it(tmp_path):
    """The registry installs this folder alone, outside any clone: ComfyUI's log says at start-up, and each node's red
    box says, that the lvcd library is to be installed (it said "No module named 'lvcd'")."""
    shutil.copytree(PACK, tmp_path / "custom_nodes" / "lvcd-nodes")
    code = _loader_code(str(tmp_path / "custom_nodes" / "lvcd-nodes"))
    code += (
        "import inspect\n"
        "for node in module.NODE_CLASS_MAPPINGS.values():\n"
        "    run = getattr(node(), node.FUNCTION)\n"
        "    needed = [p for p in inspect.signature(run).parameters.values() if p.default is p.empty]\n"
        "    try:\n"
        "        run(*[None] * len(needed))\n"
        "    except RuntimeError as err:\n"
        "        print(err)\n"
    )
    done = subprocess.run([sys.executable, "-E", "-S", "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "LVCD nodes: the lvcd library is not installed in ComfyUI's Python: run `pip install" in done.stderr
    said = done.stdout.splitlines()
    assert len(said) == 3 and all("the lvcd library is not installed" in line for line in said), said


def test_the_huggingface_cache_choice_takes_cached_files_with_no_request(comfy, tiny_weights, tmp_path, monkeypatch):
    """The loader's "huggingface-cache" asked the hub before using a cached file (about 23 s of retries with no
    network); it uses the library's lookup now, which reads the cache first."""
    import socket

    import huggingface_hub.constants

    def no_network(*args, **kwargs):
        raise AssertionError("the loader asked the network")

    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    cache_official_files(tmp_path, tiny_weights)
    node = comfy.nodes["LVCDLoader"]
    (pipeline,) = run(node, svd="huggingface-cache", lvcd="huggingface-cache", dtype="fp32", offload=False,
                      config=str(TINY_CONFIG))  # fmt: skip
    assert pipeline.config.unet.model_channels == 32


def test_colorize_node_colours_from_a_reference_frame_inside_the_shot(comfy, pipe):
    inputs = {"pipeline": pipe, "reference": _image(1), "lineart": _lineart(12), "steps": 1, "seed": 3, "overlap": 4,
              "polarity": "auto"}  # fmt: skip
    (frames,) = run(comfy.nodes["LVCDColorize"], **inputs, reference_frame=5)
    expected = pipe(_image(1)[0].permute(2, 0, 1), _lineart(12).permute(0, 3, 1, 2), num_steps=1, seed=3,
                    progress=False, reference_frame=5).frames  # fmt: skip
    torch.testing.assert_close(frames, expected.permute(0, 2, 3, 1), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"Colorize: reference_frame 12 is outside the shot of 12 frames \(0..11\)"):
        run(comfy.nodes["LVCDColorize"], **inputs, reference_frame=12)


# --- the example workflow (comfyui/example_workflows, ComfyUI's template browser) -----------------------------------

# The ComfyUI nodes the example uses, as their sources define them (nodes.py LoadImage; comfy_extras/nodes_video.py
# LoadVideo, GetVideoComponents, CreateVideo, SaveVideo; MarkdownNote is the frontend's): socket inputs in order,
# widget inputs in order, output types.
CORE_NODES = {
    "LoadImage": ([], [("image", "COMBO")], ["IMAGE", "MASK"]),
    "LoadVideo": ([], [("file", "COMBO")], ["VIDEO"]),
    "GetVideoComponents": ([("video", "VIDEO")], [], ["IMAGE", "AUDIO", "FLOAT"]),
    "CreateVideo": ([("images", "IMAGE"), ("audio", "AUDIO")], [("fps", "FLOAT")], ["VIDEO"]),
    "SaveVideo": ([("video", "VIDEO")], [("filename_prefix", "STRING"), ("format", "COMBO"), ("codec", "COMBO")], []),
    "MarkdownNote": ([], [], []),
}
CORE_DISPLAY_NAMES = {"LoadImage": "Load Image", "LoadVideo": "Load Video", "GetVideoComponents": "Get Video Components",
                      "CreateVideo": "Create Video", "SaveVideo": "Save Video"}  # fmt: skip


def _slots(node_class) -> tuple[list, list, list]:
    """A pack node as a saved workflow lists it: sockets (link-only inputs) then widgets, each in INPUT_TYPES order
    (required, then optional), and its output types."""
    spec = node_class.INPUT_TYPES()
    entries = [*spec["required"].items(), *spec.get("optional", {}).items()]
    sockets = [(name, kind) for name, (kind, *_) in entries if isinstance(kind, str) and kind not in CONVERT]
    widgets = [(name, "COMBO" if isinstance(kind, list) else kind) for name, (kind, *_) in entries
               if not isinstance(kind, str) or kind in CONVERT]  # fmt: skip
    return sockets, widgets, list(node_class.RETURN_TYPES)


def _widget_inputs(node_class, values: list) -> dict:
    """A saved node's widgets_values as named inputs (the frontend stores a seed's 'control after generate' choice
    right after the seed)."""
    spec = node_class.INPUT_TYPES()
    options = {**spec["required"], **spec.get("optional", {})}
    named, values = {}, list(values)
    for name, _ in _slots(node_class)[1]:
        named[name] = values.pop(0)
        if (options[name][1:] or [{}])[0].get("control_after_generate"):
            assert values.pop(0) in ("fixed", "increment", "decrement", "randomize")
    assert not values, f"widgets_values has {len(values)} more values than {node_class.__name__} has widgets"
    return named


WORKFLOWS = sorted((PACK / "example_workflows").glob("*.json"))


def test_the_example_workflows_are_there_with_their_template_thumbnails():
    """ComfyUI's template browser shows <workflow>.jpg as the card's picture (tests/comfyui_live/thumbnails.py)."""
    from PIL import Image

    assert [path.name for path in WORKFLOWS] == ["lvcd_colorize_lineart_video.json", "lvcd_recolour_colour_video.json"]
    assert sorted(p.name for p in (PACK / "example_workflows").iterdir()) == sorted(
        name for path in WORKFLOWS for name in (path.name, path.with_suffix(".jpg").name)
    )
    for path in WORKFLOWS:
        with Image.open(path.with_suffix(".jpg")) as thumbnail:
            assert thumbnail.format == "JPEG" and thumbnail.size == (516, 516), path.stem


@pytest.mark.parametrize("path", WORKFLOWS, ids=[path.stem for path in WORKFLOWS])
def test_an_example_workflow_is_wired_as_comfyui_saves_it(comfy, pipe, path):
    workflow = json.loads(path.read_text())
    assert workflow["version"] == 0.4
    nodes = {node["id"]: node for node in workflow["nodes"]}
    links = workflow["links"]
    assert workflow["last_node_id"] >= max(nodes) and workflow["last_link_id"] >= max(link[0] for link in links)
    for node in nodes.values():
        ours = node["type"] in comfy.nodes
        sockets, widgets, outputs = _slots(comfy.nodes[node["type"]]) if ours else CORE_NODES[node["type"]]
        assert [(i["name"], i["type"]) for i in node["inputs"]] == sockets + widgets, node["type"]
        assert all(("widget" in i) == (index >= len(sockets)) for index, i in enumerate(node["inputs"])), node["type"]
        assert [o["type"] for o in node["outputs"]] == outputs, node["type"]
        if ours:  # every required socket of a pack node is connected
            required = comfy.nodes[node["type"]].INPUT_TYPES()["required"]
            assert all(i["link"] is not None for i in node["inputs"] if i["name"] in required and "widget" not in i)
    for link_id, source, source_slot, target, target_slot, kind in links:
        output, entry = nodes[source]["outputs"][source_slot], nodes[target]["inputs"][target_slot]
        assert output["type"] == entry["type"] == kind and link_id in output["links"] and entry["link"] == link_id
    linked = [(i["link"], n) for n, node in nodes.items() for i in node["inputs"] if i["link"] is not None]
    assert sorted(link for link, _ in linked) == sorted(link[0] for link in links)  # no dangling link either way
    by_type = {node["type"]: node for node in nodes.values()}
    assert {"LoadImage", "LoadVideo", "LVCDLoader", "LVCDColorize", "CreateVideo", "SaveVideo"} <= set(by_type)
    # the pack's widget values are valid inputs: the loader's and line art's against their widgets, Colorize's by
    # running it
    for name in ("LVCDLoader", "LVCDLineart"):
        if name in by_type:
            values = _widget_inputs(comfy.nodes[name], by_type[name]["widgets_values"])
            spec = comfy.nodes[name].INPUT_TYPES()["required"]
            assert all(values[key] in spec[key][0] for key in values if isinstance(spec.get(key, (None,))[0], list))
    settings = _widget_inputs(comfy.nodes["LVCDColorize"], by_type["LVCDColorize"]["widgets_values"])
    assert (settings["steps"], settings["overlap"], settings["sampler"], settings["reference_frame"]) == (
        25,
        4,
        "euler",
        0,
    )  # the official settings
    settings["steps"] = 1  # what the example runs, in one step here
    (frames,) = run(comfy.nodes["LVCDColorize"], pipeline=pipe, reference=_image(1), lineart=_lineart(3), **settings)
    assert frames.shape == (3, 64, 128, 3)


def test_the_notes_and_the_readme_name_example_nodes_as_comfyui_shows_them(comfy):
    """Each node a workflow's note names in bold, and each step of the README's example chain, is a node the workflow
    shows under that name (its title, or its type's display name) or a node of the pack. Both said "Extract frames",
    which no node was shown as: the frame extractor (Get Video Components) is now titled so."""
    import re

    def shown(nodes):
        names = {node["title"] for node in nodes if "title" in node} | set(comfy.display_names.values())
        return names | {CORE_DISPLAY_NAMES[node["type"]] for node in nodes if node["type"] in CORE_DISPLAY_NAMES}

    for path in WORKFLOWS:
        nodes = json.loads(path.read_text())["nodes"]
        (note,) = [node["widgets_values"][0] for node in nodes if node["type"] == "MarkdownNote"]
        named = set(re.findall(r"\*\*([^*]+)\*\*", note))
        assert named and named <= shown(nodes), (path.name, named - shown(nodes))
    readme = (PACK / "README.md").read_text()
    chain = re.search(r"`lvcd_colorize_lineart_video.json`: (.*?), with a note", readme, re.S).group(1)
    steps = {re.sub(r"\(.*?\)", "", part, flags=re.S).strip() for part in re.split(r"->|\+", chain)}
    nodes = json.loads((PACK / "example_workflows" / "lvcd_colorize_lineart_video.json").read_text())["nodes"]
    assert len(steps) == 7 and steps <= shown(nodes), steps - shown(nodes)


@pytest.mark.parametrize("path", WORKFLOWS, ids=[path.stem for path in WORKFLOWS])
def test_an_example_workflows_nodes_do_not_overlap(path):
    """Opened in ComfyUI's frontend (1.27), the note covered the LVCD Loader's title and its svd and lvcd widgets, and
    LVCD Colorize covered LVCD Line Art's method: the frontend draws each node at its saved position and size, with
    its title bar (30 pixels) above the position."""
    title = 30
    boxes = [(node["type"], *node["pos"], *node["size"]) for node in json.loads(path.read_text())["nodes"]]
    for index, (a, ax, ay, aw, ah) in enumerate(boxes):
        for b, bx, by, bw, bh in boxes[index + 1 :]:
            apart = ax + aw <= bx or bx + bw <= ax or ay + ah <= by - title or by + bh <= ay - title
            assert apart, f"{a} and {b} overlap"
