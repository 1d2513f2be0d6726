"""Every manifest (lvcd batch's shots and ground truth, lvcd evaluate's clips) is read by one set of rules
(lvcd.io.manifests): '#' comment lines in CSV, a 'comment' field, unknown fields and non-object entries refused with
one line, '~' expanded, paths relative to the manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lvcd.batch.evaluate import read_ground_truth
from lvcd.batch.manifest import read_shots
from lvcd.errors import InputError
from lvcd.metrics import read_manifest


# Each reader gives (name, the resolved path of its second required field) per entry.
def _shots(path: Path):
    return [(s.name, s.lineart) for s in read_shots(path)]


def _clips(path: Path):
    return [(c.name, c.gt) for c in read_manifest(path)]


def _truth(path: Path):
    return [(name, gt) for name, (gt, _) in read_ground_truth(path, ["a", "b"]).items()]


# (reader, its two required fields, a third field it knows, the JSON key of its list)
READERS = {
    "shots": (_shots, ("reference", "lineart"), "name", "shots"),
    "clips": (_clips, ("pred", "gt"), "name", "clips"),
    "ground truth": (_truth, ("name", "gt"), "lineart", "shots"),
}


def _one_line(err: pytest.ExceptionInfo, *words: str) -> None:
    text = str(err.value)
    assert "\n" not in text and all(word in text for word in words), text


@pytest.mark.parametrize("reader", READERS)
def test_csv_comment_lines_and_the_comment_field_are_ignored(tmp_path, reader):
    read, (first, second), _, _ = READERS[reader]
    text = (
        f"{first},{second},comment\n# a note, with commas, about the shots\na,x/a,to redo\n  # indented note\nb,x/b,\n"
    )
    path = tmp_path / "m.csv"
    path.write_text(text)
    assert [second_path for _, second_path in read(path)] == [
        tmp_path.resolve() / "x" / "a",
        tmp_path.resolve() / "x" / "b",
    ]


@pytest.mark.parametrize("reader", READERS)
def test_unknown_fields_and_entries_that_are_not_objects_are_one_line(tmp_path, reader):
    read, (first, second), _, _ = READERS[reader]
    path = tmp_path / "m.json"
    path.write_text(json.dumps([{first: "a", second: "x/a", "line_art": "l/"}]))
    with pytest.raises(InputError) as err:
        read(path)
    _one_line(err, "m.json entry 0", "unknown field(s) line_art", "the fields are")
    path.write_text(json.dumps([["a", "x/a"]]))
    with pytest.raises(InputError) as err:
        read(path)
    _one_line(err, "m.json entry 0", "is not an object", repr(first))
    csv = tmp_path / "m.csv"
    csv.write_text(f"{first},{second}\na,x/a\nb,x/b,extra\n")
    with pytest.raises(InputError) as err:
        read(csv)
    _one_line(err, "m.csv row 3", "more values than the header has columns ('extra')")


@pytest.mark.parametrize("reader", READERS)
def test_a_required_field_left_empty_is_missing(tmp_path, reader):
    read, (first, second), _, _ = READERS[reader]
    path = tmp_path / "m.csv"
    path.write_text(f"{first},{second}\na,  \n")
    with pytest.raises(InputError) as err:
        read(path)
    _one_line(err, "m.csv row 2", f"lacks {second}")


@pytest.mark.parametrize("reader", READERS)
def test_json_object_with_the_list_and_home_paths(tmp_path, reader, monkeypatch):
    read, (first, second), _, key = READERS[reader]
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = tmp_path / "m.json"
    path.write_text(json.dumps({key: [{"Comment": "x", first.upper(): "a", second: "~/frames/a"}]}))
    assert [second_path for _, second_path in read(path)] == [tmp_path / "home" / "frames" / "a"]
    path.write_text(json.dumps({"other": []}))
    with pytest.raises(InputError) as err:
        read(path)
    _one_line(err, f"'{key}' list")


def test_ground_truth_names_a_shot_once(tmp_path):
    path = tmp_path / "gt.csv"
    path.write_text("name,gt\na,gt/a\na,gt/a2\n")
    with pytest.raises(InputError) as err:
        read_ground_truth(path, ["a"])
    _one_line(err, "gt.csv row 3", "'a' again")
    path.write_text("name,gt\nc,gt/c\n")
    with pytest.raises(InputError) as err:
        read_ground_truth(path, ["a"])
    _one_line(err, "gt.csv row 2", "'c'", "not a shot of the batch")
    with pytest.raises(InputError) as err:
        read_ground_truth(tmp_path / "none.csv", ["a"])
    _one_line(err, "ground-truth manifest not found")


@pytest.mark.parametrize("reader", READERS)
def test_a_manifest_that_is_not_utf8_is_one_line_naming_the_byte(tmp_path, reader):
    """An Excel CSV saved as cp1252 ('sc\\xe9ne') was a UnicodeDecodeError traceback."""
    read, (first, second), _, _ = READERS[reader]
    path = tmp_path / "m.csv"
    path.write_bytes(f"{first},{second}\n".encode() + b"a,sc\xe9ne/a\n")
    with pytest.raises(InputError) as err:
        read(path)
    _one_line(err, "m.csv is not UTF-8", "0xe9 at offset", "line 2", "save the file as UTF-8")
    offset = len(f"{first},{second}\na,sc")
    assert f"offset {offset} " in str(err.value)
    path.write_bytes(b"\xef\xbb\xbf" + f"{first},{second}\na,x/a\n".encode())  # a byte-order mark is fine
    assert [second_path for _, second_path in read(path)] == [tmp_path.resolve() / "x" / "a"]
    json_path = tmp_path / "m.json"
    json_path.write_bytes(b'[{"' + first.encode() + b'": "\xe9"}]')
    with pytest.raises(InputError) as err:
        read(json_path)
    _one_line(err, "m.json is not UTF-8", "0xe9")


@pytest.mark.parametrize("reader", READERS)
def test_a_field_given_twice_is_refused_not_merged(tmp_path, reader):
    """`seed,seed` or `Name,name` kept only the last value (csv.DictReader, then lower-casing); so did a JSON key given
    twice: each dropped a value without a word."""
    read, (first, second), third, _ = READERS[reader]
    path = tmp_path / "m.csv"
    path.write_text(f"{first},{second},{third},{third}\na,x/a,1,2\n")
    with pytest.raises(InputError) as err:
        read(path)
    _one_line(err, "m.csv", f"the field {third!r} twice", "keep one")
    path.write_text(f"{first},{second},{third.capitalize()},{third}\na,x/a,1,2\n")
    with pytest.raises(InputError) as err:
        read(path)
    _one_line(err, "m.csv", f"the field {third!r} twice", repr(third.capitalize()), "ignore case")
    json_path = tmp_path / "m.json"
    json_path.write_text(f'[{{"{first}": "a", "{second}": "x/a", "{third}": "1", "{third}": "2"}}]')
    with pytest.raises(InputError) as err:
        read(json_path)
    _one_line(err, "m.json", f"the key {third!r} twice")
    json_path.write_text(json.dumps([{first: "a", second: "x/a", third: "1", third.upper(): "2"}]))
    with pytest.raises(InputError) as err:
        read(json_path)
    _one_line(err, "m.json entry 0", f"the field {third!r} twice", "ignore case")


def test_cli_reports_a_manifest_that_is_not_utf8_in_one_line(tmp_path):
    """lvcd batch (shots and --evaluate's ground truth) and lvcd evaluate --manifest: exit 2, one line, no traceback."""
    from typer.testing import CliRunner

    from lvcd.cli import app

    (tmp_path / "la").mkdir()
    latin = tmp_path / "latin1.csv"
    latin.write_bytes(b"name,reference,lineart\nsc\xe9ne,ref.png,la\n")
    good = tmp_path / "good.csv"
    good.write_text("name,reference,lineart\na,ref.png,la\n")
    truth = tmp_path / "gt.csv"
    truth.write_bytes(b"name,gt\na,gt\xe9\n")
    clips = tmp_path / "clips.csv"
    clips.write_bytes(b"name,pred,gt\nsc\xe9ne,p,g\n")
    runs = [
        (["batch", str(latin), "-o", str(tmp_path / "out"), "--model", "demo"], "latin1.csv"),
        (["batch", str(good), "-o", str(tmp_path / "out"), "--model", "demo", "--evaluate", str(truth)], "gt.csv"),
        (["evaluate", "--manifest", str(clips)], "clips.csv"),
    ]
    for args, name in runs:
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2, result.output
        assert result.output.startswith("error: ") and len(result.output.strip().splitlines()) == 1, result.output
        assert f"{name} is not UTF-8" in result.output and "save the file as UTF-8" in result.output
    assert not (tmp_path / "out").exists()
