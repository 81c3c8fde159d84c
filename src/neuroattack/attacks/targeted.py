"""Category preference and super-stimuli.

For every site, the stimulus categories are ranked by the site's trial-averaged
recorded response. Images of its least-preferred categories are pushed UP by a
targeted attack on the site's surrogate (one objective: increase only), at every
eps of a grid; the mirror experiment pushes images of its most-preferred
categories DOWN. The achieved predicted responses are compared with the site's
responses to natural images: the mean over its preferred category (predicted and
recorded), and the extremes over all natural images.

All (site, image, eps) rows of one direction run through a single `pgd_attack` call.
The perturbed images are kept (8-bit, the norm that counts is after quantisation),
so that a lab can show them to the animal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict

import numpy as np
import torch
import xarray as xr
from torch import nn

from neuroattack.attacks.engine import pgd_attack
from neuroattack.attacks.settings import AttackSettings, attack_grid
from neuroattack.config import DIRECTION_SIGNS, DIRECTIONS, Direction
from neuroattack.data.recordings import Labels, aligned_sites
from neuroattack.networks.readouts import LinearSiteResponse, infer, to_tensor

SIGN: dict[str, float] = dict(zip(DIRECTIONS, DIRECTION_SIGNS, strict=True))
REFERENCES = ("predicted", "recorded")


# --- preference ranking ---------------------------------------------------------------


def category_preference(mean_responses: xr.DataArray, categories: xr.DataArray | Labels) -> xr.DataArray:
    """Mean response of every site to every category, (site, category).

    `mean_responses` is (stimulus_id, site), trial-averaged. `categories` gives
    each stimulus's category: a DataArray indexed by stimulus_id (any superset of the
    recorded stimuli, e.g. a stimulus set's `category` coord), or a sequence in the
    order of `mean_responses`' stimuli. Categories come out in sorted order.
    """
    if set(mean_responses.dims) != {"stimulus_id", "site"}:
        raise ValueError(f"mean_responses must have dims (stimulus_id, site), got {mean_responses.dims}")
    labels = _categories_of(mean_responses["stimulus_id"].values, categories)
    grouped = mean_responses.assign_coords(category=("stimulus_id", labels)).groupby("category").mean("stimulus_id")
    preference = grouped.transpose("site", "category")
    preference.name = "preference"
    return preference


def _categories_of(stimulus_ids: np.ndarray, categories: xr.DataArray | Labels) -> np.ndarray:
    """The category of every stimulus id, in the order of `stimulus_ids`."""
    if isinstance(categories, xr.DataArray):
        known = {str(s) for s in categories["stimulus_id"].values}
        missing = [str(s) for s in stimulus_ids if str(s) not in known]
        if missing:
            raise KeyError(
                f"no category for {len(missing)} recorded stimuli, e.g. {missing[:3]}; "
                "do the stimuli match the recordings?"
            )
        return np.asarray(categories.sel(stimulus_id=stimulus_ids).values, dtype=str)
    labels = np.asarray(list(categories), dtype=str)
    if labels.shape != stimulus_ids.shape:
        raise ValueError(f"{len(labels)} categories for {len(stimulus_ids)} stimuli; give one category per stimulus")
    return labels


def ranked_categories(preference: xr.DataArray) -> xr.DataArray:
    """Each unit's categories from least (rank 0) to most preferred; ties go by name.

    `preference` is (unit, category) with the unit dim first; the result is (unit, rank).
    """
    if preference.ndim != 2 or preference.dims[1] != "category":
        raise ValueError(f"preference must be (unit, category), got dims {preference.dims}")
    names = preference["category"].values.astype(str)
    by_name = np.argsort(names, kind="stable")
    values = preference.values[:, by_name]
    order = np.argsort(values, axis=1, kind="stable")
    unit_dim = preference.dims[0]
    ranking = xr.DataArray(
        names[by_name][order],
        dims=(unit_dim, "rank"),
        coords={"rank": np.arange(len(names))},
        name="category_rank",
    )
    return ranking.assign_coords({k: v for k, v in preference.coords.items() if v.dims == (unit_dim,)})


def targeted_categories(ranking: xr.DataArray, n_categories: int, direction: Direction) -> np.ndarray:
    """(unit, n_categories): the least preferred ('increase') or most preferred ('decrease') categories."""
    _check_direction(direction)
    available = ranking.sizes["rank"]
    if not 1 <= n_categories < available:
        raise ValueError(
            f"preference.categories = {n_categories}, but sites rank only {available} categories; "
            f"use 1 to {available - 1} (one category must stay out as the preferred reference)"
        )
    names = ranking.values
    return names[:, :n_categories] if direction == "increase" else names[:, ::-1][:, :n_categories]


def _check_direction(direction: str) -> None:
    if direction not in SIGN:
        raise ValueError(f"direction must be one of {list(SIGN)}, got {direction!r}")


# --- image selection ------------------------------------------------------------------


def select_targeted_images(
    ranking: xr.DataArray,
    stimulus_category: xr.DataArray,
    images_per_site: int,
    n_categories: int,
    direction: Direction,
    seed: int,
) -> xr.Dataset:
    """Per unit of `ranking` (unit, rank), `images_per_site` stimuli drawn without
    replacement from its `n_categories` least ('increase') or most ('decrease') preferred
    categories. The draw of unit i is seeded by (seed, i) alone.

    `stimulus_category` is the stimuli's category, indexed by stimulus_id. Returns
    `image_stimulus_id` and `image_category`, both (unit, image).
    """
    if images_per_site < 1:
        raise ValueError(f"images_per_site must be at least 1, got {images_per_site}")
    chosen_categories = targeted_categories(ranking, n_categories, direction)
    ids = np.asarray(stimulus_category["stimulus_id"].values, dtype=str)
    labels = np.asarray(stimulus_category.values, dtype=str)
    unit_dim = ranking.dims[0]
    picked = np.empty((ranking.sizes[unit_dim], images_per_site), dtype=object)
    for unit, categories in enumerate(chosen_categories):
        candidates = np.flatnonzero(np.isin(labels, categories))
        if len(candidates) < images_per_site:
            raise ValueError(
                f"unit {unit}: only {len(candidates)} stimuli in its {direction}-targeted categories "
                f"{list(categories)}; lower preference.images_per_site or raise preference.categories"
            )
        rng = np.random.default_rng([seed, unit])
        picked[unit] = ids[np.sort(rng.permutation(candidates)[:images_per_site])]  # prefix-stable
    picked_ids = picked.astype(str)
    category_of = dict(zip(ids, labels, strict=True))
    picked_categories = np.vectorize(category_of.__getitem__, otypes=[str])(picked_ids)
    dims = (unit_dim, "image")
    return xr.Dataset(
        {"image_stimulus_id": (dims, picked_ids), "image_category": (dims, picked_categories)},
        coords={"image": np.arange(images_per_site)},
    )


# --- references from natural images ---------------------------------------------------


def predicted_responses(response: LinearSiteResponse, pixels: np.ndarray, device: torch.device) -> np.ndarray:
    """(stimulus, site) predicted responses of every site to uint8 images (n, H, W, C)."""
    return infer(response.all_sites, pixels, device).astype(np.float64)


def natural_references(
    predicted: np.ndarray, recorded: np.ndarray, labels: np.ndarray, preferred: np.ndarray, least: np.ndarray
) -> dict[str, np.ndarray]:
    """Per site and reference ('predicted', 'recorded'): the mean over the preferred and
    least-preferred categories' natural images, and the max and min over all of them.
    `predicted`, `recorded` are (stimulus, site); `labels` (stimulus,); `preferred`, `least` (site,)."""
    stacked = np.stack([predicted, recorded], axis=-1)  # stimulus, site, reference
    recorded_here = np.isfinite(stacked)  # a stimulus without a valid trial of a site has a NaN mean
    in_preferred = labels[:, None] == preferred[None, :]  # stimulus, site
    in_least = labels[:, None] == least[None, :]

    def category_mean(mask: np.ndarray) -> np.ndarray:
        weights = (mask[:, :, None] & recorded_here).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean: np.ndarray = (np.where(recorded_here, stacked, 0.0) * weights).sum(0) / weights.sum(0)
        return mean

    def extreme(reduce: np.ufunc, fill: float) -> np.ndarray:
        found: np.ndarray = reduce.reduce(np.where(recorded_here, stacked, fill), axis=0)
        return np.where(recorded_here.any(axis=0), found, np.nan)

    return {
        "preferred_mean": category_mean(in_preferred),
        "nonpreferred_mean": category_mean(in_least),
        "natural_max": extreme(np.maximum, -np.inf),
        "natural_min": extreme(np.minimum, np.inf),
    }


# --- the attack -----------------------------------------------------------------------


def _attack_rows(
    response: nn.Module,
    images: torch.Tensor,
    sites: int,
    images_per_site: int,
    eps_grid: Sequence[float],
    settings: AttackSettings,
    seed: int,
    direction: Direction,
) -> dict[str, np.ndarray]:
    """One pgd_attack call over every (site, image, eps) row; arrays shaped (site, image, eps)."""
    targets = torch.arange(sites, device=images.device).repeat_interleave(images_per_site)
    grid = attack_grid(images, targets, eps_grid, [SIGN[direction]])
    result = pgd_attack(response, grid.images, grid.target, grid.eps, grid.sign, settings, seed)
    shape = (sites, images_per_site, len(eps_grid))

    def host(values: torch.Tensor) -> np.ndarray:
        return grid.to_host(values).astype(np.float64).reshape(shape)

    clean = host(result.clean)
    return {
        "clean": clean[:, :, 0],
        "attacked": clean + host(result.change),
        "delta_norm": host(result.delta_norm),
        "perturbed": result.perturbed.permute(0, 2, 3, 1)
        .cpu()
        .numpy()
        .reshape(*shape, *result.perturbed.shape[2:], -1),
    }


def _check_grid(eps_grid: Sequence[float]) -> list[float]:
    grid = [float(e) for e in eps_grid]
    if not grid or any(e <= 0 for e in grid):
        raise ValueError(f"preference.eps must be a non-empty list of positive budgets, got {list(eps_grid)}")
    if len(set(grid)) != len(grid):
        raise ValueError(f"preference.eps has repeated budgets: {grid}")
    return grid


def category_preference_experiment(
    response: LinearSiteResponse,
    stimuli: xr.Dataset,
    mean_responses: xr.DataArray,
    neuroid_id: Sequence[str],
    eps_grid: Sequence[float],
    images_per_site: int,
    n_categories: int,
    settings: AttackSettings,
    seed: int,
    directions: Sequence[Direction] = DIRECTIONS,
    device: torch.device | None = None,
) -> xr.Dataset:
    """The category-preference experiment, in every direction of `directions`.

    `response(images, target)` is site `target`'s predicted response (the surrogate; it
    also needs `all_sites(images)`), with sites in the order of `neuroid_id`.
    `mean_responses` are the trial-averaged recordings (stimulus_id, site); they rank
    each site's categories. Images of the `n_categories` least ('increase') or most ('decrease')
    preferred categories are attacked to raise ('increase') or lower ('decrease') the site's
    predicted response, at every eps.

    Returns a dataset with dims (direction, site, image, eps): `clean_predicted`,
    `attacked_predicted` (after 8-bit quantisation), `delta_norm`, the images'
    `image_stimulus_id` and `image_category`, the `perturbed` images (uint8, direction,
    site, image, eps, y, x, channel); per (direction, site, eps) the fractions of
    attacked images whose predicted response lies beyond the *predicted* references
    (`fraction_above_preferred`, `fraction_above_natural_max`,
    `fraction_below_nonpreferred`): prediction against prediction, on one scale. The
    direction-free variables (preferences and, per site, the natural-image references
    `preferred_mean`, `nonpreferred_mean`, `natural_max`, `natural_min`, each predicted
    and recorded) appear once.
    """
    if not directions:
        raise ValueError("no direction to attack; preference.direction must list 'increase' and/or 'decrease'")
    if len(set(directions)) != len(directions):
        raise ValueError(f"preference.direction repeats a direction: {list(directions)}")
    for direction in directions:
        _check_direction(direction)
    grid = _check_grid(eps_grid)
    device = device or torch.device("cpu")
    response = response.to(device)
    # what does not depend on the direction: rankings, predictions, natural references
    recorded = aligned_sites(mean_responses, neuroid_id)
    ids = np.asarray(recorded["stimulus_id"].values, dtype=str)
    labels = _categories_of(ids, stimuli["category"])
    preference = category_preference(recorded, labels)
    ranking = ranked_categories(preference)
    predicted = predicted_responses(response, stimuli["pixels"].sel(stimulus_id=ids).values, device)
    preferred, least = ranking.values[:, -1], ranking.values[:, 0]
    references = natural_references(predicted, recorded.values.astype(np.float64), labels, preferred, least)
    per_direction = []
    for direction in directions:
        selection = select_targeted_images(ranking, stimuli["category"], images_per_site, n_categories, direction, seed)
        chosen = selection["image_stimulus_id"].values
        images = to_tensor(stimuli["pixels"].sel(stimulus_id=chosen.ravel()).values).to(device)
        rows = _attack_rows(response, images, len(neuroid_id), images_per_site, grid, settings, seed, direction)
        per_direction.append(_direction_variables(rows, selection, references, grid))
    stacked = xr.concat(per_direction, dim="direction", coords="minimal", compat="override")
    shared = _shared_variables(preference, ranking, references, predicted, recorded, labels, neuroid_id)
    combined = xr.merge([stacked.assign_coords(direction=list(directions)), shared])
    return combined.assign_attrs(
        resolution=int(stimuli.sizes["y"]),
        images_per_site=images_per_site,
        targeted_categories=n_categories,
        seed=seed,
        **{f"attack_{k}": v for k, v in asdict(settings).items()},
        attack_search_precision=settings.search_precision(device),
    )


def _shared_variables(
    preference: xr.DataArray,
    ranking: xr.DataArray,
    references: Mapping[str, np.ndarray],
    predicted: np.ndarray,
    recorded: xr.DataArray,
    labels: np.ndarray,
    neuroid_id: Sequence[str],
) -> xr.Dataset:
    """What does not depend on the direction: preferences and natural-image references."""
    ds = xr.Dataset(
        {
            "preference": (("site", "category"), preference.values),
            "category_rank": (("site", "rank"), ranking.values),
            "preferred_category": ("site", ranking.values[:, -1]),
            "least_preferred_category": ("site", ranking.values[:, 0]),
            **{name: (("site", "reference"), values) for name, values in references.items()},
            "natural_response": (
                ("site", "natural", "reference"),
                np.stack([predicted.T, recorded.values.T.astype(np.float64)], axis=-1),
            ),
        },
        coords={
            "reference": list(REFERENCES),
            "category": preference["category"].values.astype(str),
            "rank": ranking["rank"].values,
            "neuroid_id": ("site", np.asarray(neuroid_id, dtype=str)),
            "natural_id": ("natural", np.asarray(recorded["stimulus_id"].values, dtype=str)),
            "natural_category": ("natural", labels),
        },
    )
    ds["preferred_mean"].attrs = {"long_name": "mean response to natural images of the site's preferred category"}
    return ds


def _direction_variables(
    rows: Mapping[str, np.ndarray], selection: xr.Dataset, references: Mapping[str, np.ndarray], grid: list[float]
) -> xr.Dataset:
    """One direction's attacked images and how far they went past the predicted references."""
    cube = ("site", "image", "eps")
    attacked = rows["attacked"]
    predicted_ref = {name: values[:, 0] for name, values in references.items()}
    ds = xr.Dataset(
        {
            "clean_predicted": (("site", "image"), rows["clean"]),
            "attacked_predicted": (cube, attacked),
            "delta_norm": (cube, rows["delta_norm"]),
            "perturbed": ((*cube, "y", "x", "channel"), rows["perturbed"]),
            "image_stimulus_id": selection["image_stimulus_id"].variable,
            "image_category": selection["image_category"].variable,
            "fraction_above_preferred": (
                ("site", "eps"),
                (attacked > predicted_ref["preferred_mean"][:, None, None]).mean(axis=1),
            ),
            "fraction_above_natural_max": (
                ("site", "eps"),
                (attacked > predicted_ref["natural_max"][:, None, None]).mean(axis=1),
            ),
            "fraction_below_nonpreferred": (
                ("site", "eps"),
                (attacked < predicted_ref["nonpreferred_mean"][:, None, None]).mean(axis=1),
            ),
        },
        coords={"eps": grid, "image": selection["image"].values},
    )
    ds["perturbed"].attrs = {"long_name": "perturbed image shown to the animal", "units": "8-bit level"}
    ds["attacked_predicted"].attrs = {"long_name": "surrogate's predicted response to the perturbed image"}
    ds["delta_norm"].attrs = {"long_name": "norm (attack_norm) of the quantised perturbation, pixels in [0, 1]"}
    return ds
