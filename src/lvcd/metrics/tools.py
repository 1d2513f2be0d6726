"""The networks and helpers a run needs, built from user-supplied files; each absent one skips its metric.

A metric whose weights were not given is *skipped with a reason* and the others still run. A weights file that
was given but is wrong (missing, of another network) is an error: the user asked for that metric.

    >>> tools = build_tools(["psnr", "lpips"], lpips_weights=["alex.pth", "alexnet-owt-7be5be79.pth"])  # doctest: +SKIP
    >>> tools.skipped          # {} when everything asked for could be set up                             # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lvcd.errors import InputError
from lvcd.metrics.optional import MissingDependencyError, import_distance_transform

# The paper's seven metrics, every metric lvcd computes, and what a run computes unless told otherwise.
PAPER_METRICS = ("psnr", "ssim", "lpips", "fid", "fvd", "edmd", "tc")
ALL_METRICS = ("psnr", "ssim", "lpips", "fid", "fvd", "edmd", "edmd_gt", "tc", "tc_mse", "region")
DEFAULT_METRICS = tuple(name for name in ALL_METRICS if name != "tc_mse")
METRIC_SETS = {"default": DEFAULT_METRICS, "all": ALL_METRICS, "paper": PAPER_METRICS}
WEIGHTS_DIR_ENV = "LVCD_METRIC_WEIGHTS"

# File names looked for in --weights-dir / $LVCD_METRIC_WEIGHTS, in order of preference.
KNOWN_FILES = {
    "lpips": ("alex.pth", "alexnet-owt-*.pth"),
    "fid": ("pt_inception-2015-12-05*.pth", "inception-2015-12-05.pt"),
    "fvd": ("i3d_torchscript.pt", "i3d_pretrained_400.pt"),
    "raft": (
        "raft-things.pth",
        "raft_large_C_T_V1-*.pth",
        "raft_large_*.pth",
        "raft-sintel.pth",
        "raft-kitti.pth",
        "raft-chairs.pth",
        "raft*.pt",
    ),  # RAFT-large only: never the authors' raft-small.pth
}


@dataclass
class MetricTools:
    """Callables for the weighted metrics (None when absent), why any were skipped, and what was used."""

    lpips: Callable | None = None  # (x, y) (N, 3, H, W) in [0, 1] -> (N,)
    inception: Callable | None = None  # (N, 3, H, W) in [0, 1] -> (N, D) numpy
    i3d: Callable | None = None  # (B, T, 3, H, W) in [0, 1] -> (B, D) numpy
    sketch: Any = None  # LineartExtractor (``.batch``) or a callable (N, 3, H, W) -> (N, 1, H, W)
    flow: Callable | None = None  # FlowEstimator
    skipped: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # choices made in the user's stead, printed with the results


def parse_metrics(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"psnr,ssim"`` -> ("psnr", "ssim"); None or "default" -> DEFAULT_METRICS (all but ``tc_mse``); "all" ->
    every metric; "paper" -> the paper's seven; unknown names are an error."""
    if text is None:
        return DEFAULT_METRICS
    names = [n.strip().lower() for n in (text.split(",") if isinstance(text, str) else text) if n.strip()]
    if len(names) == 1 and names[0] in METRIC_SETS:
        return METRIC_SETS[names[0]]
    unknown = [n for n in names if n not in ALL_METRICS]
    if unknown or not names:
        what = f"unknown metric(s) {', '.join(unknown)}" if unknown else "no metric given"
        raise InputError(f"{what}; choose from {', '.join(ALL_METRICS)} (or one of {', '.join(METRIC_SETS)})")
    return tuple(n for n in ALL_METRICS if n in names)


def find_weights(directory: str | os.PathLike | None) -> dict[str, list[Path]]:
    """Known weight files present in ``directory`` (default: $LVCD_METRIC_WEIGHTS), by metric."""
    given = directory
    directory = directory or os.environ.get(WEIGHTS_DIR_ENV)
    if not directory:
        return {}
    folder = Path(directory).expanduser()
    if not folder.is_dir():
        what = "--weights-dir" if given else f"${WEIGHTS_DIR_ENV}"
        state = "is not a folder" if folder.exists() else "does not exist"
        raise InputError(
            f"weights folder not found: {what} {folder} {state}; give the folder that holds the metric weights"
            + ("" if given else f", or unset {WEIGHTS_DIR_ENV}")
        )
    found: dict[str, list[Path]] = {}
    for metric, patterns in KNOWN_FILES.items():
        matches = [match for pattern in patterns for match in sorted(folder.glob(pattern))]
        if matches:
            found[metric] = matches  # in order of preference
    return found


def _usable(found: Sequence[Path], allow_torchscript: bool) -> tuple[Path | None, Path | None]:
    """(the first file of ``found`` lvcd may load, the first TorchScript archive passed over for want of
    ``allow_torchscript``)."""
    from lvcd.metrics.checkpoints import is_torchscript

    passed = None
    for file in found:
        if allow_torchscript or not is_torchscript(file):
            return file, passed
        passed = passed or file
    return None, passed


def _torchscript_passed(file: Path, instead: str) -> str:
    return (
        f"{file.name} in the weights folder is a TorchScript archive, a program: pass --allow-torchscript to run it, "
        f"or add {instead}"
    )


SKETCH_OPTIONS = ("--sketch-weights", "--sketch-method")  # how `lvcd evaluate` names the EDMD extractor's options


def sketch_method(method: str | None, weights: str | os.PathLike | None) -> str:
    """The EDMD sketch extractor's method: the one given, else the network when its weights are given, else XDoG."""
    return method or ("informative" if weights else "xdog")


def _sketch_extractor(method: str | None, weights: str | os.PathLike | None, device: str) -> tuple[Any, dict]:
    try:
        from lvcd.lineart import get_extractor
    except ImportError as err:
        raise MissingDependencyError(f"lvcd.lineart (the sketch extractor) is not available: {err}") from None
    chosen = sketch_method(method, weights)
    extractor = get_extractor(chosen, weights=weights, device=device, options=SKETCH_OPTIONS)
    info = {"sketch_method": chosen, "sketch_in_distribution": getattr(extractor, "in_distribution", None)}
    return extractor, info


def build_tools(
    metrics: Sequence[str] = DEFAULT_METRICS,
    *,
    lpips_weights: Sequence[str | os.PathLike] = (),
    inception_weights: str | os.PathLike | None = None,
    i3d_weights: str | os.PathLike | None = None,
    weights_dir: str | os.PathLike | None = None,
    sketch_method: str | None = None,
    sketch_weights: str | os.PathLike | None = None,
    flow: str = "auto",
    raft_weights: str | os.PathLike | None = None,
    raft_iters: int | None = None,
    device: str = "cpu",
    allow_torchscript: bool = False,
    size: tuple[int, int] | None = None,
) -> MetricTools:
    """Load what the selected metrics need; record a reason in ``skipped`` for each that cannot run.

    TorchScript archives (programs, not only weights) run only with ``allow_torchscript``: a file given is then an
    error, a file found in the weights folder is passed over for a plain state dict there, else its metric skipped.
    ``size``: the evaluation size, checked against what the flow needs before any network is loaded."""
    tools = MetricTools()
    defaults = find_weights(weights_dir)
    lpips_files = list(lpips_weights) or defaults.get("lpips", [])
    inception_file, fid_passed = (
        (inception_weights, None) if inception_weights else _usable(defaults.get("fid", []), allow_torchscript)
    )
    i3d_file, fvd_passed = (i3d_weights, None) if i3d_weights else _usable(defaults.get("fvd", []), allow_torchscript)
    raft_file, raft_passed = raft_weights, None
    if raft_file is None and flow != "dis":
        found = defaults.get("raft", [])
        raft_file, raft_passed = (
            (found[0] if found else None, None) if flow == "raft" else _usable(found, allow_torchscript)
        )

    tc_names = [name for name in ("tc", "tc_mse") if name in metrics]
    # Checked before any network loads: each of these would otherwise stop the run after minutes of loading.
    from lvcd.metrics.checkpoints import check_torchscript_consent

    for given, needed, what, instead in (
        (inception_weights, "fid" in metrics, "FID Inception", "pt_inception-2015-12-05-6726825d.pth"),
        (i3d_weights, "fvd" in metrics, "FVD I3D", "i3d_pretrained_400.pt"),
        (raft_weights, bool(tc_names) and flow != "dis", "RAFT", "raft-things.pth"),
    ):
        if given is not None and needed and Path(given).is_file():
            check_torchscript_consent(given, what, allow_torchscript, instead)
    if tc_names:
        from lvcd.metrics.flow import check_flow_options

        check_flow_options(flow, raft_file, raft_iters, raft_passed)
    if tc_names and raft_file is not None and flow != "dis" and size is not None:
        from lvcd.metrics.raft import MIN_SIDE, padded_side

        if padded_side(min(size)) < MIN_SIDE:
            raise InputError(
                f"TC's RAFT flow needs frames of at least {MIN_SIDE}x{MIN_SIDE}, but the evaluation size is "
                f"{size[0]}x{size[1]}; evaluate at a larger size (evaluate --size, batch "
                "--eval-size; the paper's 256x256 is the default), or with DIS flow (evaluate --flow dis)"
            )
    if "lpips" in metrics:
        if lpips_files:
            from lvcd.metrics.lpips import load_lpips

            model = load_lpips(lpips_files, device)
            tools.lpips = lambda x, y: model(x.to(device), y.to(device)).cpu()
            tools.info["lpips_weights"] = [str(f) for f in lpips_files]
        else:
            tools.skipped["lpips"] = (
                "no LPIPS weights: pass --lpips-weights alex.pth --lpips-weights alexnet-owt-7be5be79.pth"
            )
    if "fid" in metrics:
        if inception_file:
            from lvcd.metrics.inception import load_inception

            tools.inception = load_inception(inception_file, device, allow_torchscript)
            tools.info["fid_weights"] = f"{inception_file} ({tools.inception.source})"
            if fid_passed is not None:
                tools.notes.append(
                    f"fid: {Path(inception_file).name} used; {fid_passed.name} (TorchScript) passed over"
                )
        elif fid_passed is not None:
            tools.skipped["fid"] = _torchscript_passed(fid_passed, "pt_inception-2015-12-05-6726825d.pth")
        else:
            tools.skipped["fid"] = "no Inception weights: pass --inception-weights pt_inception-2015-12-05-6726825d.pth"
    if "fvd" in metrics:
        if i3d_file:
            from lvcd.metrics.i3d import load_i3d

            tools.i3d = load_i3d(i3d_file, device, allow_torchscript)
            tools.info["fvd_weights"] = f"{i3d_file} ({tools.i3d.source})"
            if fvd_passed is not None:  # the two I3D networks give different FVD values: say which one ran
                tools.notes.append(
                    f"fvd: {Path(i3d_file).name} used; {fvd_passed.name} beside it (the original FVD network) is "
                    "TorchScript and runs only with --allow-torchscript; the two give different FVD values"
                )
        elif fvd_passed is not None:
            tools.skipped["fvd"] = _torchscript_passed(fvd_passed, "i3d_pretrained_400.pt")
        else:
            tools.skipped["fvd"] = (
                "no I3D weights: pass --i3d-weights i3d_pretrained_400.pt (or i3d_torchscript.pt with "
                "--allow-torchscript)"
            )
    edmd_names = [name for name in ("edmd", "edmd_gt") if name in metrics]
    if edmd_names:
        try:
            import_distance_transform()
            tools.sketch, sketch_info = _sketch_extractor(sketch_method, sketch_weights, device)
            tools.info.update(sketch_info)
        except MissingDependencyError as reason:
            tools.skipped.update(dict.fromkeys(edmd_names, str(reason)))
    if tc_names:
        from lvcd.errors import WeightsError
        from lvcd.metrics.flow import load_flow

        try:
            try:
                tools.flow = load_flow(flow, raft_file, device, raft_iters, allow_torchscript)
            except WeightsError as err:
                if raft_weights is not None or flow != "auto":
                    raise
                # a file found by name in the weights folder that is no RAFT-large: auto falls back to DIS
                tools.flow = load_flow("dis")
                tools.notes.append(
                    f"tc: {Path(raft_file).name} in the weights folder is not RAFT-large ({err}); DIS flow used"
                )
            tools.info["flow"] = tools.flow.name
            if raft_passed is not None:
                used = "DIS flow used" if tools.flow.name == "dis" else f"{Path(raft_file).name} used"
                tools.notes.append("tc: " + _torchscript_passed(raft_passed, "raft-things.pth") + f"; {used}")
            if tools.flow.name == "raft":
                tools.info["raft_weights"] = str(raft_file)
                tools.info["raft_iters"] = getattr(tools.flow, "iters", "the export's own")
        except MissingDependencyError as reason:
            tools.skipped.update(dict.fromkeys(tc_names, str(reason)))
    return tools
