"""A round's responses: its recordings matched back to its attacks, noise-corrected, and its s~.

Each perturbed image counts for the site it was made for (`responses_to_attacks`); every
other site's change under it is kept too (`every_site_changes`: off-target specificity).
Per round, sensitivity is estimated for: the brain's sign-corrected black-box change (the
sign from the site models that made the perturbation, fitted before the round), the
recorded random-direction baseline (noise-corrected, see `random_baseline`), the
surrogate's own prediction and, in silico, the brain's white-box truth.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from neuroattack.analysis.sensitivity import (
    BRAIN_BLACK_BOX,
    BRAIN_WHITE_BOX,
    SURROGATE,
    noise_corrected_squared_change,
    random_directions,
    site_changes,
    site_sigma,
    summarize,
    summarize_populations,
    transfer_ratio,
)
from neuroattack.data.recordings import (
    aligned_sites,
    mean_response,
    trial_mean,
    trial_variance,
    trials_by_stimulus,
)

RECORDED_RANDOM = random_directions("brain")  # the recorded random-direction baseline


def responses_to_attacks(
    round_stimuli: xr.Dataset, recordings: xr.Dataset, attacks: Sequence[xr.Dataset]
) -> xr.Dataset:
    """Predicted and recorded responses, (site, image, eps, direction), from recordings of
    the images of `perturbed_index` (each perturbed image counts for its target site)."""
    averaged = mean_response(recordings)
    missing = sorted(set(round_stimuli["stimulus_id"].values.tolist()) - set(averaged["stimulus_id"].values.tolist()))
    if missing:
        raise KeyError(
            f"recordings lack {len(missing)} of the round's images, e.g. {missing[:3]}; record every image of the set"
        )
    clean_ids = [str(a.attrs["stimulus_id"]) for a in attacks]
    neuroids = attacks[0]["neuroid_id"].values
    averaged = aligned_sites(averaged, neuroids)  # (stimulus_id, site)
    clean = averaged.sel(stimulus_id=clean_ids).values  # (image, site)
    perturbed_rows = round_stimuli.isel(stimulus_id=slice(len(clean_ids), None))
    recorded = averaged.sel(stimulus_id=perturbed_rows["stimulus_id"].values).values  # (row, site)
    eps_grid, directions = attacks[0]["eps"].values, attacks[0]["direction"].values

    def position(values: xr.DataArray, labels: Any) -> np.ndarray:
        index: np.ndarray = pd.Index(np.asarray(labels)).get_indexer(
            np.asarray(values.values, dtype=np.asarray(labels).dtype)
        )
        return index

    site = position(perturbed_rows["target_neuroid_id"], neuroids.astype(str))
    own = np.full((len(neuroids), len(clean_ids), len(eps_grid), len(directions)), np.nan)
    own[
        site,
        position(perturbed_rows["clean_stimulus_id"], clean_ids),
        position(perturbed_rows["eps"], eps_grid.astype(float)),
        position(perturbed_rows["direction"], directions.astype(str)),
    ] = recorded[np.arange(len(site)), site]
    dims = ("site", "image", "eps", "direction")
    predicted_change = xr.concat([a["site_change"] for a in attacks], dim="image").transpose(*dims)
    predicted_clean = xr.concat([a["site_clean"] for a in attacks], dim="image").transpose("site", "image")
    return xr.Dataset(
        {
            "recorded_clean": (("site", "image"), clean.T),
            "recorded": (dims, own),
            "recorded_change": (dims, own - clean.T[:, :, None, None]),
            "predicted_clean": (("site", "image"), predicted_clean.values),
            "predicted_change": (dims, predicted_change.values),
        },
        coords={"image": clean_ids, "eps": eps_grid, "direction": directions, "neuroid_id": ("site", neuroids)},
    )


def trial_statistics(recordings: xr.Dataset, stimulus_ids: Sequence[str], neuroid_id: Sequence[str]) -> xr.Dataset:
    """Per (stimulus_id, site): `mean`, unbiased trial variance `variance` and `count` of the
    valid (finite) trials, sites in the order of `neuroid_id`."""
    positions = {str(n): i for i, n in enumerate(recordings["neuroid_id"].values)}
    missing = [str(n) for n in neuroid_id if str(n) not in positions]
    if missing:
        raise KeyError(f"the round's recordings lack sites the site models were fitted for: {missing[:5]}")
    values = recordings["response"].transpose("presentation", "site").values[:, [positions[str(n)] for n in neuroid_id]]
    trials, ids = trials_by_stimulus(recordings["stimulus_id"].values, values, stimulus_ids)
    dims = ("stimulus_id", "site")
    return xr.Dataset(
        {
            "mean": (dims, trial_mean(trials)),
            "variance": (dims, trial_variance(trials)),
            "count": (dims, np.isfinite(trials).sum(axis=1)),
        },
        coords={"stimulus_id": ids, "neuroid_id": ("site", [str(n) for n in neuroid_id])},
    )


def round_responses(
    round_stimuli: xr.Dataset, recordings: xr.Dataset, attacks: Sequence[xr.Dataset], brain: xr.Dataset | None = None
) -> xr.Dataset:
    """A round's recordings matched back to its attacks (rig.responses_to_attacks), plus the
    random-direction baseline: `random_recorded_change` and its unbiased squared change
    `random_squared_change` (site, image, eps); and every site's change under every
    perturbation (`every_site_changes`: off-target specificity), with a simulated `brain`'s
    noise-free truth beside it."""
    attacked = round_stimuli.isel(stimulus_id=np.flatnonzero(round_stimuli["category"].values != "random"))
    responses = responses_to_attacks(attacked, recordings, attacks)
    random = round_stimuli.isel(stimulus_id=np.flatnonzero(round_stimuli["category"].values == "random"))
    clean_ids = responses["image"].values.tolist()
    eps_grid = responses["eps"].values
    recorded_ids = set(recordings["stimulus_id"].values.tolist())
    missing = [s for s in random["stimulus_id"].values.tolist() if s not in recorded_ids]
    if missing:
        raise KeyError(
            f"recordings lack {len(missing)} of the round's random-direction images, e.g. {missing[:3]}; "
            "record every image of the round's stimulus set"
        )
    neuroids = responses["neuroid_id"].values.tolist()
    clean = trial_statistics(recordings, clean_ids, neuroids)
    shape = (len(clean_ids), len(eps_grid), len(neuroids))
    perturbed = trial_statistics(recordings, random["stimulus_id"].values.tolist(), neuroids)

    def per_image(stats: xr.Dataset, name: str) -> np.ndarray:
        values: np.ndarray = stats[name].values.reshape(shape).transpose(2, 0, 1)  # (site, image, eps)
        return values

    def repeated(name: str) -> np.ndarray:
        values: np.ndarray = np.repeat(clean[name].values.T[:, :, None], len(eps_grid), axis=2)
        return values

    dims = ("site", "image", "eps")
    responses["random_recorded_change"] = (dims, per_image(perturbed, "mean") - repeated("mean"))
    responses["random_squared_change"] = (
        dims,
        noise_corrected_squared_change(
            per_image(perturbed, "mean"),
            per_image(perturbed, "variance"),
            per_image(perturbed, "count"),
            repeated("mean"),
            repeated("variance"),
            repeated("count"),
        ),
    )
    responses = responses.merge(every_site_changes(attacked, recordings, responses, brain))
    responses.attrs["round"] = int(round_stimuli.attrs["round"])
    return responses


EVERY_SITE_DIMS = ("site", "image", "eps", "direction", "recorded_site")


def every_site_changes(
    attacked: xr.Dataset, recordings: xr.Dataset, responses: xr.Dataset, brain: xr.Dataset | None = None
) -> xr.Dataset:
    """Every recorded site's change under every perturbation aimed at one site, EVERY_SITE_DIMS
    (`site`: the target, `recorded_site`: the site that changed, in the same order):
    `every_site_change` (trial means, perturbed - clean) and its unbiased squared change
    `every_site_squared_change` (`noise_corrected_squared_change`); with a simulated `brain`,
    `every_site_true_change`, the change of its noise-free expected responses."""
    neuroids = responses["neuroid_id"].values.astype(str).tolist()
    images, eps_grid, directions = (responses[name].values for name in ("image", "eps", "direction"))
    perturbed_ids = attacked["stimulus_id"].values[len(images) :].tolist()  # (image, site, eps, direction) order
    shape = (len(images), len(neuroids), len(eps_grid), len(directions), len(neuroids))
    order = (1, 0, 2, 3, 4)  # to (site, image, eps, direction, recorded_site)
    clean = trial_statistics(recordings, images.tolist(), neuroids)
    perturbed = trial_statistics(recordings, perturbed_ids, neuroids)

    def shaped(values: np.ndarray) -> np.ndarray:
        reshaped: np.ndarray = values.reshape(shape).transpose(order)
        return reshaped

    def of_clean(name: str) -> np.ndarray:  # the clean image's statistics under every perturbation of it
        values = clean[name].values[:, None, None, None, :]
        return np.broadcast_to(values, shape).transpose(order)

    changes = {
        "every_site_change": shaped(perturbed["mean"].values) - of_clean("mean"),
        "every_site_squared_change": noise_corrected_squared_change(
            *(shaped(perturbed[name].values) for name in ("mean", "variance", "count")),
            *(of_clean(name) for name in ("mean", "variance", "count")),
        ),
    }
    if brain is not None:
        from neuroattack.brain.simulated import expected_responses
        from neuroattack.networks.readouts import infer

        columns = [brain["neuroid_id"].values.astype(str).tolist().index(n) for n in neuroids]
        expected = infer(expected_responses(brain).all_sites, attacked["pixels"].values)[:, columns]
        true_clean = expected[: len(images)][:, None, None, None, :]
        changes["every_site_true_change"] = (expected[len(images) :].reshape(shape) - true_clean).transpose(order)
    return xr.Dataset({name: (EVERY_SITE_DIMS, values.astype(np.float32)) for name, values in changes.items()})


def random_baseline(squared_change: xr.DataArray, sigma: xr.DataArray, bootstrap: int, seed: int) -> xr.Dataset:
    """The recorded model-free baseline on the s~ scale: the root of the mean over sites and
    images of the unbiased squared normalised change (sqrt(E[dr^2]) / sigma). Its square is
    unbiased; as a root mean square it is at least the mean |dr| / sigma of the same
    changes, so a guided estimate above it beats the mean-|dr| baseline too."""
    summary = summarize((squared_change / sigma**2).rename(site="unit"), bootstrap, seed)
    for name in ("s_tilde", "ci_low", "ci_high"):
        summary[name] = np.sqrt(summary[name].clip(min=0.0))
    return summary


def round_sensitivity(
    attacks: Sequence[xr.Dataset],
    responses: xr.Dataset,
    recordings: xr.Dataset,
    white_box_changes: xr.Dataset | None,
    bootstrap: int,
    seed: int,
) -> xr.Dataset:
    """s~(eps) with bootstrap CIs of one round (figure 6), populations: the brain's black-box
    estimate, the recorded random-direction baseline, the surrogate's prediction, and (in
    silico) the brain's white-box truth; the first and the last two are `site_changes`, as in
    figure 1, so the last round's values equal figure 1's."""
    changes = site_changes(attacks, responses, recordings, white_box_changes)
    summaries = summarize_populations(changes, bootstrap, seed)
    squared = responses["random_squared_change"]
    recorded_random = random_baseline(
        squared.drop_vars([c for c in squared.coords if c != "eps"]),
        site_sigma(recordings, attacks[0]["neuroid_id"].values),
        bootstrap,
        seed,
    )
    summaries = xr.concat([summaries, recorded_random.expand_dims(population=[RECORDED_RANDOM])], dim="population")
    order = [BRAIN_BLACK_BOX, RECORDED_RANDOM, SURROGATE, BRAIN_WHITE_BOX]
    result = summaries.sel(population=[name for name in order if name in summaries["population"].values])
    if white_box_changes is not None:
        result = result.merge(transfer_ratio(changes, bootstrap, seed))
    result.attrs = {"round": int(responses.attrs.get("round", 0)), "bootstrap": bootstrap}
    return result
