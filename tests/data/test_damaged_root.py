"""A damaged or incomplete training root stops training with one line that names the file and the command that makes
it again (and says so when the dataset is built, where that can be known then)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from lvcd.data.dataset import FrameClips, LVCDClipDataset
from lvcd.data.layout import META_NAME, DatasetLayout, write_json, write_latent, write_png
from lvcd.errors import InputError

SIZE = (16, 16)
FRAMES = 4


def make_root(root: Path, meta: dict | None, official: bool = False) -> list[str]:
    """One clip of FRAMES frames at SIZE: frames, line art, latents (official: .pt latents and no lvcd_data.json)."""
    layout = DatasetLayout(root, SIZE[0])
    names = [f"shot/{i:06d}" for i in range(FRAMES)]
    for name in names:
        write_png(layout.image_path(name), np.full((*SIZE, 3), 100, np.uint8))
        write_png(layout.sketch_path(name), np.full((*SIZE, 3), 255, np.uint8))
        latent = torch.zeros(4, SIZE[0] // 8, SIZE[1] // 8)
        if official:
            layout.official_latent_path(name).parent.mkdir(parents=True, exist_ok=True)
            torch.save(latent[None], layout.official_latent_path(name))
        else:
            write_latent(layout.latent_path(name), latent)
    write_json(layout.index_path(), {"shot/000000-000003": names})
    if meta is not None:
        write_json(root / META_NAME, meta)
    return names


def dataset(root: Path) -> LVCDClipDataset:
    return LVCDClipDataset(root, size=SIZE, num_frames=FRAMES, nframe_range=(FRAMES, 200), seed=0)


PREPARED = {"format": "lvcd-data/1", "size_hw": list(SIZE), "seed": 0, "lineart": "xdog"}
SYNTHETIC = {**PREPARED, "lineart": "synthetic", "synthetic": {"split": "train", "frames": FRAMES}}


@pytest.mark.parametrize(
    ("meta", "remedy"),
    [
        (PREPARED, "delete it, then run the `lvcd data prepare ... --output {root}` command that made the root again"),
        (SYNTHETIC, "delete it, then run `lvcd data synth {root}` again"),
    ],
    ids=["prepared", "synthetic"],
)
def test_a_damaged_latent_names_the_file_and_the_command_that_remakes_it(tmp_path, meta, remedy):
    names = make_root(tmp_path, meta)
    damaged = DatasetLayout(tmp_path, SIZE[0]).latent_path(names[2])
    damaged.write_bytes(damaged.read_bytes()[:40])  # cut short: the header is incomplete
    with pytest.raises(InputError) as refused:
        dataset(tmp_path)[0]
    message = str(refused.value)
    assert message.startswith(f"Latent file {damaged} is unreadable (") and "\n" not in message
    assert remedy.format(root=tmp_path) in message


def test_a_latent_without_its_tensor_or_an_unreadable_official_latent(tmp_path):
    names = make_root(tmp_path / "ours", PREPARED)
    write_latent(DatasetLayout(tmp_path / "ours", SIZE[0]).latent_path(names[1]), torch.zeros(1))
    path = DatasetLayout(tmp_path / "ours", SIZE[0]).latent_path(names[1])
    path.write_bytes(path.read_bytes().replace(b'"latent"', b'"latenX"'))  # a file of other keys
    with pytest.raises(InputError, match=r"is unreadable \(no 'latent' tensor\)"):
        dataset(tmp_path / "ours")[0]
    names = make_root(tmp_path / "official", None, official=True)
    damaged = DatasetLayout(tmp_path / "official", SIZE[0]).official_latent_path(names[0])
    damaged.write_bytes(damaged.read_bytes()[:100])
    with pytest.raises(InputError) as refused:
        dataset(tmp_path / "official")[0]
    message = str(refused.value)
    assert message.startswith(f"Latent file {damaged} is unreadable") and "\n" not in message
    assert "restore it from the dataset's download" in message


def test_a_damaged_frame_or_line_art_png_names_the_file(tmp_path):
    names = make_root(tmp_path, SYNTHETIC)
    layout = DatasetLayout(tmp_path, SIZE[0])
    for path in (layout.sketch_path(names[3]), layout.image_path(names[0])):
        path.write_bytes(path.read_bytes()[:50])
        with pytest.raises(InputError) as refused:
            dataset(tmp_path)[0]
        message = str(refused.value)
        assert message.startswith(f"Image {path} is unreadable (") and "lvcd data synth" in message
    with pytest.raises(InputError, match=re.escape(f"Image {path} is unreadable")):  # the train-vae frames too
        FrameClips(tmp_path, SIZE, FRAMES)[0]
    path.unlink()  # a missing frame: said when the clips are opened, before any training
    with pytest.raises(
        InputError, match=rf"lack files on disk \({re.escape(str(path))} is missing, .*run `lvcd data synth"
    ):
        FrameClips(tmp_path, SIZE, FRAMES)


def test_an_empty_root_or_one_without_latents_is_refused_when_the_dataset_is_built(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no frames .*`lvcd data prepare` .*`lvcd data synth`"):
        dataset(tmp_path / "empty")
    make_root(tmp_path / "frames_only", SYNTHETIC)
    for path in sorted((tmp_path / "frames_only" / "lat_16").rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    (tmp_path / "frames_only" / "lat_16").rmdir()
    with pytest.raises(InputError, match=r"has no latents \(lat_16/\).*--vae"):
        dataset(tmp_path / "frames_only")
    assert json.loads((tmp_path / "frames_only" / META_NAME).read_text())["lineart"] == "synthetic"


class _BlankBuffer:
    def __reduce__(self):
        return (bytearray, (200_000_000,))  # a blank 200 MB buffer asked for by a file of a few hundred bytes


def test_an_official_latent_asking_for_a_blank_buffer_is_refused_unread(tmp_path):
    names = make_root(tmp_path, None, official=True)
    hostile = DatasetLayout(tmp_path, SIZE[0]).official_latent_path(names[0])
    torch.save({"latent": torch.zeros(1), "blob": _BlankBuffer()}, hostile)
    with pytest.raises(InputError) as refused:
        dataset(tmp_path)[0]
    message = str(refused.value)
    assert message.startswith(f"Latent file {hostile} is unreadable (builtins.bytearray")
    assert "a blank buffer of 200,000,000 bytes" in message and "\n" not in message
