"""Load the official weight files into the LVCD model: roles, a strict key report, meta build, one copy in memory.

Files (read by :mod:`lvcd.state_dict`, the one reader, which also handles the restricted unpickling):
- ``svd.safetensors``: Stability's SVD img2vid checkpoint (UNet, CLIP image tower, VAE, conditioner VAE encoder).
- ``lvcd.ckpt``: LVCD's Lightning checkpoint, ``{'state_dict': {control_model.* + 160 UNet attention tensors}}``.
- Our own safetensors written by ``lvcd convert`` (the LVCD-trained subset, or the whole model, optionally fp16).

    >>> model, report = load_model("svd.safetensors", "lvcd.ckpt", dtype=torch.bfloat16, device="cuda")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lvcd.config import LVCDConfig, config_from_dict, config_to_dict, get_config
from lvcd.errors import WeightsError, setting
from lvcd.io.atomic import atomic_output
from lvcd.io.space import check_free_space
from lvcd.model import PART_PREFIXES, PARTS, LVCDModel
from lvcd.state_dict import KeyReport, check_keys
from lvcd.state_dict import WeightsFile as _WeightsFile

SVD_URL = "https://huggingface.co/stabilityai/stable-video-diffusion-img2vid (file svd.safetensors; licence gate: accept it on the page, then `hf auth login`)"
LVCD_URL = "https://huggingface.co/luckyhzt/lvcd_pretrained_models (file lvcd.ckpt)"

# Keys of the official files that the official model holds but never computes with.
KNOWN_UNUSED_KEYS = frozenset(
    "conditioner.embedders.0.open_clip.model." + k
    for k in (
        "positional_embedding",
        "text_projection",
        "logit_scale",
        "token_embedding.weight",
        "ln_final.weight",
        "ln_final.bias",
    )
)
KNOWN_UNUSED_PREFIXES = ("conditioner.embedders.3.encoder.decoder.", "conditioner.embedders.3.encoder.post_quant_conv.")

# Metadata key under which our safetensors files carry the whole model config (lvcd.config.config_to_dict).
MODEL_CONFIG_KEY = "lvcd_model_config"

# Parts whose weights stay in float32 unless asked otherwise (the official runs the VAE in fp32).
VAE_PARTS = ("cond_encoder", "first_stage")


def is_known_unused(key: str) -> bool:
    return key in KNOWN_UNUSED_KEYS or key.startswith(KNOWN_UNUSED_PREFIXES)


class WeightsFile(_WeightsFile):
    """A weights file read by the one reader (:class:`lvcd.state_dict.WeightsFile`), seen as LVCD weights."""

    def kind(self) -> str:
        """'svd', 'lvcd', 'full' or 'unknown' (:func:`classify_keys`)."""
        return classify_keys(self.keys())

    def model_config(self) -> LVCDConfig | None:
        """The model config a file of ours carries in its metadata (``MODEL_CONFIG_KEY``), else None."""
        text = self.metadata().get(MODEL_CONFIG_KEY)
        if text is None:
            return None
        try:
            return config_from_dict(json.loads(text))
        except (ValueError, TypeError, RecursionError) as err:  # RecursionError: JSON nested too deep to read
            detail = " ".join(str(err).split()).rstrip(".")[:200] or type(err).__name__
            raise WeightsError(
                f"{self.path} carries an unreadable model config ({detail}); pass --config (config= in Python): a "
                "preset name or a JSON config, for the model this file holds."
            ) from None


def _where_to_get(role: str) -> str:
    if role == "svd":
        return f"Get svd.safetensors from {SVD_URL}."
    if role == "lvcd":
        return f"Get lvcd.ckpt from {LVCD_URL}."
    return ""


def classify_keys(keys) -> str:
    """'svd' (UNet+conditioner+VAE, no ControlNet), 'lvcd' (ControlNet + trained attention), 'full' (both),
    or 'unknown'."""
    keys = list(keys)
    has = {part: any(k.startswith(prefix) for k in keys) for part, prefix in PART_PREFIXES.items()}
    if has["controlnet"] and (has["first_stage"] or has["clip"]):
        return "full"
    if has["controlnet"]:
        return "lvcd"
    if has["unet"] or has["first_stage"] or has["clip"]:
        return "svd"
    return "unknown"


# ------------------------------------------------------------------------------------------------
# Loading into the model
# ------------------------------------------------------------------------------------------------


@dataclass
class LoadReport(KeyReport):
    """What a load took from where (``loaded``, ``ignored``), and everything that did not fit (the key report)."""

    loaded: dict[str, int] = field(default_factory=dict)  # file -> number of tensors taken from it
    ignored: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"loaded {n} tensors from {f}" for f, n in self.loaded.items()]
        lines.append(
            f"ignored {len(self.ignored)} known-unused tensors (CLIP text-tower leftovers, conditioner VAE decoder)"
        )
        return "\n".join(lines + self.lines())


def _check_roles(svd: WeightsFile | None, lvcd: WeightsFile | None) -> None:
    svd_kind = svd.kind() if svd else None
    lvcd_kind = lvcd.kind() if lvcd else None
    if svd_kind == "lvcd" and lvcd_kind in ("svd", None):
        raise WeightsError(
            f"{svd.path} is an LVCD checkpoint (ControlNet weights), given where svd.safetensors was expected"
            + (
                f", and {lvcd.path} is the SVD checkpoint: the two files are swapped. Pass --svd {lvcd.path} --lvcd {svd.path} "
                f"(in Python: svd_path={str(lvcd.path)!r}, lvcd_path={str(svd.path)!r})."
                if lvcd
                else "."
            )
        )
    if lvcd_kind == "svd":
        raise WeightsError(
            f"{lvcd.path} is an SVD checkpoint (no ControlNet weights), given where lvcd.ckpt was expected. {_where_to_get('lvcd')}"
        )
    for f, kind in ((svd, svd_kind), (lvcd, lvcd_kind)):
        if f is not None and kind == "unknown":
            prefixes = sorted({k.split(".")[0] for k in f.keys()})[:6]
            raise WeightsError(
                f"{f.path} is not an SVD/LVCD checkpoint: none of its {len(f.keys())} tensors belong to the LVCD model "
                f"(its top-level names: {', '.join(prefixes)}). {_where_to_get(f.role)}"
            )


def _target_dtype(key: str, dtype: torch.dtype, vae_dtype: torch.dtype) -> torch.dtype:
    for part in VAE_PARTS:
        if key.startswith(PART_PREFIXES[part]):
            return vae_dtype
    return dtype


# How the Python API names the two files in messages (lvcd.errors.setting); a command passes its ("--svd", "--lvcd").
WEIGHTS_FILES = ("the SVD weights file {}", "the LVCD weights file {}")


def check_weights_exist(svd_path, lvcd_path, options: tuple[str, str] = WEIGHTS_FILES) -> None:
    """Both official files named at once when both are missing (each with where to get it), as the caller's
    ``options`` name them (``--svd``/``--lvcd`` for a command)."""
    missing = [(role, Path(p)) for role, p in (("svd", svd_path), ("lvcd", lvcd_path)) if p and not Path(p).exists()]
    if len(missing) == 2:
        raise WeightsError(
            f"Neither weights file exists: {setting(options[0], missing[0][1])} and "
            f"{setting(options[1], missing[1][1])}. "
            f"{_where_to_get('svd')} {_where_to_get('lvcd')}"
        )


def _check_fit(svd_path, lvcd_path, config, parts: tuple[str, ...], strict: bool = True):
    """The model on the meta device, its config, where each tensor comes from, and the key report, from the files'
    headers only (no tensor read); with ``strict`` a mismatch raises WeightsError."""
    check_weights_exist(svd_path, lvcd_path)
    svd = WeightsFile(svd_path, "svd", _where_to_get("svd")) if svd_path else None
    lvcd = WeightsFile(lvcd_path, "lvcd", _where_to_get("lvcd")) if lvcd_path else None
    _check_roles(svd, lvcd)
    files = [f for f in (svd, lvcd) if f is not None]
    if not files:
        raise WeightsError("No weights given: pass svd.safetensors (and lvcd.ckpt), or one converted whole-model file.")
    cfg = get_config(config if config is not None else config_of_files(files))

    with torch.device("meta"):
        model = LVCDModel(cfg, parts)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    built = tuple(PART_PREFIXES[p] for p in model.parts)

    report = LoadReport()
    source: dict[str, WeightsFile] = {}
    for f in files:  # later files override earlier ones (lvcd.ckpt over svd.safetensors), as the official loading order
        for key in f.keys():
            if is_known_unused(key):
                report.ignored.append(key)
            elif key.startswith(built) or not key.startswith(tuple(PART_PREFIXES.values())):
                source[key] = f  # tensors of parts not built (e.g. the VAE for a UNet-only load) are skipped
    keys = check_keys({key: f.shape(key) for key, f in source.items()}, expected)
    report.missing, report.shape_mismatch = keys.missing, keys.shape_mismatch
    report.unexpected = [f"{key} ({source[key].path.name})" for key in keys.unexpected]
    for key in [*keys.unexpected, *(k for k, _, _ in keys.shape_mismatch)]:
        del source[key]  # never assigned: with strict=False a mis-shaped tensor is filled like a missing one
    if strict and not report.ok:
        raise WeightsError(_mismatch_message(files, report, cfg))
    return model, cfg, source, report, expected


def check_fit(svd_path, lvcd_path=None, config=None, parts: tuple[str, ...] = PARTS) -> LVCDConfig:
    """Check, from the files' headers alone (seconds, nothing loaded), that the files hold ``parts`` of the model
    ``config`` (None: the config a file of ours carries, else the official size); returns that config, or raises the
    WeightsError ``load_model`` would raise."""
    return _check_fit(svd_path, lvcd_path, config, parts)[1]


def load_model(
    svd_path: str | os.PathLike | None,
    lvcd_path: str | os.PathLike | None = None,
    config: str | os.PathLike | LVCDConfig | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    vae_dtype: torch.dtype = torch.float32,
    parts: tuple[str, ...] = PARTS,
    strict: bool = True,
) -> tuple[LVCDModel, LoadReport]:
    """Build ``LVCDModel`` on the meta device and fill it from the files (``lvcd_path`` overrides ``svd_path``).

    Each tensor is read once, cast, moved to ``device`` and assigned: peak host memory is about one copy of the
    weights. With ``strict`` any missing, unexpected or mis-shaped tensor raises ``WeightsError`` with the report.
    ``config=None``: the config a file of ours carries (the last file that has one), else the official full size.
    """
    pending = open_model(svd_path, lvcd_path, config, dtype, vae_dtype, parts, strict)
    return pending.load(device), pending.report


def open_model(
    svd_path: str | os.PathLike | None,
    lvcd_path: str | os.PathLike | None = None,
    config: str | os.PathLike | LVCDConfig | None = None,
    dtype: torch.dtype = torch.float32,
    vae_dtype: torch.dtype = torch.float32,
    parts: tuple[str, ...] = PARTS,
    strict: bool = True,
) -> PendingModel:
    """``load_model``'s first half: the files checked from their headers (seconds; the same errors) and the model
    built on the meta device in the dtypes the load gives it; ``PendingModel.load`` reads the tensors."""
    model, _, source, report, expected = _check_fit(svd_path, lvcd_path, config, parts, strict)
    meta = {
        key: torch.empty(shape, dtype=_target_dtype(key, dtype, vae_dtype), device="meta")
        for key, shape in expected.items()
    }
    model.load_state_dict(meta, strict=True, assign=True)
    return PendingModel(model.eval().requires_grad_(False), report, source, expected, dtype, vae_dtype)


@dataclass
class PendingModel:
    """A model whose files are checked and whose tensors are not read yet: ``model`` is on the meta device, in the
    dtypes and sizes the load gives it (its config, dtypes and memory can be used; it cannot compute until
    ``load``)."""

    model: LVCDModel
    report: LoadReport
    source: dict[str, WeightsFile]  # key -> the file its tensor is read from
    expected: dict[str, tuple[int, ...]]  # key -> shape
    dtype: torch.dtype
    vae_dtype: torch.dtype

    def read(self, keys: Iterable[str] | None = None, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
        """The tensors of ``keys`` (None: all the model's), each read once from its file, cast to the dtype the load
        gives it and moved to ``device``; keys the files lack (``strict=False`` only) are zeros."""
        device = torch.device(device)
        tensors = {}
        for key in self.expected if keys is None else keys:
            dtype = _target_dtype(key, self.dtype, self.vae_dtype)
            f = self.source.get(key)
            if f is None:  # missing or mis-shaped in the files (strict=False only)
                tensors[key] = torch.zeros(self.expected[key], device=device, dtype=dtype)
                continue
            tensors[key] = f.get(key).to(device=device, dtype=dtype)
            self.report.loaded[str(f.path)] = self.report.loaded.get(str(f.path), 0) + 1
        return tensors

    def load(self, device: str | torch.device = "cpu") -> LVCDModel:
        """Read every tensor once, cast it, move it to ``device`` and assign it to ``model``; returns ``model``."""
        self.model.load_state_dict(self.read(device=device), strict=True, assign=True)
        return self.model.eval().requires_grad_(False)


def config_of_files(files: list[WeightsFile]) -> LVCDConfig | None:
    """The model config carried by the given files (the last one that carries one wins), or None."""
    found = None
    for f in files:
        found = f.model_config() or found
    return found


def model_metadata(config: LVCDConfig, **extra: str) -> dict[str, str]:
    """safetensors metadata of a file of ours: the model config (so the file loads without --config) and ``extra``."""
    return {
        "format": "pt",
        "lvcd_config": json.dumps(config.name),
        MODEL_CONFIG_KEY: json.dumps(config_to_dict(config)),
        **extra,
    }


def _mismatch_message(files: list[WeightsFile], report: LoadReport, cfg: LVCDConfig) -> str:
    """One line: how many tensors do not fit and one example of each kind (a real mismatch lists hundreds), then
    what to do."""
    names = " + ".join(str(f.path) for f in files)
    kinds = [f"{len(report.missing)} missing from the files (e.g. {report.missing[0]})"] if report.missing else []
    if report.unexpected:
        kinds.append(f"{len(report.unexpected)} unknown to the model (e.g. {report.unexpected[0]})")
    if report.shape_mismatch:
        key, got, want = report.shape_mismatch[0]
        kinds.append(
            f"{len(report.shape_mismatch)} of another shape (e.g. {key}: {got} in the file, {want} in the model)"
        )
    hint = (
        "They are of another model or another config: pass the official svd.safetensors + lvcd.ckpt, or give --config "
        "(config= in Python) for a model of another size."
    )
    try:
        carried = config_of_files(files)
    except WeightsError:  # an unreadable carried config, bypassed by --config: it explains no mismatch
        carried = None
    roles = {f.role for f in files}
    if report.missing and "lvcd" not in roles and all(_is_lvcd_trained_key(k) for k in report.missing):
        hint = f"The ControlNet weights are missing: pass lvcd.ckpt as well. {_where_to_get('lvcd')}"
    elif report.missing and "svd" not in roles and not any(_is_lvcd_trained_key(k) for k in report.missing):
        hint = f"The SVD weights (UNet, CLIP, VAE) are missing: pass svd.safetensors as well. {_where_to_get('svd')}"
    elif carried is not None and carried != cfg:
        hint = (
            f"The files carry the config of their own model ('{carried.name}'): leave --config out (config=None in "
            "Python) to use it."
        )
    return f"Weights {names} do not fit the '{cfg.name}' model: {'; '.join(kinds)}. {hint}"


def _is_lvcd_trained_key(key: str) -> bool:
    return key.startswith(PART_PREFIXES["controlnet"]) or (
        key.startswith(PART_PREFIXES["unet"])
        and (".transformer_blocks.0.attn1." in key or ".time_stack.0.attn1." in key)
    )


def load_first_stage(svd_path, config=None, device="cpu", dtype: torch.dtype = torch.float32):
    """Only the VAE (``first_stage_model``) from ``svd.safetensors``, e.g. to pre-encode training latents."""
    model, _ = load_model(
        svd_path, None, config=config, device=device, dtype=dtype, vae_dtype=dtype, parts=("first_stage",)
    )
    return model.first_stage_model


# ------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------


def safetensors_size(shapes: dict[str, tuple[int, ...]], dtype: torch.dtype, metadata: dict[str, str]) -> int:
    """Bytes of the safetensors file that :func:`save_safetensors` writes for tensors of these ``shapes``, all in
    ``dtype``, with ``metadata``: the 8-byte header length, the JSON header (padded to 8 bytes) and the data."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    header: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for key in sorted(shapes):  # all of one dtype: safetensors lays them out by name
        size = math.prod(shapes[key]) * itemsize
        header[key] = {
            "dtype": _SAFETENSORS_DTYPE_NAMES.get(dtype, str(dtype)),  # other dtypes: a longer name, a bigger estimate
            "shape": list(shapes[key]),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    header_bytes = len(json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode())
    return 8 + -(-header_bytes // 8) * 8 + offset


_SAFETENSORS_DTYPE_NAMES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64"}


def lvcd_trained_keys(model: LVCDModel) -> list[str]:
    """The key set LVCD trains and ``lvcd.ckpt`` holds: all ControlNet tensors + the UNet's spatial and temporal
    self-attention (``attn1``) projections."""
    return [key for key in model.state_dict() if _is_lvcd_trained_key(key)]


def save_safetensors(
    tensors: dict[str, torch.Tensor],
    path: str | os.PathLike,
    metadata: dict[str, str] | None = None,
    exclusive: bool = False,
    overwrite: bool = True,
    sweep: bool = True,
) -> Path:
    """Write ``tensors`` (None values are left out) to a safetensors file, atomically (:func:`lvcd.io.atomic_output`;
    ``exclusive``: refused while another process writes the same file; ``overwrite=False``: a file that appeared at
    ``path`` meanwhile is kept and a WeightsError raised; ``sweep=False``: the folder's leftovers are not looked for,
    for a writer of many files there that sweeps it once)."""
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    try:
        with atomic_output(path, overwrite=overwrite, exclusive=exclusive, sweep=sweep) as temporary:
            try:
                save_file(
                    {k: v.detach().contiguous().cpu() for k, v in tensors.items() if v is not None},
                    str(temporary),
                    metadata=metadata,
                )
            except SafetensorError as err:  # an I/O failure (a full disk) arrives as text: make it the OSError it is
                code = re.search(r"os error (\d+)", str(err))
                if code is None:
                    raise
                raise OSError(int(code.group(1)), os.strerror(int(code.group(1))), str(path)) from err
    except FileExistsError:
        if overwrite or not Path(path).is_file():  # another cause (a parent path that is a file): as it is
            raise
        raise WeightsError(
            f"{path} was created by another process while this one was writing it; it was kept. Pass --overwrite "
            "(overwrite=True in Python) to replace it, or choose another output name."
        ) from None
    return Path(path)


def _refuse_dropping_trained_tensors(lvcd_path) -> None:
    """``--subset lvcd`` keeps only the lvcd.ckpt key set: refuse (one line, from the file's header, before anything
    loads) an lvcd file holding UNet tensors outside it, e.g. a checkpoint of ``train.trainable = "all"``, whose
    trained UNet the subset would drop."""
    weights = WeightsFile(lvcd_path, "lvcd")
    if weights.format != "safetensors":  # the official lvcd.ckpt holds the lvcd set; a pickle is read only to load it
        return
    if any(key.startswith((PART_PREFIXES["first_stage"], PART_PREFIXES["clip"])) for key in weights.keys()):
        return  # an svd or full file given as --lvcd: the loader says what is wrong with it
    unet = PART_PREFIXES["unet"]
    dropped = [key for key in weights.keys() if key.startswith(unet) and not _is_lvcd_trained_key(key)]
    if dropped:
        made = (weights.metadata() or {}).get("lvcd_subset")
        made = f" (its lvcd_subset is {made!r})" if made else ""
        raise WeightsError(
            f"{lvcd_path} holds {len(dropped)} UNet tensors outside the lvcd subset{made}, e.g. {dropped[0]}, which "
            "--subset lvcd would drop; use --subset full (subset='full' in Python) to keep them."
        )


def check_converted_name(output) -> None:
    """Refuse (WeightsError) an output name that does not end in ``.safetensors``: :func:`convert` writes safetensors,
    and a ``.ckpt`` / ``.pt`` name would make other tools (the official code, ComfyUI) read it as a torch pickle."""
    output = Path(output)
    if output.suffix.lower() == ".safetensors":
        return
    torch_name = output.suffix.lower() in (".ckpt", ".pt", ".pth", ".bin")
    suggested = output.with_suffix(".safetensors").name if torch_name else output.name + ".safetensors"
    raise WeightsError(
        f"{output}: the converted weights are a safetensors file, so the name must end in .safetensors (e.g. "
        f"{suggested}); other tools read a .ckpt or .pt name as a torch pickle and fail."
    )


def convert(
    svd_path,
    lvcd_path,
    output,
    subset: str = "lvcd",
    dtype: torch.dtype = torch.float32,
    config=None,
    overwrite: bool = False,
) -> Path:
    """Write one safetensors file with official key names: ``subset='lvcd'`` (the trained tensors, loadable like
    lvcd.ckpt) or ``'full'`` (the whole model: a single file replacing both). The files are checked and the output's
    size computed from their headers first: an output whose filesystem lacks the room is refused (InputError)
    before any tensor is read, and only the tensors written are read."""
    output = Path(output)
    check_converted_name(output)
    for given in (svd_path, lvcd_path):
        if given and Path(given).resolve() == output.resolve():
            raise WeightsError("The output would overwrite an input file; choose another output name.")
    if output.exists() and not overwrite:
        raise WeightsError(
            f"{output} exists; pass --overwrite (overwrite=True in Python) or choose another output name."
        )
    if subset not in ("lvcd", "full"):
        raise ValueError("subset must be 'lvcd' or 'full'")
    if subset == "lvcd" and lvcd_path:
        _refuse_dropping_trained_tensors(lvcd_path)
    parts = ("unet", "controlnet") if subset == "lvcd" else PARTS
    # The files checked and the output's size known from their headers, before a tensor is read: a disk without room
    # for it is said now, not after minutes of reading gigabytes. Only the tensors written are read.
    pending = open_model(svd_path, lvcd_path, config=config, dtype=dtype, vae_dtype=dtype, parts=parts)
    keys = lvcd_trained_keys(pending.model) if subset == "lvcd" else list(pending.expected)
    meta = model_metadata(pending.model.config, lvcd_subset=subset)
    needed = safetensors_size({key: pending.expected[key] for key in keys}, dtype, meta)
    check_free_space(
        output, needed, f"the converted weights ({len(keys)} tensors, {str(dtype).removeprefix('torch.')})"
    )
    return save_safetensors(pending.read(keys), output, metadata=meta, exclusive=True, overwrite=overwrite)
