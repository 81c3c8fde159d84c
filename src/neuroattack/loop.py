"""The closed loop over recording rounds.

Round 1 attacks every site's surrogate fitted on the clean recordings. Each round shows
the animal (or the simulated brain) the attacked clean images, their perturbed images,
and random-direction images of every eps on the same clean images (the model-free
baseline), and records them. Round r's site models are refitted on the clean recordings
plus the recordings of every round before r, and attack the same clean images again.

Per round, sensitivity is estimated for: the brain's sign-corrected black-box change
(the sign from the site models that made the perturbation, fitted before the round),
the recorded random-direction baseline (noise-corrected, see `random_baseline`), the
surrogate's own prediction and, in silico, the brain's white-box truth.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import torch
import xarray as xr

from neuroattack.analysis.sensitivity import (
    BRAIN_BLACK_BOX,
    BRAIN_WHITE_BOX,
    SURROGATE,
    random_directions,
    site_changes,
    site_sigma,
    summarize,
    summarize_populations,
)
from neuroattack.attacks.settings import AttackSettings
from neuroattack.attacks.untargeted import attack_targets, result_block
from neuroattack.brain.rig import perturbed_index, responses_to_attacks
from neuroattack.brain.sitemodels import ensemble_response, fit_to_recordings
from neuroattack.data.stimuli import make_stimuli
from neuroattack.geometry import LEVELS, PROJECTION_SLACK, clamp_to_box, norm_named
from neuroattack.networks.features import features_layer
from neuroattack.networks.models import network_from_dataset
from neuroattack.networks.readouts import infer, to_tensor

RECORDED_RANDOM = random_directions("brain")  # the recorded random-direction baseline


def random_direction_images(pixels: np.ndarray, eps_grid: Sequence[float], seed: int, norm: str) -> np.ndarray:
    """One random direction of each eps per clean image, quantised to 8 bits like an attack:
    uint8 (image, eps, y, x, channel) from uint8 (image, y, x, channel)."""
    geometry = norm_named(norm)
    images = to_tensor(pixels).repeat_interleave(len(eps_grid), dim=0)
    eps = torch.as_tensor(np.tile(np.asarray(eps_grid, dtype=np.float32), len(pixels)))
    generator = torch.Generator().manual_seed(seed)
    direction = geometry.random_direction(images.shape, generator)
    delta = clamp_to_box(images, direction * (eps * (1 - PROJECTION_SLACK)).view(-1, 1, 1, 1))
    levels, _ = geometry.quantize(images, delta, eps)
    shown = torch.round(levels).clamp(0, LEVELS).to(torch.uint8).permute(0, 2, 3, 1).numpy()
    return shown.reshape(len(pixels), len(eps_grid), *shown.shape[1:])


def round_stimulus_set(
    stimuli: xr.Dataset, attacks: Sequence[xr.Dataset], round_number: int, seed: int, norm: str
) -> xr.Dataset:
    """The images shown in one round: the attacked clean images, every site's perturbed images
    (rig.perturbed_index's order) and one random-direction image per (clean image, eps).
    Perturbed and random ids carry the round (`round2__...`), so rounds never share an id."""
    index = perturbed_index(attacks)
    clean_ids = [str(a.attrs["stimulus_id"]) for a in attacks]
    eps_grid = attacks[0]["eps"].values.astype(float).tolist()
    n_clean = len(clean_ids)
    prefix = f"round{round_number}__"
    perturbed_ids = [prefix + s for s in index["stimulus_id"].values[n_clean:].tolist()]
    random_ids = [f"{prefix}{c}__random__eps{e:g}" for c in clean_ids for e in eps_grid]
    clean_pixels = stimuli["pixels"].sel(stimulus_id=clean_ids).values
    perturbed = [a["perturbed"].transpose("site", "eps", "direction", "y", "x", "channel").values for a in attacks]
    random = random_direction_images(clean_pixels, eps_grid, seed, norm)
    pixels = np.concatenate(
        [clean_pixels, *(p.reshape(-1, *p.shape[3:]) for p in perturbed), random.reshape(-1, *random.shape[2:])]
    )
    n_random = len(random_ids)
    categories = index["category"].values.tolist() + ["random"] * n_random
    shown = make_stimuli(pixels, clean_ids + perturbed_ids + random_ids, categories)
    category_of = dict(zip(stimuli["stimulus_id"].values.tolist(), stimuli["category"].values.tolist(), strict=True))
    clean_of = index["clean_stimulus_id"].values.tolist() + [c for c in clean_ids for _ in eps_grid]

    def extended(name: str, fill: object) -> np.ndarray:
        return np.asarray(index[name].values.tolist() + [fill] * n_random)

    return shown.assign_coords(
        clean_stimulus_id=("stimulus_id", np.asarray(clean_of, dtype=str)),
        clean_category=("stimulus_id", np.asarray([category_of[c] for c in clean_of], dtype=str)),
        target_neuroid_id=("stimulus_id", extended("target_neuroid_id", "").astype(str)),
        eps=("stimulus_id", np.concatenate([index["eps"].values, np.tile(eps_grid, n_clean)]).astype(float)),
        direction=("stimulus_id", extended("direction", "").astype(str)),
    ).assign_attrs(round=round_number)


def trial_statistics(recordings: xr.Dataset, stimulus_ids: Sequence[str], neuroid_id: Sequence[str]) -> xr.Dataset:
    """Per (stimulus_id, site): `mean`, unbiased trial variance `variance` and `count` of the
    valid (finite) trials, sites in the order of `neuroid_id`."""
    response = recordings["response"]
    grouped = response.groupby("stimulus_id")
    stats = xr.Dataset(
        {
            "mean": grouped.mean("presentation"),
            "variance": grouped.var("presentation", ddof=1),
            "count": response.notnull().groupby("stimulus_id").sum("presentation"),
        }
    )
    positions = {str(n): i for i, n in enumerate(recordings["neuroid_id"].values)}
    missing = [str(n) for n in neuroid_id if str(n) not in positions]
    if missing:
        raise KeyError(f"the round's recordings lack sites the site models were fitted for: {missing[:5]}")
    stats = stats.isel(site=[positions[str(n)] for n in neuroid_id])
    return stats.sel(stimulus_id=list(stimulus_ids)).transpose("stimulus_id", "site")


def noise_corrected_squared_change(
    perturbed_mean: np.ndarray,
    perturbed_variance: np.ndarray,
    perturbed_count: np.ndarray,
    clean_mean: np.ndarray,
    clean_variance: np.ndarray,
    clean_count: np.ndarray,
) -> np.ndarray:
    """An unbiased estimate of the squared change of the expected response, (r(x+d) - r(x))^2,
    from trial means and unbiased trial variances of independent trials:
    (mean_p - mean_c)^2 - var_p / n_p - var_c / n_c. The naive (mean_p - mean_c)^2 exceeds it
    by the noise variance of the difference in expectation. Negative values are kept (clipping
    them would bias the mean)."""
    difference = np.asarray(perturbed_mean, dtype=np.float64) - np.asarray(clean_mean, dtype=np.float64)
    noise = np.asarray(perturbed_variance, dtype=np.float64) / perturbed_count + np.asarray(
        clean_variance, dtype=np.float64
    ) / np.asarray(clean_count, dtype=np.float64)
    squared: np.ndarray = difference**2 - noise
    return squared


def round_responses(shown: xr.Dataset, recordings: xr.Dataset, attacks: Sequence[xr.Dataset]) -> xr.Dataset:
    """A round's recordings matched back to its attacks (rig.responses_to_attacks), plus the
    random-direction baseline: `random_recorded_change` and its unbiased squared change
    `random_squared_change` (site, image, eps)."""
    attacked = shown.isel(stimulus_id=np.flatnonzero(shown["category"].values != "random"))
    responses = responses_to_attacks(attacked, recordings, attacks)
    random = shown.isel(stimulus_id=np.flatnonzero(shown["category"].values == "random"))
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
    responses.attrs["round"] = int(shown.attrs["round"])
    return responses


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
    result.attrs = {"round": int(responses.attrs.get("round", 0)), "bootstrap": bootstrap}
    return result


def refit_site_models(
    first_models: xr.Dataset,
    surrogate: xr.Dataset,
    features: xr.Dataset,
    clean_recordings: xr.Dataset,
    stimuli: xr.Dataset,
    earlier: Sequence[tuple[xr.Dataset, xr.Dataset]],
    alphas: Sequence[float],
    folds: int,
    reliability_splits: int,
    seed: int,
    device: torch.device | None = None,
) -> xr.Dataset:
    """Round r's site models: each site's linear readout of the surrogate's features refitted
    on the clean recordings plus every earlier round's recordings of its perturbed and
    random-direction images (`earlier`: (stimulus set, recordings) per round). The sites are
    round 1's (`first_models`), in its order; a perturbed image counts in the category of its
    clean image for the cross-validation folds."""
    neuroids = first_models["neuroid_id"].values.astype(str).tolist()
    network = network_from_dataset(surrogate, "surrogate", features_layer(features)).to(device or torch.device("cpu"))
    parts_stimuli = [_pixels_and_category(stimuli, stimuli["category"].values)]
    parts_features = [features["activation"]]
    parts_recordings = [_select_sites(clean_recordings, neuroids)]
    for shown, recorded in earlier:
        new = shown.isel(stimulus_id=np.flatnonzero(shown["category"].values != "clean"))
        activation = infer(network.features, new["pixels"].values, device)
        ids = new["stimulus_id"].values
        parts_stimuli.append(_pixels_and_category(new, new["clean_category"].values))
        parts_features.append(
            xr.DataArray(
                activation,
                dims=("stimulus_id", "unit"),
                coords={"stimulus_id": ids, "unit": np.arange(activation.shape[1])},
            )
        )
        keep = np.isin(recorded["stimulus_id"].values, ids)
        parts_recordings.append(_select_sites(recorded.isel(presentation=np.flatnonzero(keep)), neuroids))
    pooled_features = xr.Dataset({"activation": xr.concat(parts_features, dim="stimulus_id")}, attrs=features.attrs)
    pooled_recordings = xr.concat(parts_recordings, dim="presentation", coords="minimal", compat="override")
    pooled_recordings.attrs = clean_recordings.attrs
    models = fit_to_recordings(
        pooled_features,
        pooled_recordings,
        xr.concat(parts_stimuli, dim="stimulus_id"),
        alphas,
        folds,
        reliability_splits,
        seed,
        name=f"recordings of the clean images and of {len(earlier)} round(s)",
    )
    if models["neuroid_id"].values.astype(str).tolist() != neuroids:
        raise ValueError(
            "refitting changed the set of usable sites; the loop attacks round 1's sites in every round: "
            "check the later rounds' recordings (every site needs valid trials)"
        )
    models.attrs["rounds_fitted_on"] = len(earlier)
    return models


def _pixels_and_category(stimuli: xr.Dataset, category: np.ndarray) -> xr.Dataset:
    """A bare stimuli dataset: pixels and the given categories (the folds' strata)."""
    return xr.Dataset(
        {"pixels": (("stimulus_id", "y", "x", "channel"), stimuli["pixels"].values)},
        coords={"stimulus_id": stimuli["stimulus_id"].values, "category": ("stimulus_id", np.asarray(category))},
    )


def _select_sites(recordings: xr.Dataset, neuroids: Sequence[str]) -> xr.Dataset:
    positions = {str(n): i for i, n in enumerate(recordings["neuroid_id"].values)}
    missing = [n for n in neuroids if n not in positions]
    if missing:
        raise KeyError(f"recordings lack sites of the site models: {missing[:5]}; record every site in every round")
    return recordings.isel(site=[positions[n] for n in neuroids])


def attack_sites_again(
    first_round: xr.Dataset,
    stimuli: xr.Dataset,
    surrogates: Sequence[xr.Dataset],
    models: Sequence[xr.Dataset],
    settings: AttackSettings,
    seed: int,
    baseline_seed: int,
    previous: xr.Dataset | None = None,
    device: torch.device | None = None,
    progress: Callable[[float, int], None] | None = None,
) -> xr.Dataset:
    """A round's attack on one clean image: every site's predicted response, the mean over
    the ensemble members (surrogate network k with its site models models[k]; one member:
    the single surrogate). With `previous` (the earlier round's attack file of the image),
    each row's first restart starts from that round's best perturbation of the row. The
    network units' results (which no round changes) are round 1's (`first_round`)."""
    stimulus_id = str(first_round.attrs["stimulus_id"])
    image = to_tensor(stimuli["pixels"].sel(stimulus_id=[stimulus_id]).values).to(device or torch.device("cpu"))
    eps_grid = first_round["eps"].values.astype(float).tolist()
    neuroid_id = models[0]["neuroid_id"].values
    warm_start = None if previous is None else warm_start_of(previous, first_round, neuroid_id, image)
    sites = attack_targets(
        ensemble_response(surrogates, models),
        image,
        np.arange(models[0].sizes["site"]),
        eps_grid,
        settings,
        seed,
        progress,
        warm_start=warm_start,
        baseline_seed=baseline_seed,
    )
    coords = {
        "eps": eps_grid,
        "direction": first_round["direction"].values,
        "neuroid_id": ("site", neuroid_id),
    }
    ds = result_block("site", sites, coords)
    ds["perturbed"] = (("site", "eps", "direction", "y", "x", "channel"), sites["perturbed"])
    units = [name for name in first_round.data_vars if str(name).startswith("unit_")]
    ds = ds.merge(first_round[units])
    ds.attrs = {
        **first_round.attrs,
        "attack_seed": seed,
        "ensemble": [str(m.attrs.get("surrogate_network", "")) for m in models],
        "warm_started": int(previous is not None),
    }
    return ds


def warm_start_of(
    previous: xr.Dataset, first_round: xr.Dataset, neuroid_id: np.ndarray, image: torch.Tensor
) -> torch.Tensor:
    """An earlier round's best perturbation of every (site, eps, direction) row of one clean
    `image` (1, C, H, W), in attack_targets' row order, in [0, 1] pixel units."""
    if str(previous.attrs["stimulus_id"]) != str(first_round.attrs["stimulus_id"]):
        raise ValueError(
            f"the warm start comes from an attack on {previous.attrs['stimulus_id']}, "
            f"not on {first_round.attrs['stimulus_id']}"
        )
    for name, expected in (
        ("neuroid_id", neuroid_id),
        ("eps", first_round["eps"].values),
        ("direction", first_round["direction"].values),
    ):
        if previous[name].values.tolist() != np.asarray(expected).tolist():
            raise ValueError(f"the earlier round's attack has other {name} values than this round's; rerun it")
    shown = previous["perturbed"].transpose("site", "eps", "direction", "y", "x", "channel").values
    return to_tensor(shown.reshape(-1, *shown.shape[3:])).to(image.device) - image


def check_round_recordings(
    recordings: xr.Dataset,
    shown: xr.Dataset,
    clean: xr.Dataset,
    modelled_sites: Sequence[str],
    table: str | os.PathLike[str],
) -> xr.Dataset:
    """A rig's recordings of one round (`table`), checked against the round's stimulus set
    (`shown`: every image recorded, none from elsewhere) and the sites: every site the loop
    models and attacks (`modelled_sites`) recorded, and no site the clean recordings lack."""
    folder = f"rig/round{shown.attrs['round']}/"
    images = shown["stimulus_id"].values.astype(str).tolist()
    recorded = pd.unique(recordings["stimulus_id"].values.astype(str)).tolist()
    missing, extra = sorted(set(images) - set(recorded)), sorted(set(recorded) - set(images))
    if missing:
        raise KeyError(
            f"{os.fspath(table)}: no recordings of {len(missing)} of the round's {len(images)} images, "
            f"e.g. {missing[:3]}; record every image of the round's stimulus set ({folder})"
        )
    if extra:
        raise KeyError(
            f"{os.fspath(table)}: {len(extra)} stimulus ids are not images of this round's stimulus set ({folder}), "
            f"e.g. {extra[:3]} (the round's ids look like {images[:2]}); is this another round's table?"
        )
    found = set(recordings["neuroid_id"].values.astype(str).tolist())
    known = set(clean["neuroid_id"].values.astype(str).tolist())
    absent = [site for site in modelled_sites if site not in found]
    other = sorted(found - known)
    if absent or other:
        raise KeyError(
            f"{os.fspath(table)}: {len(absent)} of the {len(modelled_sites)} sites the loop attacks are missing, "
            f"e.g. {absent[:3]}; {len(other)} sites are not in the clean recordings, e.g. {other[:3]}; "
            "record the same sites as the clean recordings, named by the same neuroid_id"
        )
    return recordings
