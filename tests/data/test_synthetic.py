"""The synthetic cartoon generator: determinism, exact line art, consistent labels, the motions it promises."""

from __future__ import annotations

import numpy as np
import pytest

from lvcd.data.synthetic import (
    BENCHMARK_SPLITS,
    LINE_RGB,
    SPLIT_CAPACITY,
    SPLIT_SEEDS,
    line_mask_of,
    split_seed,
    synth_shot,
)


def test_same_seed_same_shot_and_longer_shots_extend_shorter_ones():
    a = synth_shot(7, 20, (64, 64))
    b = synth_shot(7, 20, (64, 64))
    assert all(np.array_equal(x, y) for x, y in ((a.frames, b.frames), (a.lineart, b.lineart), (a.labels, b.labels)))
    longer = synth_shot(7, 30, (64, 64))
    assert np.array_equal(longer.frames[:20], a.frames)
    assert not np.array_equal(synth_shot(8, 20, (64, 64)).frames, a.frames)


def test_line_art_is_exactly_the_region_boundaries_and_binary():
    shot = synth_shot(split_seed("heldout", 3), 12, (96, 128))
    assert shot.frames.shape == (12, 96, 128, 3) and shot.lineart.shape == shot.labels.shape == (12, 96, 128)
    assert set(np.unique(shot.lineart)) <= {0, 255}
    assert np.array_equal(shot.line_mask, line_mask_of(shot.labels))
    # no colour leaks into the line art, and every line pixel is ink in the colour frame
    assert (shot.frames[shot.line_mask] == LINE_RGB).all()


def test_labels_are_flat_colour_regions_with_stable_ids():
    shot = synth_shot(split_seed("heldout", 5), 10, (64, 64))
    off_lines = ~shot.line_mask
    # every label has one colour away from the lines, in every frame, and it is the palette's
    pixels = shot.frames[off_lines]
    labels = shot.labels[off_lines]
    assert np.array_equal(pixels, shot.palette[labels])
    # palette colours are pairwise distinct (regions can be told apart)
    distances = np.linalg.norm(shot.palette[:, None].astype(float) - shot.palette[None].astype(float), axis=-1)
    assert (distances + np.eye(len(shot.palette)) * 1e9).min() > 0.1 * 255


def test_backgrounds_and_objects_are_in_the_promised_ranges():
    regions, moved, entering = [], [], 0
    for index in range(24):
        shot = synth_shot(split_seed("heldout", index), 45, (64, 64))
        regions.append(len(shot.palette))
        # fraction of pixels whose label changes between the first and the last frame: the shots move
        moved.append(float((shot.labels[0] != shot.labels[-1]).mean()))
        first_labels = set(np.unique(shot.labels[0]))
        entering += len(set(np.unique(shot.labels[-1])) - first_labels) > 0
    assert min(regions) >= 2 + 3 and max(regions) <= 4 + 2 * 8
    assert np.median(moved) > 0.1  # large motions, not jitter
    assert entering >= 3  # some regions are not visible in the reference (objects entering, occlusions)


def test_split_seeds_are_disjoint_and_checked():
    starts = sorted(SPLIT_SEEDS.values())
    assert all(b - a >= SPLIT_CAPACITY for a, b in zip(starts, starts[1:], strict=False))
    assert split_seed("long", 7) == SPLIT_SEEDS["long"] + 7
    assert BENCHMARK_SPLITS == {"heldout": (24, 45), "long": (8, 105)}
    with pytest.raises(ValueError, match="Unknown split"):
        split_seed("test", 0)
    with pytest.raises(ValueError, match="outside"):
        split_seed("train", SPLIT_CAPACITY)
