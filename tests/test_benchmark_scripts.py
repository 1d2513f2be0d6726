"""The GPU suite's dry run (the same code path as on a GPU, on CPU with the tiny model) and the sampler-quality and
scanned-line-art benchmarks' smoke runs; the scripts run in-process on minimal settings."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import TINY_CONFIG

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def _script(name: str):
    sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(f"lvcd_benchmark_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_suite_dry_run_measures_every_section(tmp_path):
    suite = _script("gpu_suite")
    result = suite.main(
        ["--dry-run", "--dtypes", "fp32,bf16", "--modes", "eager,channels_last", "--shot-frames", "3",
         "--shot-steps", "1", "--official", str(tmp_path),
         "--output", str(tmp_path / "suite.json"), "--markdown", str(tmp_path / "suite.md")]
    )  # fmt: skip
    assert result["dry_run"] and result["device"] == "cpu"
    assert result["checks"]["all_flash"] and result["checks"]["none_on_math"]
    assert result["checks"]["vae_none_on_math"] and sum(result["checks"]["vae_kernels"].values()) > 0
    assert result["checks"]["merge_vs_exact_max_abs"] < 1e-5
    calls = {(e["mode"], e["dtype"]): e for e in result["denoiser"]}
    assert sorted(calls) == [("channels_last", "bf16"), ("eager", "bf16"), ("eager", "fp32")]  # layout: bf16 only
    call = calls["eager", "fp32"]
    assert call["output_finite"] and call["median_s"] > 0 and call["gflops_per_call"] > 0
    assert calls["channels_last", "bf16"]["output_finite"] and calls["channels_last", "bf16"]["median_s"] > 0
    assert call["memory"]["weights_total_bytes"] > 0
    assert [shot["offload"] for shot in result["shots"]] == [False, False]  # offload has no effect on CPU
    assert all(shot["output_finite"] and shot["seconds_per_output_frame"] > 0 for shot in result["shots"])
    assert all(shot["estimated_peak_bytes"] > 0 for shot in result["shots"])  # beside the measured peak on a GPU
    assert all(list(shot["placement_seconds"]) == ["conditioning", "sampling", "decoding"] for shot in result["shots"])
    assert "skipped" in result["official"]
    assert json.loads((tmp_path / "suite.json").read_text())["benchmark"] == "gpu_suite"
    assert result["complete"] and json.loads((tmp_path / "suite.json").read_text())["complete"]
    assert "DRY RUN" in (tmp_path / "suite.md").read_text() and "INCOMPLETE" not in (tmp_path / "suite.md").read_text()


def test_gpu_suite_killed_midway_keeps_what_it_measured(tmp_path, monkeypatch):
    """The device machine kills a command at its time limit: the files must already hold every finished entry."""
    suite = _script("gpu_suite")

    measure_shot = suite.whole_shot

    def killed_in_the_second_shot(args, config, device, offload):
        if offload:
            raise KeyboardInterrupt  # what a kill looks like to the files: nothing more written
        return measure_shot(args, config, device, offload)

    monkeypatch.setattr(suite, "whole_shot", killed_in_the_second_shot)
    with pytest.raises(KeyboardInterrupt):
        suite.main(
            ["--dry-run", "--dtypes", "fp32", "--shot-frames", "3", "--shot-steps", "1", "--official", str(tmp_path),
             "--output", str(tmp_path / "suite.json"), "--markdown", str(tmp_path / "suite.md")]
        )  # fmt: skip
    saved = json.loads((tmp_path / "suite.json").read_text())
    assert saved["complete"] is False and "skipped" in saved["official"]  # no official code in tmp_path
    assert saved["checks"]["all_flash"] and saved["denoiser"][0]["median_s"] > 0
    assert [shot["seconds_per_output_frame"] > 0 for shot in saved["shots"]] == [True]
    table = (tmp_path / "suite.md").read_text()
    assert "INCOMPLETE" in table and "| eager | fp32 | 64x64 |" in table


def test_gpu_suite_order_puts_the_targets_before_the_compiles(tmp_path, monkeypatch):
    """Compiles take minutes each: the uncompiled calls, the official call and the whole shots (the issue's targets)
    come first, the compiled calls last with bf16 first; a compiled model's memory is given back (gc + dynamo)."""
    suite = _script("gpu_suite")
    order = []
    for name in ("official_section", "shot_section"):
        real = getattr(suite, name)

        def spy(*args, _real=real, _name=name, **kwargs):
            order.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(suite, name, spy)

    measure_call, measured = suite.denoiser_call, []

    def call_spy(model, *args, **kwargs):
        if model.unet._compiled_call_impl is not None:
            order.append("compiled")
            return dict(measured[-1])  # no compiling in a unit test: the order is the point
        order.append("uncompiled")
        measured.append(measure_call(model, *args, **kwargs))
        return measured[-1]

    monkeypatch.setattr(suite, "denoiser_call", call_spy)
    plan = SimpleNamespace(modes=["compiled", "eager", "channels_last"], dtypes=["fp32", "bf16"], sizes=[(64, 64)])
    first, later = suite.denoiser_plan(plan)
    assert [(m, d) for m, d, _ in first] == [("eager", "fp32"), ("eager", "bf16"), ("channels_last", "bf16")]
    assert [(m, d) for m, d, _ in later] == [
        ("compiled", "bf16"),
        ("compiled", "fp32"),
    ]
    suite.main(
        ["--dry-run", "--dtypes", "fp32,bf16", "--modes", "compiled,eager", "--shot-frames", "3", "--shot-steps",
         "1", "--official", str(tmp_path), "--output", str(tmp_path / "suite.json")]
    )  # fmt: skip
    assert order == ["uncompiled", "uncompiled", "official_section", "shot_section", "compiled", "compiled"]


def test_gpu_suite_ratio_is_official_over_lvcd_on_the_same_call_and_never_from_a_dry_run():
    suite = _script("gpu_suite")
    calls = [
        {"mode": "eager", "dtype": "bf16", "size_hw": [320, 576], "median_s": 0.5},
        {"mode": "eager", "dtype": "bf16", "size_hw": [576, 1024], "median_s": 2.0},
        {"mode": "compiled", "dtype": "bf16", "size_hw": [320, 576], "skipped": "time budget"},
    ]
    assert suite.ratios(calls, {"median_s": 2.0}, (320, 576)) == {"eager-bf16": 4.0}
    assert suite.ratios(calls, {"error": "x"}, (320, 576)) == {}
    assert list(suite.ratios(calls, {"median_s": 2.0}, (320, 576), dry=True)) == ["not comparable"]


def test_gpu_suite_refuses_to_run_without_a_gpu_unless_dry(capsys):
    import torch

    if torch.cuda.is_available():  # pragma: no cover
        pytest.skip("a GPU is present")
    with pytest.raises(SystemExit):
        _script("gpu_suite").main([])
    assert "--dry-run" in capsys.readouterr().err


def test_sampler_quality_smoke_run(tiny_weights, tmp_path):
    bench = _script("sampler_quality")
    result = bench.main(
        ["--svd", str(tiny_weights["svd"]), "--lvcd", str(tiny_weights["lvcd"]), "--config", str(TINY_CONFIG),
         "--shots", "1", "--frames", "3", "--size", "64x64", "--steps", "1", "--markdown", str(tmp_path / "t.md")]
    )  # fmt: skip
    assert [(run["sampler"], run["steps"]) for run in result["runs"]] == [("euler", 1), ("heun", 1), ("dpmpp_2m", 1)]
    for run in result["runs"]:
        assert run["seconds_per_frame"] > 0 and 0 <= run["scores"]["region"] <= 1 and "psnr" in run["scores"]
    assert "| dpmpp_2m | 1 |" in (tmp_path / "t.md").read_text()


def test_scanned_lineart_smoke_run(tmp_path):
    """Clean line art is never levelled by auto; each simulated scan is."""
    result = _script("scanned_lineart").main(
        ["--shots", "1", "--frames", "3", "--steps", "1", "--markdown", str(tmp_path / "s.md")]
    )
    levelled = {name: rows["auto"]["levelled_shots"] for name, rows in result["results"].items()}
    assert levelled.pop("clean") == 0 and set(levelled.values()) == {1}
    assert all(rows["off"]["levelled_shots"] == 0 for rows in result["results"].values())
    assert "| clean |" in (tmp_path / "s.md").read_text()


def test_sampler_quality_without_the_demo_weights_is_one_clear_line(monkeypatch, tmp_path, capsys):
    import lvcd.demo

    monkeypatch.setattr(lvcd.demo, "DEMO_WEIGHTS", tmp_path / "absent.safetensors")
    with pytest.raises(SystemExit) as stopped:
        _script("sampler_quality").main(["--shots", "1"])
    assert stopped.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: ") and "demo weights" in line


def test_gpu_suite_starts_a_compile_only_with_its_larger_reserve(monkeypatch):
    """A compiled entry compiles inside its warm-up (minutes on a GPU): with 100 s left an eager entry still starts
    (reserve 45 s) and a compiled one does not (reserve 240 s), so the suite keeps to its 8 minutes."""
    suite = _script("gpu_suite")
    monkeypatch.setattr(suite, "random_model", lambda *args, **kwargs: SimpleNamespace(compile_networks=lambda **_: 0))
    monkeypatch.setattr(suite, "free_models", lambda models, device: models.clear())
    monkeypatch.setattr(suite, "denoiser_call", lambda *args, **kwargs: {"median_s": 1.0})
    budget = suite.Budget(100.0)
    args = SimpleNamespace(reserve_s=45.0, compile_reserve_s=240.0, warmup=1, repeats=1)
    plan = [("eager", "bf16", (64, 64)), ("compiled", "bf16", (64, 64))]
    entries = suite.denoiser_section(args, None, torch.device("cpu"), budget, plan, {(64, 64): 1e9}, lambda e: None)
    assert entries[0]["median_s"] == 1.0 and "skipped" not in entries[0]
    assert entries[1]["skipped"] == "time budget" and "median_s" not in entries[1]


def test_gpu_suite_records_a_model_that_fails_to_build_and_goes_on(monkeypatch):
    """Building or compiling an entry's model can fail on a GPU (out of memory, a dynamo error): that entry records
    the error and the next entries still run (the failure used to end the whole suite before its whole shots)."""
    suite = _script("gpu_suite")

    def build(config, parts, device, dtype):
        if dtype == torch.float32:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return SimpleNamespace(compile_networks=lambda **_: 0)

    monkeypatch.setattr(suite, "random_model", build)
    monkeypatch.setattr(suite, "free_models", lambda models, device: models.clear())
    monkeypatch.setattr(suite, "denoiser_call", lambda *args, **kwargs: {"median_s": 1.0})
    args = SimpleNamespace(reserve_s=45.0, compile_reserve_s=240.0, warmup=1, repeats=1)
    plan = [("eager", "fp32", (64, 64)), ("eager", "bf16", (64, 64))]
    entries = suite.denoiser_section(args, None, torch.device("cpu"), suite.Budget(1e9), plan, {(64, 64): 1e9},
                                     lambda e: None)  # fmt: skip
    assert entries[0]["error"].startswith("OutOfMemoryError: CUDA out of memory") and "median_s" not in entries[0]
    assert entries[1]["median_s"] == 1.0


@pytest.mark.parametrize(
    ("printed", "expected"),
    [
        ('{"median_s": 2.5}', {"median_s": 2.5}),
        ("{'sizes': [320, 576]}", "unreadable output line"),  # a printed Python dict, not JSON
        ("{}\n[1, 2]\n{1: 2}", "unreadable output line"),
    ],
)
def test_gpu_suite_official_output_that_is_not_json_is_recorded_not_raised(tmp_path, printed, expected):
    """The official script's last line starting with "{" is its JSON result; any other such line is recorded as the
    section's error (it used to raise JSONDecodeError out of the suite, losing every later section)."""
    suite = _script("gpu_suite")
    (tmp_path / "official_denoiser_call.py").write_text(f"print({printed!r})\n")
    args = SimpleNamespace(official=str(tmp_path), sizes=[(64, 64)], repeats=1)
    section = suite.official_section(args, torch.device("cpu"), 60)
    if isinstance(expected, dict):
        assert {key: section[key] for key in expected} == expected
    else:
        assert section["error"].startswith(expected) and "command" in section


def test_reference_frame_smoke_run(tmp_path):
    """Both ways of colouring a shot are scored without their given frame, by distance from it."""
    result = _script("reference_frame").main(
        ["--shots", "1", "--frames", "5", "--steps", "1", "--markdown", str(tmp_path / "r.md")]
    )
    assert [run["reference_frame"] for run in result["runs"].values()] == [0, 2]
    for run in result["runs"].values():
        scores = run["scores"]
        assert 0 <= scores["region"] <= 1 and scores["region 1-11"] == scores["region"] and "psnr" in scores
    assert "| frame 2 (middle) |" in (tmp_path / "r.md").read_text()
