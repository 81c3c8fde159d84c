"""Embedded stimuli: disjoint splits, shapes, determinism."""

from __future__ import annotations

import numpy as np

from neuroattack.data.stimuli import CATEGORIES, crops, photograph, split_blocks


def overlaps(a: tuple[int, int, int], b: tuple[int, int, int]) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[2] and b[1] < a[1] + a[2]


def test_splits_never_share_a_pixel() -> None:
    for name in CATEGORIES:
        parts = {split: split_blocks(name, split, seed=0) for split in ("stimuli", "train", "test")}
        assert all(parts.values()), name
        for first, second in [("stimuli", "train"), ("stimuli", "test"), ("train", "test")]:
            assert not any(overlaps(a, b) for a in parts[first] for b in parts[second]), (name, first, second)
        height, width = photograph(name).shape[:2]
        assert all(r + s <= height and c + s <= width for part in parts.values() for r, c, s in part)


def test_crops_are_uint8_labelled_and_reproducible() -> None:
    pixels, labels = crops("stimuli", 3, 24, seed=0)
    assert pixels.shape == (3 * len(CATEGORIES), 24, 24, 3) and pixels.dtype == np.uint8
    assert np.bincount(labels).tolist() == [3] * len(CATEGORIES)
    again, _ = crops("stimuli", 3, 24, seed=0)
    np.testing.assert_array_equal(pixels, again)
    other, _ = crops("stimuli", 3, 24, seed=1)
    assert not np.array_equal(pixels, other)
    assert pixels.std() > 10  # real photographs, not blank
