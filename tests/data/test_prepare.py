"""`prepare_dataset` end to end on a tiny synthetic video: outputs, index, resume, sharding."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from lvcd.data import LVCDClipDataset
from lvcd.data.latents import VAELatentEncoder, frame_noise
from lvcd.data.layout import read_meta
from lvcd.data.prepare import Lazy, PrepareOptions, _open_frames, prepare_dataset
from lvcd.data.root import write_index
from lvcd.errors import InputError
from lvcd.io import FrameSource

from .conftest import TRAIN_SIZE
from .synthetic import scene_frame

VIDEO = "synth_shot"  # "synth shot.mp4" sanitized
CLIPS = {f"{VIDEO}/000000-000019": range(0, 20), f"{VIDEO}/000028-000045": range(28, 46)}


class CountingEncoder:
    def __init__(self, vae):
        self.inner = VAELatentEncoder(vae)
        self.latent_channels, self.downsample = self.inner.latent_channels, self.inner.downsample
        self.frames = 0

    def __call__(self, images, noise):
        self.frames += images.shape[0]
        return self.inner(images, noise)


class Counting:
    def __init__(self, function):
        self.function, self.calls = function, 0

    def __call__(self, *args):
        self.calls += 1
        return self.function(*args)


def options(**overrides) -> PrepareOptions:
    return PrepareOptions(
        **{"size_hw": TRAIN_SIZE, "seed": 7, "batch_size": 4, "lineart_method": "xdog", "progress": False, **overrides}
    )


def run(video, root, vae, lineart, **overrides):
    encoder, lines, opener = CountingEncoder(vae), Counting(lineart), Counting(_open_frames)
    report = prepare_dataset(
        [video], root, encoder=encoder, lineart=lines, options=options(**overrides), open_frames=opener
    )
    return report, encoder, lines, opener


def snapshot(root: Path, *folders: str) -> dict[str, tuple[bytes, int]]:
    """{relative path: (bytes, mtime_ns)} of every file under the given folders of ``root``."""
    files = {}
    for folder in folders:
        for path in sorted((root / folder).rglob("*")) if (root / folder).is_dir() else [root / folder]:
            if path.is_file():
                files[str(path.relative_to(root))] = (path.read_bytes(), path.stat().st_mtime_ns)
    return files


OUTPUTS = ("img_32", "draw_32", "lat_32", "train_clips_hist.json")


@pytest.fixture(scope="module")
def single(tmp_path_factory, synthetic_mp4, tiny_vae, xdog):
    root = tmp_path_factory.mktemp("single") / "root"
    return root, *run(synthetic_mp4, root, tiny_vae, xdog)


def test_outputs_and_index(single, tiny_vae):
    root, report, encoder, lines, opener = single
    assert (report.videos, report.clips_total, report.clips_in_shard, report.frames_written) == (1, 2, 2, 38)
    assert report.index_path == root / "train_clips_hist.json" and report.clips_missing == 0
    index = json.loads(report.index_path.read_text())
    assert index == {clip: [f"{VIDEO}/{i:06d}" for i in frames] for clip, frames in CLIPS.items()}
    assert encoder.frames == 38 and lines.calls == 38 and opener.calls == 2  # scan + process

    names = [name for frames in index.values() for name in frames]
    for name in names:
        image = np.asarray(Image.open(root / "img_32" / f"{name}.png"))
        sketch = np.asarray(Image.open(root / "draw_32" / f"{name}.png"))
        assert image.shape == (32, 64, 3) and sketch.shape == (32, 64) and sketch.dtype == np.uint8
        assert np.median(sketch) == 255  # dark lines on a white background
    # Frames of the dropped 8-frame shot are not written.
    assert not (root / "img_32" / VIDEO / "000020.png").exists()
    assert sorted(p.stem for p in (root / "lat_32" / VIDEO).iterdir()) == sorted(n.split("/")[1] for n in names)

    # The latent is the scaled posterior sample with the frame's own seeded noise.
    name = names[5]
    stored = load_file(str(root / "lat_32" / f"{name}.safetensors"))["latent"]
    assert stored.shape == (4, 4, 8) and stored.dtype == torch.float32
    image = (
        torch.from_numpy(np.array(Image.open(root / "img_32" / f"{name}.png"))).permute(2, 0, 1)[None].float() / 127.5
        - 1
    )
    with torch.no_grad():
        expected = tiny_vae.encode(image, noise=frame_noise(7, name, (1, 4, 4, 8)))[0]
    torch.testing.assert_close(stored, expected, rtol=0, atol=1e-4)  # batch of 4 vs 1: round-off only

    meta = read_meta(root)
    assert meta["size_hw"] == [32, 64] and meta["seed"] == 7 and meta["lineart"] == "xdog"
    scan = json.loads((root / "scenes" / f"{VIDEO}.json").read_text())
    assert scan["cuts"] == [20, 28] and scan["num_frames"] == 46 and scan["clips"] == [[0, 20], [28, 46]]


def test_resume_does_no_work_and_changes_nothing(single, synthetic_mp4, xdog):
    root = single[0]
    before = snapshot(root, *OUTPUTS, "scenes", "index", "lvcd_data.json")
    built = []
    lazy_encoder = Lazy(lambda: built.append(1))
    lines, opener = Counting(xdog), Counting(_open_frames)
    report = prepare_dataset(
        [synthetic_mp4], root, encoder=lazy_encoder, lineart=lines, options=options(), open_frames=opener
    )
    assert report.frames_written == 0 and report.frames_skipped == 38
    assert built == [] and lines.calls == 0 and opener.calls == 0  # no model loaded, nothing decoded
    assert snapshot(root, *OUTPUTS, "scenes", "index", "lvcd_data.json") == before


def test_interrupted_run_resumes_to_identical_files(single, tmp_path, synthetic_mp4, tiny_vae, xdog):
    reference = single[0]
    root = tmp_path / "root"
    shutil.copytree(reference, root)
    # As if killed mid-way: the index and some outputs of the second clip are missing.
    (root / "train_clips_hist.json").unlink()
    (root / "lat_32" / VIDEO / "000030.safetensors").unlink()
    (root / "lat_32" / VIDEO / "000045.safetensors").unlink()
    (root / "img_32" / VIDEO / "000031.png").unlink()
    (root / "draw_32" / VIDEO / "000040.png").unlink()
    report, encoder, lines, _ = run(synthetic_mp4, root, tiny_vae, xdog)
    assert report.frames_written == 4
    assert encoder.frames == 4 + 2  # the two fixed groups of 4 holding the missing latents (28-31, 44-45)
    assert lines.calls == 1
    assert {k: v[0] for k, v in snapshot(root, *OUTPUTS).items()} == {
        k: v[0] for k, v in snapshot(reference, *OUTPUTS).items()
    }


def test_two_shards_and_merge_equal_a_single_run(single, tmp_path, synthetic_mp4, tiny_vae, xdog):
    reference = single[0]
    root = tmp_path / "sharded"
    first = run(synthetic_mp4, root, tiny_vae, xdog, shard=0, num_shards=2)[0]
    assert (first.clips_in_shard, first.frames_written, first.clips_missing) == (1, 20, 1)
    assert first.index_path is None and not (root / "train_clips_hist.json").exists()
    with pytest.raises(InputError, match="not prepared yet"):
        write_index(root)
    second = run(synthetic_mp4, root, tiny_vae, xdog, shard=1, num_shards=2, batch_size=4)[0]
    assert (second.clips_in_shard, second.frames_written, second.clips_missing) == (1, 18, 0)
    assert second.index_path == root / "train_clips_hist.json"  # the last shard merges
    (root / "train_clips_hist.json").unlink()
    assert write_index(root)[1:] == (2, 0)  # `lvcd data index` does the same by hand
    assert {k: v[0] for k, v in snapshot(root, *OUTPUTS).items()} == {
        k: v[0] for k, v in snapshot(reference, *OUTPUTS).items()
    }


def test_dataset_reads_a_prepared_root(single):
    root = single[0]
    dataset = LVCDClipDataset(root, size=TRAIN_SIZE, seed=0)
    assert len(dataset) == (20 - 14) + (18 - 14)
    item = dataset[0]
    assert item["latents"].shape == (15, 4, 4, 8)
    assert item["control_hint"].shape == (15, 3, 32, 64) and item["reference"].shape == (3, 32, 64)
    assert item["clip"] == f"{VIDEO}/000000-000019" and item["target_start"] == 6


def test_frame_folder_input_and_input_errors(tmp_path, tiny_vae, xdog):
    folder = tmp_path / "shot_a"
    folder.mkdir()
    for t in range(16):
        Image.fromarray(scene_frame(2, t)).save(folder / f"{t}.png")
    report = prepare_dataset([folder], tmp_path / "root", encoder=tiny_vae, lineart=xdog, options=options())
    assert json.loads(report.index_path.read_text()) == {"shot_a/000000-000015": [f"shot_a/{i:06d}" for i in range(16)]}

    with pytest.raises(InputError, match="does not exist"):
        prepare_dataset(
            [tmp_path / "missing.mp4"], tmp_path / "root", encoder=tiny_vae, lineart=xdog, options=options()
        )
    with pytest.raises(InputError, match="other settings"):
        prepare_dataset([folder], tmp_path / "root", encoder=tiny_vae, lineart=xdog, options=options(seed=8))
    with pytest.raises(InputError, match="multiples of 8"):
        options(size_hw=(60, 128))
    with pytest.raises(InputError, match="Shard 2 of 2"):
        options(shard=2, num_shards=2)


def test_a_failing_shard_takes_back_only_its_own_files_from_a_root_others_share(tmp_path, tiny_vae, xdog):
    """Shards run side by side into one new root: one whose input fails removes the scene caches it wrote, never the
    caches and the root's record that another shard wrote meanwhile (that shard goes on using them)."""
    good, bad = tmp_path / "a_good", tmp_path / "b_bad"  # scanned in this order
    for folder in (good, bad):
        folder.mkdir()
        for t in range(16):
            Image.fromarray(scene_frame(2, t)).save(folder / f"{t}.png")
    root = tmp_path / "root"

    shared = [True]

    def open_frames(path):
        if Path(path) == bad:
            if shared[0]:  # meanwhile, another shard wrote its cache of another video
                assert (root / "scenes" / "a_good.json").is_file()  # ours, written first
                (root / "scenes" / "other.json").write_text("{}")
            raise InputError(f"{path}: unreadable")
        return FrameSource.open(path)

    with pytest.raises(InputError, match="unreadable"):
        prepare_dataset([good, bad], root, encoder=tiny_vae, lineart=xdog, options=options(), open_frames=open_frames)
    assert sorted(p.name for p in (root / "scenes").iterdir()) == ["other.json"]  # a_good.json (ours) went
    assert (root / "lvcd_data.json").exists()  # the root is in use by the other shard: its record stays
    shared[0], root = False, tmp_path / "pass2"  # another shard past its scans, writing frames: the record stays
    (root / f"img_{TRAIN_SIZE[0]}").mkdir(parents=True)
    with pytest.raises(InputError, match="unreadable"):
        prepare_dataset([good, bad], root, encoder=tiny_vae, lineart=xdog, options=options(), open_frames=open_frames)
    assert (root / "lvcd_data.json").exists() and not (root / "scenes").exists()
    root = tmp_path / "alone"
    with pytest.raises(InputError, match="unreadable"):  # alone: the whole new root is taken back
        prepare_dataset([good, bad], root, encoder=tiny_vae, lineart=xdog, options=options(), open_frames=open_frames)
    assert not root.exists()
