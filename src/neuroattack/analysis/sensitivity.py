"""Normalised adversarial sensitivity s~(eps).

Every estimator returns per-sample normalised changes with dims
(unit, image, eps); `summarize` averages them over units and images and adds a
two-way (units x images) bootstrap confidence interval.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import xarray as xr

from neuroattack.config import BRAIN, DIRECTION_SIGNS, DIRECTIONS, split_view
from neuroattack.data.recordings import aligned_sites, mean_response

# Population keys (the `population` coord of every sensitivity file; the figures label them).
# Networks are populations by their config name, which may not be one of these (the schema says so).
BRAIN_BLACK_BOX = "black_box"  # the brain's recorded responses to the surrogate's perturbations
BRAIN_WHITE_BOX = "white_box"  # the simulated brain attacked directly (in silico only)
SURROGATE = "surrogate"  # the site models' own predicted changes
RANDOM_PREFIX = "random:"
MEASURED_PREFIX = "black_box:"


def random_directions(name: str) -> str:
    """The population of random perturbations of the same norm, evaluated on `name`
    (a population key, or `brain` for the recorded ones)."""
    return f"{RANDOM_PREFIX}{name}"


def measured_as_brain(network: str) -> str:
    """The population of `network` measured through the brain's own black-box pipeline."""
    return f"{MEASURED_PREFIX}{network}"


CONFIDENCE = 0.95  # the level of every interval the workflow reports

DIRECTION_SIGN = xr.DataArray(list(DIRECTION_SIGNS), dims="direction", coords={"direction": list(DIRECTIONS)})


def white_box(change: xr.DataArray, sigma: xr.DataArray) -> xr.DataArray:
    """s_i(x, eps) / sigma_i: the larger of the two objectives' achieved changes (>= 0,
    since delta = 0 is always allowed)."""
    achieved = (change * DIRECTION_SIGN).max("direction").clip(min=0.0)
    return achieved / sigma


def sign_corrected(predicted: xr.DataArray, recorded: xr.DataArray, sigma: xr.DataArray) -> xr.DataArray:
    """Black-box estimate for noisy sites: for each (site, image, eps) show the
    direction whose *predicted* change is larger and weight the recorded change by
    the sign of the predicted one: sign(df) * dr. Unbiased when the surrogate gets the
    direction right, a lower bound otherwise; noise in dr averages out."""
    chosen = (predicted * DIRECTION_SIGN).argmax("direction")
    predicted_chosen = predicted.isel(direction=chosen)
    recorded_chosen = recorded.isel(direction=chosen)
    estimate: xr.DataArray = xr.ufuncs.sign(predicted_chosen) * recorded_chosen / sigma
    return estimate


def interval(samples: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The central `confidence` interval of bootstrap samples (NaN samples left out)."""
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2
    return float(np.quantile(finite, tail)), float(np.quantile(finite, 1 - tail))


def random_pair_level(responses: np.ndarray, pairs: int, seed: int) -> float:
    """Mean over units of E|r(x) - r(x')| / sigma for random pairs of clean images.
    `responses` is (images, units); a NaN (an image without a valid trial of a site) is left out."""
    responses = np.asarray(responses, dtype=np.float64)
    sigma = np.nanstd(responses, axis=0, ddof=1) if np.isnan(responses).any() else responses.std(axis=0, ddof=1)
    usable = sigma > 0
    rng = np.random.default_rng(seed)
    first = rng.integers(len(responses), size=pairs)
    second = (first + rng.integers(1, len(responses), size=pairs)) % len(responses)
    gaps = np.abs(responses[first][:, usable] - responses[second][:, usable]) / sigma[usable]
    return float(np.nanmean(gaps))


def bootstrap_means(values: np.ndarray, bootstrap: int, seed: int) -> np.ndarray:
    """(bootstrap, eps) means of `values` (unit, image, eps) over units x images resamples; the
    same `seed` and shape give the same resamples (so two populations' samples pair up)."""
    n_units, n_images, _ = values.shape
    rng = np.random.default_rng(seed)
    samples = np.empty((bootstrap, values.shape[2]))
    for b in range(bootstrap):
        units = rng.integers(n_units, size=n_units)
        images = rng.integers(n_images, size=n_images)
        samples[b] = np.nanmean(values[units][:, images], axis=(0, 1))
    return samples


def summarize(normalized: xr.DataArray, bootstrap: int, seed: int, confidence: float = CONFIDENCE) -> xr.Dataset:
    """s~(eps) = mean over units and images, with a units x images bootstrap CI."""
    values = normalized.transpose("unit", "image", "eps").values.astype(np.float64)
    n_units, n_images, _ = values.shape
    samples = bootstrap_means(values, bootstrap, seed)
    tail = (1 - confidence) / 2
    eps = normalized["eps"].values
    return xr.Dataset(
        {
            "s_tilde": ("eps", np.nanmean(values, axis=(0, 1))),
            "ci_low": ("eps", np.quantile(samples, tail, axis=0)),
            "ci_high": ("eps", np.quantile(samples, 1 - tail, axis=0)),
            "n_units": ((), n_units),
            "n_images": ((), n_images),
        },
        coords={"eps": eps},
    )


def _as_units(array: xr.DataArray) -> xr.DataArray:
    """Sites and network units are pooled alike: both become `unit`."""
    return array.rename({"site": "unit"}) if "site" in array.dims else array


def _check_same_units(attacks: Sequence[xr.Dataset]) -> None:
    reference = attacks[0]["unit_index"].values
    for attack in attacks:
        if not np.array_equal(attack["unit_index"].values, reference):
            raise ValueError(
                f"attack files disagree on the attacked units ({attack.attrs['stimulus_id']}); remake them all: "
                "run your snakemake command again with --forcerun attack_units"
            )


def _check_same_images(site_attacks: Sequence[xr.Dataset], unit_attacks: Sequence[xr.Dataset]) -> None:
    sites, units = ([str(a.attrs["stimulus_id"]) for a in files] for files in (site_attacks, unit_attacks))
    if sites != units:
        raise ValueError(
            f"the sites' attacks are of the images {sites[:3]}..., the network units' of {units[:3]}...; "
            "remake both from the same config: run your snakemake command again with --forcerun attack_units"
        )


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


def site_sigma(recordings: xr.Dataset, neuroid_id: np.ndarray) -> xr.DataArray:
    """sigma_i: the spread (ddof 1) of each site's trial-mean responses over the clean stimuli."""
    clean_means = aligned_sites(mean_response(recordings), neuroid_id)
    return xr.DataArray(clean_means.std("stimulus_id", ddof=1).values, dims="site")


def site_changes(
    attacks: Sequence[xr.Dataset],
    responses: xr.Dataset | None,
    recordings: xr.Dataset,
    white_box_changes: xr.Dataset | None,
) -> xr.DataArray:
    """The paper's estimator: the normalised change of every (population, site, image, eps),
    every site normalised by its spread over the clean recordings (`site_sigma`).

    Populations, in this order: the brain's sign-corrected black-box estimate (where
    `responses`, recordings of the perturbed images, are given), the surrogate's prediction,
    the brain's white-box truth (a simulated brain's `white_box_changes`), and random
    directions on the surrogate. Figures 1, 4 and 6 are views of it."""
    neuroids = attacks[0]["neuroid_id"].values
    images = [str(a.attrs["stimulus_id"]) for a in attacks]
    sigma = site_sigma(recordings, neuroids)

    def over_images(variable: str) -> xr.DataArray:
        return xr.concat([a[variable] for a in attacks], dim="image").assign_coords(image=images)

    changes = {}
    if responses is not None:
        black_box = sign_corrected(responses["predicted_change"], responses["recorded_change"], sigma)
        changes[BRAIN_BLACK_BOX] = black_box.sel(image=images)
    changes[SURROGATE] = white_box(over_images("site_change"), sigma)
    if white_box_changes is not None:
        truth = white_box(white_box_changes["change"], white_box_changes["sigma"])
        changes[BRAIN_WHITE_BOX] = truth.sel(image=images)
    changes[random_directions("surrogate")] = white_box(over_images("site_random_change"), sigma)
    aligned = [
        values.drop_vars([c for c in values.coords if c not in ("image", "eps")]).transpose("site", "image", "eps")
        for values in changes.values()
    ]
    stacked = xr.concat(aligned, dim="population")
    return stacked.assign_coords(population=list(changes), neuroid_id=("site", neuroids), image=images)


def summarize_populations(changes: xr.DataArray, bootstrap: int, seed: int) -> xr.Dataset:
    """s~(eps) with its bootstrap interval for every population of `changes` (population, unit
    or site, image, eps), each summarised alone with the same seed."""
    summaries = []
    for name in changes["population"].values:
        values = _as_units(changes.sel(population=name))
        summaries.append(summarize(values.drop_vars([c for c in values.coords if c != "eps"]), bootstrap, seed))
    return xr.concat(summaries, dim="population").assign_coords(population=changes["population"].values)


def estimate_populations(
    attacks: Sequence[xr.Dataset],
    unit_attacks: Sequence[xr.Dataset],
    responses: xr.Dataset | None,
    recordings: xr.Dataset,
    features: Mapping[str, xr.Dataset],
    white_box_changes: xr.Dataset | None,
    bootstrap: int,
    random_pairs: int,
    seed: int,
) -> xr.Dataset:
    """Figure 1: s~(eps) with bootstrap CIs for every population, and each one's random-pair level.

    Populations: those of `site_changes` of the round's `attacks` (the brain, the surrogate,
    random directions on it), then every network of `features` and random directions on each,
    from the network units' attacks of the same images (`unit_attacks`)."""
    sites = site_changes(attacks, responses, recordings, white_box_changes)
    order = [BRAIN_BLACK_BOX, SURROGATE, random_directions("surrogate"), BRAIN_WHITE_BOX]
    sites = sites.sel(population=[name for name in order if name in sites["population"].values])
    summaries = [summarize_populations(sites, bootstrap, seed)]
    clean_means = aligned_sites(mean_response(recordings), attacks[0]["neuroid_id"].values)
    pair_levels = {
        BRAIN_BLACK_BOX if responses is not None else SURROGATE: random_pair_level(
            clean_means.values, random_pairs, seed
        )
    }
    _check_same_images(attacks, unit_attacks)
    _check_same_units(unit_attacks)
    unit_change = xr.concat(
        [a[["unit_change", "unit_random_change"]] for a in unit_attacks],
        dim="image",
        coords="minimal",
        compat="override",
    )
    for name, feats in features.items():
        part = unit_change.isel(unit=np.flatnonzero(unit_change["network"].values == name))
        activation = feats["activation"].sel(unit=part["unit_index"].values)
        sigma = xr.DataArray(activation.std("stimulus_id", ddof=1).values, dims="unit")
        units = {
            name: white_box(part["unit_change"], sigma),
            random_directions(name): white_box(part["unit_random_change"], sigma),
        }
        for population, values in units.items():
            summary = summarize(values.drop_vars([c for c in values.coords if c != "eps"]), bootstrap, seed)
            summaries.append(summary.expand_dims(population=[population]))
        pair_levels[name] = random_pair_level(activation.values, random_pairs, seed)
    result = xr.concat(summaries, dim="population")
    levels = [pair_levels.get(name, np.nan) for name in result["population"].values]
    result["random_pair_level"] = ("population", np.asarray(levels, dtype=float))
    result.attrs = {"one_sd_level": 1.0, "bootstrap": bootstrap}
    return result


def transfer_ratio(changes: xr.DataArray, bootstrap: int, seed: int, confidence: float = CONFIDENCE) -> xr.Dataset:
    """How much of its white-box truth the black-box estimate recovers: s~ black box / s~ white
    box over the same sites and images, per eps, with a paired bootstrap interval (both
    populations of `changes`, as `site_changes` gives them, resampled alike)."""
    means = {
        name: changes.sel(population=name).transpose("site", "image", "eps").values.astype(np.float64)
        for name in (BRAIN_BLACK_BOX, BRAIN_WHITE_BOX)
    }
    samples = {name: bootstrap_means(values, bootstrap, seed) for name, values in means.items()}
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.nanmean(means[BRAIN_BLACK_BOX], axis=(0, 1)) / np.nanmean(means[BRAIN_WHITE_BOX], axis=(0, 1))
        sampled = samples[BRAIN_BLACK_BOX] / samples[BRAIN_WHITE_BOX]
    tail = (1 - confidence) / 2
    return xr.Dataset(
        {
            "transfer": ("eps", ratio),
            "transfer_low": ("eps", np.nanquantile(sampled, tail, axis=0)),
            "transfer_high": ("eps", np.nanquantile(sampled, 1 - tail, axis=0)),
        },
        coords={"eps": changes["eps"].values},
    )


def with_measured_networks(sensitivity: xr.Dataset, measured: Mapping[str, xr.Dataset]) -> xr.Dataset:
    """`sensitivity` plus each network measured as the brain (`measured`: name -> that
    subject's round sensitivity at the same round), as population `black_box:<name>`."""
    if not measured:
        return sensitivity
    rows = [
        subject.sel(population=[BRAIN_BLACK_BOX])[["s_tilde", "ci_low", "ci_high"]]
        .assign_coords(population=[measured_as_brain(name)])
        .drop_attrs()
        for name, subject in measured.items()
    ]
    added = xr.concat(rows, dim="population").reindex(eps=sensitivity["eps"].values)
    added["random_pair_level"] = ("population", np.full(len(rows), np.nan))
    combined = xr.concat([sensitivity, added], dim="population", data_vars="minimal", coords="minimal")
    combined.attrs = sensitivity.attrs
    return combined


def transfer_ratios(subjects: Mapping[str, Sequence[xr.Dataset]]) -> xr.Dataset:
    """Every subject's (the brain's, and each network's measured as the brain) black box / white
    box ratio by round and eps, with both s~ (subject, round, eps; a network seen at another
    layer is a subject of its own, "<network>@<layer>"; a real brain has no white box: NaN); and
    the brain's s~ calibrated by the networks' ratios at the last round (its black box divided
    by the largest and the smallest of them: the range if the brain transfers as the networks do)."""
    stacked = []
    for name, rounds in subjects.items():
        series = by_round(rounds)
        stacked.append(subject_ratios(series).expand_dims(subject=[name]))
    result = xr.concat(stacked, dim="subject")
    # views of a network at another layer have their ratios in the file; calibration takes the networks'
    networks = [name for name in result["subject"].values if name != BRAIN and split_view(str(name))[1] is None]
    if BRAIN in subjects and networks:
        last = result.isel(round=-1)
        ratios = last["ratio"].sel(subject=networks)
        brain = last["black_box"].sel(subject=BRAIN, drop=True)
        # a network whose bound is not positive gives no calibration at that eps
        positive = (ratios > 0).all("subject")
        result["calibrated_low"] = (brain / ratios.max("subject")).where(positive)
        result["calibrated_high"] = (brain / ratios.min("subject")).where(positive)
    result.attrs = {"calibration": "the brain's black box over the networks' ratios at the last round"}
    return result


def subject_ratios(series: xr.Dataset) -> xr.Dataset:
    """One subject's ratio (with its interval) and both s~ by round and eps; a subject without
    a white box (a real brain) has its black box only, the rest NaN."""
    black_box = series["s_tilde"].sel(population=BRAIN_BLACK_BOX, drop=True)
    if BRAIN_WHITE_BOX not in series["population"].values:
        missing = xr.full_like(black_box, np.nan)
        return xr.Dataset(
            {
                "ratio": missing,
                "ratio_low": missing,
                "ratio_high": missing,
                "black_box": black_box,
                "white_box": missing,
            }
        )
    return xr.Dataset(
        {
            "ratio": series["transfer"],
            "ratio_low": series["transfer_low"],
            "ratio_high": series["transfer_high"],
            "black_box": black_box,
            "white_box": series["s_tilde"].sel(population=BRAIN_WHITE_BOX, drop=True),
        }
    )


def by_round(sensitivities: Sequence[xr.Dataset]) -> xr.Dataset:
    """Per-round sensitivity files stacked along `round` (1, 2, ...)."""
    rounds = [int(s.attrs["round"]) for s in sensitivities]
    stacked = xr.concat([s.drop_attrs() for s in sensitivities], dim="round", coords="minimal", compat="override")
    return stacked.assign_coords(round=rounds)
