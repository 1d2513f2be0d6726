"""LVCDClipDataset on an official-layout root (img_320/, draw_320/, lat_320/*.pt, train_clips_hist.json)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lvcd.data.dataset import LVCDClipDataset, build_samples
from lvcd.errors import InputError

CLIP_LENGTHS = {"Movie_0": 40, "Movie_1": 16, "Short": 10, "Long": 201}


def frame_value(name: str) -> int:
    movie, index = name.split("/")
    return 100 * (movie == "Movie") + int(index)


@pytest.fixture(scope="module")
def official_root(tmp_path_factory) -> Path:
    """Official layout at 320x576 with .pt latents; each frame's image, sketch and latent encode its number."""
    root = tmp_path_factory.mktemp("Animation_video")
    clips, start = {}, 0
    for clip, length in CLIP_LENGTHS.items():
        clips[clip] = [f"Movie/{i:05d}" for i in range(start, start + length)]
        start += length
    for clip in ("Movie_0", "Movie_1"):  # the short and long clips are filtered out: no files needed
        for name in clips[clip]:
            value = int(name.split("/")[1])
            for folder in ("img_320", "draw_320", "lat_320"):
                (root / folder / "Movie").mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((320, 576, 3), (value, 255 - value, 7), np.uint8)).save(
                root / "img_320" / f"{name}.png"
            )
            sketch = np.full((320, 576, 3), 255, np.uint8)
            sketch[value] = 0  # one dark line, at row = frame number
            Image.fromarray(sketch).save(root / "draw_320" / f"{name}.png")
            torch.save(torch.full((1, 4, 40, 72), float(value)), root / "lat_320" / f"{name}.pt")
    (root / "train_clips_hist.json").write_text(json.dumps(clips))
    return root


def test_index_follows_the_official_rule(official_root):
    dataset = LVCDClipDataset(official_root, seed=0)
    # L - 14 samples for each clip of 15..200 frames, i = L - 15 down to 0, clips in file order.
    assert len(dataset) == (40 - 14) + (16 - 14)
    assert [(s.clip, s.last_candidate) for s in dataset.samples[:2]] == [("Movie_0", 25), ("Movie_0", 24)]
    assert [(s.clip, s.last_candidate) for s in dataset.samples[-2:]] == [("Movie_1", 1), ("Movie_1", 0)]
    counts = {clip: len(build_samples({clip: ["f"] * length})) for clip, length in CLIP_LENGTHS.items()}
    assert counts == {"Movie_0": 26, "Movie_1": 2, "Short": 0, "Long": 0}
    assert len(build_samples({"c": ["f"] * 20}, num_frames=5, nframe_range=(1, 50))) == 16


def test_reference_comes_from_the_first_quarter_before_the_targets(official_root):
    dataset = LVCDClipDataset(official_root, seed=3)
    for index in (0, 10, 25):
        sample = dataset.samples[index]
        allowed = max(1, int(0.25 * (sample.last_candidate + 1)))
        seen = set()
        for epoch in range(300):
            dataset.set_epoch(epoch)
            seen.add(dataset.reference_position(index))
        assert seen == set(range(allowed)), (index, allowed)  # uniform over exactly the allowed prefix
    dataset.set_epoch(0)
    again = LVCDClipDataset(official_root, seed=3)
    assert [dataset.reference_position(i) for i in range(len(dataset))] == [
        again.reference_position(i) for i in range(len(again))
    ]
    torch.manual_seed(11)
    first = LVCDClipDataset(official_root)
    torch.manual_seed(11)
    second = LVCDClipDataset(official_root)
    assert first.seed == second.seed  # seed=None follows torch.manual_seed


def test_item_tensors(official_root):
    dataset = LVCDClipDataset(official_root, seed=0)
    for index in (0, 25, 27):
        item = dataset[index]
        sample = dataset.samples[index]
        frames = dataset.clips[sample.clip]
        reference = item["reference_index"]
        assert 0 <= reference < max(1, int(0.25 * (sample.last_candidate + 1)))
        names = [frames[reference], *frames[sample.last_candidate + 1 : sample.last_candidate + 15]]
        values = [int(n.split("/")[1]) for n in names]

        assert item["latents"].shape == (15, 4, 40, 72) and item["latents"].dtype == torch.float32
        assert item["latents"][:, 0, 0, 0].tolist() == values  # reference first, then the 14 targets, as stored
        hint = item["control_hint"]
        assert hint.shape == (15, 3, 320, 576) and hint.min() >= 0 and hint.max() <= 1
        for k, value in enumerate(values):  # 1 - pixel/255: the line is 1, the background 0
            assert hint[k, :, value].eq(1).all() and hint[k].sum() == 3 * 576
        ref = item["reference"]
        assert ref.shape == (3, 320, 576) and ref.min() >= -1 and ref.max() <= 1
        torch.testing.assert_close(ref[:, 0, 0], torch.tensor([values[0], 255 - values[0], 7]) / 127.5 - 1)
        assert item["fps_id"].tolist() == [6] * 15 and item["motion_bucket_id"].tolist() == [160] * 15
        assert item["cond_aug"].tolist() == [0.0] * 15 and item["num_video_frames"] == 15


def test_input_errors(official_root, tmp_path):
    # Images and sketches would be resized to another width, but the stored latents cannot be.
    with pytest.raises(InputError, match="encoded at another size"):
        LVCDClipDataset(official_root, size=(320, 512), seed=0)[0]
    with pytest.raises(InputError, match="img_256"):
        LVCDClipDataset(official_root, size=(256, 448))
    with pytest.raises(InputError, match="not a folder"):
        LVCDClipDataset(tmp_path / "nothing")
    (tmp_path / "img_320").mkdir()
    with pytest.raises(InputError, match="No clip index"):
        LVCDClipDataset(tmp_path)
    (tmp_path / "train_clips_hist.json").write_text(json.dumps({"a": ["Movie/00000"] * 5}))
    with pytest.raises(InputError, match="nothing to train on"):
        LVCDClipDataset(tmp_path)


def test_frames_without_their_files_are_found_before_training_not_when_a_batch_needs_them(official_root, tmp_path):
    """A root whose index lists frames without latents (e.g. added by `lvcd data synth` without --vae) trained for
    hours and failed when a batch first needed one; train-vae's frames took another size's folder only to fail
    at a missing file. Both are said when the dataset is opened, in one line with the way to remake the files."""
    import shutil

    from lvcd.data.dataset import FrameClips

    root = tmp_path / "root"
    shutil.copytree(official_root, root)
    index = json.loads((root / "train_clips_hist.json").read_text())
    (root / "train_clips_hist.json").write_text(json.dumps({c: index[c] for c in ("Movie_0", "Movie_1")}))
    (root / "lat_320" / "Movie" / "00039.pt").unlink()  # Movie_0's last frame
    (root / "draw_320" / "Movie" / "00045.png").unlink()  # in Movie_1
    (root / "img_320" / "Movie" / "00050.png").unlink()  # Movie_1 too
    with pytest.raises(InputError) as caught:
        LVCDClipDataset(root, seed=0)
    message = str(caught.value)
    assert "\n" not in message, message
    assert message.startswith("3 of the 56 frames train_clips_hist.json lists lack files on disk (")
    assert f"{root / 'lat_320' / 'Movie' / '00039.safetensors'} is missing, the first)" in message
    assert "restore it from the dataset's download" in message
    with pytest.raises(InputError, match=r"^1 of the 56 frames .*img_320/Movie/00050.png is missing"):
        FrameClips(root, (320, 576), 4)  # train-vae reads the frames alone
    with pytest.raises(InputError, match=r"has no img_64/ for training height 64 \(present: img_320\)"):
        FrameClips(root, (64, 64), 4)
