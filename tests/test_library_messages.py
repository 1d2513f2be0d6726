"""The Python API's messages are in the library's words (``weights=``, ``extract_lineart='xdog'``, ``device='cuda'``,
"the SVD weights file ..."), never another command's flags; each command keeps its own flags (``lvcd lineart``:
--weights / --method, ``lvcd colorize``: --lineart-weights / --lineart-method, --svd / --lvcd, --device)."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest

from lvcd import LVCDPipeline
from lvcd.errors import InputError, WeightsError

LINE_ART = np.zeros((3, 64, 64, 3), np.uint8)  # colour frames to extract from (none is read before the errors)
REFERENCE = np.zeros((64, 64, 3), np.uint8)


def _flags(message: str) -> list[str]:
    """The `--flag`s a message names, outside `code spans` (the Hugging Face command it quotes has its own)."""
    return re.findall(r"(?<![\w-])--[a-z][\w-]*", re.sub(r"`[^`]*`", "", message))


@pytest.fixture(scope="module")
def demo_pipe() -> LVCDPipeline:
    return LVCDPipeline.from_pretrained("demo", lazy=True)  # headers only: no test here needs the weights read


@pytest.fixture
def no_lineart_weights(monkeypatch, tmp_path):
    """A machine without sk_model.pth anywhere lvcd looks."""
    monkeypatch.delenv("LVCD_LINEART_WEIGHTS", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr("lvcd.lineart.extractor._huggingface_cached", lambda filename: None)


def test_missing_line_art_weights_are_said_in_the_pipelines_words(demo_pipe, no_lineart_weights):
    with pytest.raises(WeightsError) as err:
        demo_pipe(REFERENCE, LINE_ART, extract_lineart="informative", progress=False)
    message = str(err.value)
    assert "sk_model.pth was not found" in message and "\n" not in message
    assert "pass extract_lineart=get_extractor('informative', weights=PATH)" in message
    assert "Without weights, extract_lineart='xdog' works" in message
    assert _flags(message) == [], message


def test_get_extractor_names_its_keyword_and_commands_their_flags(no_lineart_weights):
    from lvcd.lineart import get_extractor

    with pytest.raises(WeightsError) as err:
        get_extractor("informative")
    assert "then pass weights=PATH" in str(err.value) and "line-art method 'xdog' works" in str(err.value)
    assert _flags(str(err.value)) == []
    with pytest.raises(WeightsError, match=r"pass --lineart-weights PATH .*--lineart-method xdog works"):
        get_extractor("informative", options=("--lineart-weights", "--lineart-method"))
    with pytest.raises(InputError, match=r"^line-art method 'sketchy' is not one of informative"):
        get_extractor("sketchy")


def test_an_unknown_method_names_extract_lineart(demo_pipe):
    with pytest.raises(InputError, match=r"^extract_lineart='sketchy' is not one of informative, "):
        demo_pipe(REFERENCE, LINE_ART, extract_lineart="sketchy", progress=False)


def test_the_xdog_warning_is_in_the_callers_words(demo_pipe):
    from lvcd.lineart import get_extractor

    # reference_frame outside the shot: refused right after the extractor is made, before anything is computed
    with pytest.warns(UserWarning, match="outside LVCD's training distribution") as caught:
        with pytest.raises(InputError, match="reference_frame 5 is outside the shot of 3 frames"):
            demo_pipe(REFERENCE, LINE_ART, extract_lineart="xdog", reference_frame=5, progress=False)
    texts = [str(w.message) for w in caught if "training distribution" in str(w.message)]
    assert texts and all("line-art method 'informative'" in t and _flags(t) == [] for t in texts), texts
    assert "Use --method informative" in get_extractor("xdog", options=("--weights", "--method")).warning
    colorize = get_extractor("xdog", options=("--lineart-weights", "--lineart-method"))
    assert "Use --lineart-method informative" in colorize.warning


def test_missing_model_files_are_named_without_flags(tmp_path):
    svd, lvcd = tmp_path / "svd.safetensors", tmp_path / "lvcd.ckpt"
    with pytest.raises(WeightsError) as err:
        LVCDPipeline.from_single_file(svd, lvcd)
    message = str(err.value)
    assert f"Neither weights file exists: the SVD weights file {svd} and the LVCD weights file {lvcd}." in message
    assert _flags(message) == [], message
    from lvcd.weights import check_weights_exist

    with pytest.raises(WeightsError, match=re.escape(f"--svd {svd} and --lvcd {lvcd}.")):
        check_weights_exist(svd, lvcd, ("--svd", "--lvcd"))  # as `lvcd colorize` and `lvcd convert` check them


@pytest.fixture
def no_cuda(monkeypatch):
    """A CPU-only torch (whatever this machine has), and no weights read or downloaded by the constructors."""
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)

    def no_weights(*args, **kwargs):
        raise AssertionError("weights were read before the device was checked")

    monkeypatch.setattr("lvcd.pipeline.open_model", no_weights)
    monkeypatch.setattr("lvcd.pipeline.hub_file", no_weights)


CUDA_LINE = "device='cuda': this machine (or this torch build) has no CUDA device; use device='cpu'."


@pytest.mark.parametrize(
    "make",
    [
        lambda path: LVCDPipeline.from_single_file(path, device="cuda"),
        lambda path: LVCDPipeline.from_single_file(path, device="cuda", lazy=True),
        lambda path: LVCDPipeline.from_pretrained("demo", device="cuda"),
        lambda path: LVCDPipeline.from_pretrained(device="cuda"),  # the official files: nothing downloaded first
    ],
    ids=["from_single_file", "lazy", "demo", "hub"],
)
def test_a_cuda_device_on_a_cpu_only_torch_is_one_line_before_any_weights(no_cuda, make):
    from lvcd.demo import demo_weights_path

    with pytest.raises(InputError) as err:
        make(demo_weights_path())
    assert str(err.value) == CUDA_LINE


def test_the_constructor_and_the_extractor_check_their_device_too(no_cuda):
    from lvcd.demo import demo_weights_path
    from lvcd.lineart import get_extractor
    from lvcd.weights import open_model as read_headers

    pending = read_headers(demo_weights_path())  # the model on the meta device
    with pytest.raises(InputError) as err:
        LVCDPipeline(pending, device="cuda")
    assert str(err.value) == CUDA_LINE
    with pytest.raises(InputError) as err:
        get_extractor("xdog", device="cuda")
    assert str(err.value) == CUDA_LINE
    with pytest.raises(InputError, match=r"^device='mps': lvcd runs on cpu or cuda"):
        LVCDPipeline(pending, device="mps")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert LVCDPipeline(pending, device="cpu").device.type == "cpu"
