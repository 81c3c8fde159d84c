"""The embedded stimulus source: real photographs shipped inside scikit-image and
scikit-learn, cut into labelled square crops (category = the photograph).

Each photograph is tiled into blocks and every block is assigned, by a seeded
draw, to exactly one split ("stimuli", "train" or "test"). Crops never cross a
block edge, so crops of different splits never share a pixel.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, Literal

import numpy as np
import xarray as xr
from skimage import color, data, transform
from sklearn.datasets import load_sample_image

from neuroattack.sources import brainscore_stimuli_to_dataset, image_folder_to_stimuli, make_stimuli

Split = Literal["stimuli", "train", "test"]
SPLIT_FRACTIONS: dict[str, float] = {"stimuli": 0.3, "train": 0.5, "test": 0.2}
BLOCKS_PER_SHORT_SIDE = 4

PHOTOGRAPHS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": data.astronaut,
    "camera": data.camera,
    "cat": data.chelsea,
    "coffee": data.coffee,
    "coins": data.coins,
    "galaxy": data.hubble_deep_field,
    "tissue": data.immunohistochemistry,
    "retina": data.retina,
    "rocket": data.rocket,
    "moon": data.moon,
    "temple": lambda: load_sample_image("china.jpg"),
    "flower": lambda: load_sample_image("flower.jpg"),
}
CATEGORIES: tuple[str, ...] = tuple(PHOTOGRAPHS)


@cache
def photograph(name: str) -> np.ndarray:
    """RGB uint8 array of one embedded photograph (greyscale ones are replicated)."""
    if name not in PHOTOGRAPHS:
        raise KeyError(f"unknown embedded photograph {name!r}; known: {', '.join(CATEGORIES)}")
    image = np.asarray(PHOTOGRAPHS[name]())
    if image.ndim == 2:
        image = (color.gray2rgb(image)).astype(np.uint8)
    return np.ascontiguousarray(image[..., :3].astype(np.uint8))


def _blocks(shape: tuple[int, ...]) -> list[tuple[int, int, int]]:
    """(row, col, size) of the square blocks tiling an image."""
    size = min(shape[0], shape[1]) // BLOCKS_PER_SHORT_SIDE
    return [(r, c, size) for r in range(0, shape[0] - size + 1, size) for c in range(0, shape[1] - size + 1, size)]


def split_blocks(name: str, split: Split, seed: int) -> list[tuple[int, int, int]]:
    """The blocks of photograph `name` that belong to `split` (a seeded, disjoint partition)."""
    blocks = _blocks(photograph(name).shape)
    order = np.random.default_rng([seed, CATEGORIES.index(name)]).permutation(len(blocks))
    bounds = np.cumsum([0] + [round(SPLIT_FRACTIONS[s] * len(blocks)) for s in ("stimuli", "train")])
    start, stop = {
        "stimuli": (bounds[0], bounds[1]),
        "train": (bounds[1], bounds[2]),
        "test": (bounds[2], len(blocks)),
    }[split]
    return [blocks[i] for i in sorted(order[start:stop])]


def crops(split: Split, per_category: int, resolution: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`per_category` random square crops of every photograph, inside `split`'s blocks.

    Returns (pixels uint8 of shape (n, resolution, resolution, 3), category index (n,)).
    The crop draw is seeded by (seed, split), so each split is reproducible on its own.
    """
    split_index = ("stimuli", "train", "test").index(split)
    rng = np.random.default_rng([seed, 1000 + split_index])
    pixels = np.empty((per_category * len(CATEGORIES), resolution, resolution, 3), dtype=np.uint8)
    labels = np.repeat(np.arange(len(CATEGORIES)), per_category)
    row = 0
    for name in CATEGORIES:
        image = photograph(name)
        blocks = split_blocks(name, split, seed)
        for _ in range(per_category):
            top, left, size = blocks[rng.integers(len(blocks))]
            side = int(rng.integers(size // 2, size + 1))
            dy, dx = rng.integers(0, size - side + 1, size=2)
            patch = image[top + dy : top + dy + side, left + dx : left + dx + side]
            if rng.random() < 0.5 and split != "stimuli":
                patch = patch[:, ::-1]
            resized = transform.resize(patch, (resolution, resolution), anti_aliasing=True, preserve_range=True)
            pixels[row] = np.clip(np.rint(resized), 0, 255).astype(np.uint8)
            row += 1
    return pixels, labels


def embedded_stimuli(per_category: int, resolution: int, seed: int) -> xr.Dataset:
    """The embedded stimulus set: `per_category` crops of every photograph, ids like `cat_001`."""
    pixels, labels = crops("stimuli", per_category, resolution, seed)
    counters: dict[int, int] = {}
    ids = []
    for label in labels:
        counters[label] = counters.get(label, 0) + 1
        ids.append(f"{CATEGORIES[label]}_{counters[label]:03d}")
    return make_stimuli(pixels, ids, [CATEGORIES[label] for label in labels])


def stimulus_set(settings: Mapping[str, Any], seed: int, inputs: Mapping[str, str | os.PathLike[str]]) -> xr.Dataset:
    """The configured stimulus set (`stimuli` section): embedded, a Brain-Score set
    (`inputs` csv and zip) or an image folder (`inputs` folder)."""
    source = settings["source"]
    if source == "embedded":
        return embedded_stimuli(settings["per_category"], settings["resolution"], seed)
    if source == "brainscore":
        return brainscore_stimuli_to_dataset(inputs["csv"], inputs["zip"], settings["resolution"])
    if source == "folder":
        return image_folder_to_stimuli(inputs["folder"], settings["resolution"])
    raise ValueError(f"stimuli.source {source!r}: use embedded, brainscore or folder")
