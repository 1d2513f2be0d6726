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
