"""Image and unit sampling is prefix-stable: asking for one more keeps the ones already drawn."""

from __future__ import annotations

import itertools

import numpy as np
import xarray as xr

from neuroattack.attacks.targeted import ranked_categories, select_targeted_images
from neuroattack.attacks.untargeted import attacked_stimuli
from neuroattack.data.stimuli import make_stimuli
from neuroattack.networks.features import select_units


def stimuli(count: int = 40) -> xr.Dataset:
    pixels = np.zeros((count, 4, 4, 3), dtype=np.uint8)
    return make_stimuli(pixels, [f"img{i:03d}" for i in range(count)], [f"cat{i % 4}" for i in range(count)])


def test_attacked_images_are_a_prefix_of_a_longer_draw() -> None:
    ids = [attacked_stimuli(stimuli(), count, seed=3) for count in range(1, 21)]
    for shorter, longer in itertools.pairwise(ids):
        assert longer[: len(shorter)] == shorter
    assert len(set(ids[-1])) == 20
    assert attacked_stimuli(stimuli(), 20, seed=4) != ids[-1]


def test_sampled_units_grow_by_one_unit_at_a_time() -> None:
    activation = np.random.default_rng(0).standard_normal((30, 50))
    activation[:, [3, 7]] = 1.0  # two dead units are never drawn
    features = xr.Dataset({"activation": (("stimulus_id", "unit"), activation)}, attrs={"network": "n"})
    previous: set[int] = set()
    for count in range(1, 30):
        units = set(select_units(features, count, seed=1).tolist())
        assert previous <= units and len(units) == count and not units & {3, 7}
        previous = units


def test_targeted_images_grow_by_one_image_at_a_time() -> None:
    preference = xr.DataArray(
        np.random.default_rng(2).standard_normal((3, 4)),
        dims=("site", "category"),
        coords={"category": [f"cat{i}" for i in range(4)]},
    )
    ranking = ranked_categories(preference)
    categories = stimuli()["category"]
    previous = None
    for count in range(1, 9):
        picked = select_targeted_images(ranking, categories, count, 1, "increase", seed=5)["image_stimulus_id"].values
        if previous is not None:
            for site in range(3):
                assert set(previous[site]) <= set(picked[site])
        previous = picked
