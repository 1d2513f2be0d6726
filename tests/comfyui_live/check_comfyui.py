"""Manual check of the lvcd node pack (``comfyui/``) in a real ComfyUI: start-up, /object_info, the example workflows
in the real frontend, and real prompts through the HTTP API with the demo model (colorize, line art, bad inputs,
Cancel, progress, caching).

    python check_comfyui.py --comfyui /path/to/ComfyUI --start [--frames /path/to/numbered/pngs]

Run it with ComfyUI's Python (it needs ComfyUI's aiohttp and av, the lvcd library, and playwright + a Chromium for the
frontend part: ``--chromium``, or ``--no-browser``). It links the pack into ``custom_nodes/lvcd-nodes`` and the demo
weights into ``models/checkpoints`` when they are not there, writes its inputs into ComfyUI's ``input/``
(``lvcd_check_*``), puts random informative-drawings weights in ``models/lvcd`` for one run (removed after), and with ``--start`` starts ComfyUI (``--cpu``) itself and stops it at the end; without it, it uses
the ComfyUI running at ``--url``. Results: a line per check, ``<results>/report.json``, exit status 1 if any failed.
CPU: the whole check takes several minutes (the demo model at 64x64, a few steps per run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import api_checks  # noqa: E402 (beside this file, on the path just set)
import inputs  # noqa: E402

PACK_NAME = "lvcd-nodes"
NODES = ("LVCDLoader", "LVCDColorize", "LVCDLineart")


class Report:
    def __init__(self):
        self.rows: list[dict] = []

    def check(self, name: str, ok: bool, detail="") -> bool:
        self.rows.append({"check": name, "ok": bool(ok), "detail": detail})
        print(f"{'PASS' if ok else 'FAIL'}  {name}" + (f"  [{detail}]" if detail not in ("", None) else ""), flush=True)
        return bool(ok)

    @property
    def failed(self) -> list[dict]:
        return [row for row in self.rows if not row["ok"]]


def _default_pack() -> Path | None:
    """The comfyui/ folder of the lvcd clone this script sits in, if it does."""
    for parent in HERE.parents:
        if (parent / "src" / "lvcd").is_dir() and (parent / "comfyui" / "example_workflows").is_dir():
            return parent / "comfyui"
    return None


def link_files(comfyui: Path, pack: Path) -> str:
    """The pack in custom_nodes (as the README says), the demo weights in models/checkpoints; their menu names."""
    from lvcd.demo import demo_weights_path

    target = comfyui / "custom_nodes" / PACK_NAME
    if not target.exists():
        target.symlink_to(pack.resolve(), target_is_directory=True)
    weights = comfyui / "models" / "checkpoints" / "lvcd-demo.safetensors"
    if not weights.exists():
        weights.symlink_to(demo_weights_path())
    return weights.name


def start_comfyui(comfyui: Path, python: str, port: int, log: Path) -> subprocess.Popen:
    command = [python, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port)]
    with open(log, "w") as out:
        return subprocess.Popen(command, cwd=comfyui, stdout=out, stderr=subprocess.STDOUT)


def wait_for_server(url: str, process: subprocess.Popen | None, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"ComfyUI exited with status {process.returncode} while starting")
        try:
            urllib.request.urlopen(url + "/system_stats", timeout=5).read()
            return
        except OSError:
            time.sleep(2)
    raise TimeoutError(f"ComfyUI did not answer at {url} in {timeout} s")


def check_startup_log(report: Report, log: Path) -> None:
    text = log.read_text(errors="replace")
    lines = text.splitlines()
    imported = [line for line in lines if "seconds" in line and line.rstrip().endswith(PACK_NAME)]
    report.check("start-up: the pack is in ComfyUI's custom-node import list", imported, imported[:1])
    failed = [line for line in lines if PACK_NAME in line and ("IMPORT FAILED" in line or "Cannot import" in line)]
    report.check("start-up: no import error for the pack", not failed, failed[:2])
    warnings = [line for line in lines if "LVCD" in line or "lvcd" in line.lower() and "warn" in line.lower()]
    report.check("start-up: no LVCD warning (library found)", not any("not installed" in w for w in warnings), "")


def check_object_info(report: Report, url: str, demo_name: str) -> dict:
    info = json.load(urllib.request.urlopen(url + "/object_info"))
    for name in NODES:
        node = info.get(name, {})
        report.check(
            f"/object_info: {name} listed under LVCD", node.get("category") == "LVCD", node.get("display_name")
        )
    loader = info["LVCDLoader"]["input"]["required"]
    report.check(
        "/object_info: the loader's svd menu lists the demo file", demo_name in loader["svd"][0], loader["svd"][0]
    )
    report.check(
        "/object_info: the loader's lvcd menu offers a whole-model choice",
        any(choice.startswith("none") for choice in loader["lvcd"][0]),
        loader["lvcd"][0],
    )
    colorize = info["LVCDColorize"]["input"]
    inputs_ = [*colorize["required"], *colorize.get("optional", {})]
    expected = [
        "pipeline",
        "reference",
        "lineart",
        "steps",
        "seed",
        "overlap",
        "polarity",
        "width",
        "height",
        "keyframes",
        "keyframe_indices",
        "sampler",
        "lineart_levels",
        "reference_frame",
    ]
    report.check("/object_info: LVCDColorize's inputs", inputs_ == expected, inputs_)
    seed = colorize["required"]["seed"][1]
    report.check(
        "/object_info: the seed has ComfyUI's control-after-generate", seed.get("control_after_generate"), seed
    )
    methods = info["LVCDLineart"]["input"]["required"]["method"][0]
    report.check("/object_info: LVCDLineart's methods", "xdog" in methods and "informative" in methods, methods)
    return info


def check_templates(report: Report, url: str, pack: Path) -> None:
    listed = json.load(urllib.request.urlopen(url + "/workflow_templates")).get(PACK_NAME, [])
    names = sorted(path.stem for path in (pack / "example_workflows").glob("*.json"))
    report.check("templates: ComfyUI serves the pack's example workflows", sorted(listed) == names, listed)
    for name in names:
        served = json.load(urllib.request.urlopen(f"{url}/api/workflow_templates/{PACK_NAME}/{name}.json"))
        same = served == json.loads((pack / "example_workflows" / f"{name}.json").read_text())
        report.check(f"templates: {name} is served as saved", same)


def check_browser(report: Report, args, pack: Path, info: dict, results: Path) -> dict:
    import browser

    shots = results / "screens"
    shots.mkdir(parents=True, exist_ok=True)
    found = browser.check_workflows(args.url + "/", pack, PACK_NAME, args.chromium, info, shots)
    for name, result in found.items():
        report.check(
            f"frontend: {name} opens from the template browser, nodes known, widgets in place",
            not result["problems"],
            result["problems"],
        )
    startup = sorted({error for result in found.values() for error in result["startup_errors"]})
    if startup:  # not the pack's: they come before a workflow is opened, with ComfyUI's default graph
        print(f"note: the frontend's own page errors as it started: {startup}")
    return found


def check_in_process(report: Report, args, demo_name: str) -> None:
    """The nodes in one process with ComfyUI's modules: the IMAGE tensors themselves (the API shows 8-bit PNGs)."""
    command = [args.python, str(HERE / "inprocess.py"), str(args.comfyui.resolve()),
               str((args.results / "synth_truth.npz").resolve()), demo_name]  # fmt: skip
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=1800)
    if not report.check("in-process: the nodes run with ComfyUI's modules", done.returncode == 0, done.stderr[-1500:]):
        return
    found = json.loads(done.stdout.strip().splitlines()[-1])
    for node, image in found.items():
        ok = image["dtype"] == "torch.float32" and image["device"] == "cpu" and 0 <= image["min"] <= image["max"] <= 1
        report.check(
            f"in-process: {node}'s IMAGE is float32 in [0, 1] on the CPU", ok and image["shape"][-1] == 3, image
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--comfyui", type=Path, required=True, help="the ComfyUI folder (main.py, models/, input/)")
    parser.add_argument(
        "--pack",
        type=Path,
        default=_default_pack(),
        help="the node pack folder (default: the comfyui/ of the lvcd clone this script is in)",
    )
    parser.add_argument("--url", default="http://127.0.0.1:8188")
    parser.add_argument("--start", action="store_true", help="start ComfyUI (--cpu) here and stop it at the end")
    parser.add_argument("--python", default=sys.executable, help="ComfyUI's Python (with --start)")
    parser.add_argument("--log", type=Path, help="ComfyUI's log, to check its start-up (default with --start)")
    parser.add_argument("--frames", type=Path, help="a folder of numbered colour PNGs (real frames) to try too")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--no-browser", action="store_true", help="skip the frontend checks")
    parser.add_argument("--hub", action="store_true", help="also try huggingface-cache with nothing cached (slow)")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    args = parser.parse_args()
    args.url = args.url.rstrip("/")
    if args.pack is None or not (args.pack / "example_workflows").is_dir():
        parser.error(
            f"--pack {args.pack} is not the node pack folder (give it when this script is not in an lvcd clone)"
        )

    report = Report()
    demo_name = link_files(args.comfyui, args.pack)
    names = inputs.prepare(args.comfyui / "input", args.results, args.frames)
    process = None
    if args.start:
        port = int(args.url.rsplit(":", 1)[1])
        args.log = args.log or args.results / "comfyui.log"
        process = start_comfyui(args.comfyui, args.python, port, args.log)
    try:
        wait_for_server(args.url, process)
        if args.log is not None:
            check_startup_log(report, args.log)
        info = check_object_info(report, args.url, demo_name)
        check_templates(report, args.url, args.pack)
        ui_prompts = {}
        if not args.no_browser:
            ui_prompts = {
                name: found["prompt"]
                for name, found in check_browser(report, args, args.pack, info, args.results).items()
            }
        asyncio.run(api_checks.run_all(report, args, names, demo_name, ui_prompts))
        check_in_process(report, args, demo_name)
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=60)
    (args.results / "report.json").write_text(json.dumps(report.rows, indent=1, default=str))
    print(
        f"\n{len(report.rows) - len(report.failed)} passed, {len(report.failed)} failed; {args.results / 'report.json'}"
    )
    return 1 if report.failed else 0


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
