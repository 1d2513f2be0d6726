"""Batch manifests: CSV and JSON, relative paths, per-shot settings over command-line defaults, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lvcd.batch import ShotSettings, read_shots
from lvcd.cli import app
from lvcd.errors import InputError


def test_json_and_csv_give_the_same_shots(tmp_path):
    defaults = ShotSettings(steps=5, seed=3, overlap=4)
    (tmp_path / "m").mkdir()
    json_path = tmp_path / "m" / "film.json"
    json_path.write_text(
        json.dumps(
            {
                "shots": [
                    {"name": "a", "reference": "a.png", "lineart": "a/", "keyframes": {"40": "k40.png"}, "seed": 7},
                    {
                        "reference": "/abs/b.png",
                        "lineart": "b.mp4",
                        "size": "128x256",
                        "fps": 12,
                        "steps": "",
                        "lineart_levels": "Off",
                    },
                ]
            }
        )
    )
    csv_path = tmp_path / "m" / "film.csv"
    csv_path.write_text(
        "name,reference,lineart,keyframes,seed,size,fps,steps,lineart_levels\n"
        "# a comment line\n"
        "a,a.png,a/,40=k40.png,7,,,,\n"
        ",/abs/b.png,b.mp4,,,128x256,12,,off\n"
    )
    for path in (json_path, csv_path):
        a, b = read_shots(path, defaults)
        base = path.parent.resolve()
        assert (a.name, a.reference, a.lineart, a.keyframes) == (
            "a",
            base / "a.png",
            base / "a",
            ((40, base / "k40.png"),),
        )
        assert a.settings == ShotSettings(steps=5, seed=7, overlap=4)
        assert (b.name, b.reference, b.lineart) == ("b", Path("/abs/b.png"), base / "b.mp4")
        assert b.settings == ShotSettings(steps=5, seed=3, size=(128, 256), fps=12.0, lineart_levels="off")


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        ('[{"name": "a", "lineart": "a/"}]', "lacks reference"),
        ('[{"reference": "r.png", "lineart": "a/", "seeds": 1}]', "unknown field(s) seeds"),
        ('[{"reference": "r.png", "lineart": "a/", "steps": 0}]', "steps 0 is not a whole number >= 1"),
        ('[{"reference": "r.png", "lineart": "a/", "size": "320x"}]', "is not HEIGHTxWIDTH"),
        ('[{"reference": "r.png", "lineart": "a/", "size": [0, 64]}]', "must be positive"),
        ('[{"reference": "r.png", "lineart": "a/", "polarity": "dark"}]', "not one of auto, dark-lines"),
        ('[{"reference": "r.png", "lineart": "a/", "lineart_levels": 1}]', "lineart_levels 1 is not one of auto, on"),
        ('[{"reference": "r.png", "lineart": "a/", "keyframes": "x.png"}]', "INDEX=IMAGE"),
        ('[{"reference": "r.png", "lineart": "A/"}, {"reference": "r.png", "lineart": "x/a/"}]', "two shots named"),
        ('[{"name": "../up", "reference": "r.png", "lineart": "a/"}]', "not usable as a file name"),
        ('[{"name": "Batch_Report.json", "reference": "r.png", "lineart": "a/"}]', "the batch's own batch_report.json"),
        ('[{"name": "evaluation.json", "reference": "r.png", "lineart": "a/"}]', "the batch's own evaluation.json"),
        # one name in two Unicode forms (composed e-acute, e + combining accent): one file on macOS
        (
            '[{"name": "caf\u00e9", "reference": "r.png", "lineart": "a/"}, '
            '{"name": "cafe\u0301", "reference": "r.png", "lineart": "b/"}]',
            "two shots named",
        ),  # fmt: skip
        ("[]", "lists no shots"),
        ("{not json", "not valid JSON"),
        ('[{"reference": "r.png", "lineart": "a/", "seed": 1e30}]', "seed 1e+30 is over the largest allowed"),
        ('[{"reference": "r.png", "lineart": "a/", "overlap": 14}]', "overlap 14 is over the largest allowed, 13"),
        ('[{"reference": "r.png", "lineart": "a/", "keyframes": ["5=a.png", "5=b.png"]}]', "frame 5 is given twice"),
    ],
)
def test_manifest_errors_name_the_problem_in_one_line(tmp_path, content, phrase):
    path = tmp_path / "film.json"
    path.write_text(content)
    with pytest.raises(InputError) as raised:
        read_shots(path)
    assert phrase in str(raised.value) and "\n" not in str(raised.value)


def test_cli_refuses_bad_manifests_and_options_before_any_work(tmp_path):
    runner = CliRunner()
    bad = tmp_path / "film.json"
    bad.write_text('[{"reference": "r.png", "lineart": "a/", "steps": "many"}]')
    for args, phrase in [
        ([str(bad), "-o", str(tmp_path / "out")], "steps 'many'"),
        ([str(tmp_path / "none.csv"), "-o", str(tmp_path / "out")], "manifest not found"),
        ([str(bad), "-o", str(tmp_path / "out"), "--format", "avi"], "--format 'avi'"),
        ([str(bad), "-o", str(tmp_path / "out"), "--svd", str(tmp_path / "no.safetensors")], "file not found"),
    ]:
        result = runner.invoke(app, ["batch", *args])
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: ") and phrase in result.output
        assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_manifest_sizes_read_as_the_cli_size_option(tmp_path):
    """One size parser: a manifest's size means what --size means (a single number is a square)."""
    path = tmp_path / "film.json"
    path.write_text(
        '[{"reference": "r.png", "lineart": "a/", "size": "320"}, {"reference": "r.png", "lineart": "b/", "size": "128×256"}]'
    )
    a, b = read_shots(path)
    assert (a.settings.size, b.settings.size) == ((320, 320), (128, 256))


def test_a_csv_row_with_more_values_than_columns_is_refused(tmp_path):
    """An unquoted comma (or a missing column) would otherwise drop a value silently."""
    path = tmp_path / "film.csv"
    path.write_text("name,reference,lineart\ns1,ref.png,la20,extra\n")
    with pytest.raises(InputError, match=r"row 2 has more values than the header has columns \('extra'\)"):
        read_shots(path)


def test_cli_checks_every_shots_size_and_overlap_against_the_model_before_starting(tmp_path, tiny_weights):
    from conftest import TINY_CONFIG

    path = tmp_path / "film.json"
    path.write_text('[{"name": "ok", "reference": "r.png", "lineart": "a/"}, '
                    '{"name": "odd", "reference": "r.png", "lineart": "b/", "size": "100x100"}]')  # fmt: skip
    from lvcd.demo import demo_weights_path

    tiny = ["--svd", str(tiny_weights["svd"]), "--lvcd", str(tiny_weights["lvcd"]), "--config", str(TINY_CONFIG)]
    for model in (tiny, ["--svd", str(demo_weights_path())]):  # a config given, or the one a file carries
        result = CliRunner().invoke(app, ["batch", str(path), "-o", str(tmp_path / "out"), *model])
        assert result.exit_code == 2, result.output
        assert "shot 'odd': --size 100x100: height and width must be multiples of" in result.output
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("field", "value", "phrase"),
    [
        ("seed", "²", "seed '²' is not a whole number >= 0"),
        ("steps", "١٢", "steps '١٢' is not a whole number >= 1"),  # Arabic-Indic digits: int() takes them; not we
        ("reference_frame", "-²", "reference_frame '-²' is not a whole number >= 0"),
        ("keyframes", "²=k.png", "is not INDEX=IMAGE pairs"),
    ],
)
def test_non_ascii_digits_in_whole_number_fields_are_one_line(tmp_path, field, value, phrase):
    """str.isdigit() took '²' and int() then raised a ValueError traceback."""
    path = tmp_path / "film.csv"
    path.write_text(f"name,reference,lineart,{field}\na,r.png,a/,{value}\n", encoding="utf-8")
    with pytest.raises(InputError) as raised:
        read_shots(path)
    assert phrase in str(raised.value) and "\n" not in str(raised.value)


def test_the_default_name_is_a_folders_whole_name_and_a_files_name_without_extension(tmp_path):
    """`sh.010/` and `sh.020/` were both named 'sh' (the stem), and then refused as two shots of one name."""
    for folder in ("sh.010", "sh.020", "plain"):
        (tmp_path / folder).mkdir()
    path = tmp_path / "film.csv"
    path.write_text(
        "reference,lineart\nr.png,sh.010\nr.png,sh.020/\nr.png,plain\nr.png,cut.030.mp4\nr.png,anim.gif\n"
        "r.png,not_yet.040\n"
    )
    assert [shot.name for shot in read_shots(path)] == ["sh.010", "sh.020", "plain", "cut.030", "anim", "not_yet.040"]
