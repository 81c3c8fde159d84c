"""Choosing the surrogate: every candidate network screened against the recorded sites.

Three criteria per candidate (its penultimate layer):
- `cka`: linear CKA between the features and the trial-averaged site responses on the
  clean stimuli (debiased by default, `screening.cka`), with a bootstrap interval over stimuli;
- `predictivity`: Brain-Score's convention for MajajHong2015 IT (PLS regression, 10 splits
  of 90/10 stratified by category, Pearson r per site on the held-out stimuli, median over
  sites, mean over splits); ceiling = split-half reliability (median over sites,
  Spearman-Brown), ceiled score = r^2 / ceiling, raw r kept beside it;
- `transfer`: perturbations that maximise the change of the whole layer (no mapping to the
  sites at all) are shown to the brain; the noise-corrected population change they cause.

The transfer matrix: every candidate's site-model perturbations evaluated on every other
candidate's site models and on the brain, relative to what the target's own attack achieves.
`surrogate.network: auto` takes the candidate with the best score under `criterion`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr
from sklearn.cross_decomposition import PLSRegression
from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit

from neuroattack.analysis.sensitivity import CONFIDENCE, interval
from neuroattack.analysis.transfer import Candidate, transfer_scores
from neuroattack.attacks.settings import AttackSettings
from neuroattack.brain.sitemodels import fit_to_recordings
from neuroattack.data.recordings import aligned_sites, columnwise_pearson, mean_response, repetition_tensor
from neuroattack.networks.build import network_from_dataset
from neuroattack.networks.features import features_layer

log = logging.getLogger(__name__)

CRITERIA = ("predictivity", "cka", "transfer")


# --- CKA ---------------------------------------------------------------------------------


CKA_FORMS = ("debiased", "biased")  # screening.cka: debiased (the default, as Brain-Score's cka since 2026) or biased


def linear_cka(x: np.ndarray, y: np.ndarray, form: str = "debiased") -> float:
    """Linear centred kernel alignment between two (stimuli x units) matrices: 1 for the same
    representation, invariant to isotropic scaling and orthogonal transforms of either.
    `debiased` uses the unbiased HSIC estimator (Song et al. 2012), whose value does not drift
    upward with the number of units relative to stimuli; `biased`, the plug-in estimator
    (Kornblith et al. 2019)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if form == "biased":
        x, y = x - x.mean(axis=0), y - y.mean(axis=0)
        cross = np.linalg.norm(y.T @ x) ** 2
        denominator = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
        return float(cross / denominator) if denominator > 0 else float("nan")
    if form != "debiased":
        raise ValueError(f"screening.cka {form!r}: use one of {', '.join(CKA_FORMS)}")
    if len(x) < 4:
        raise ValueError(f"the debiased CKA needs at least 4 stimuli, got {len(x)}; use screening.cka: biased")
    k, l_ = _zero_diagonal(x @ x.T), _zero_diagonal(y @ y.T)
    denominator = np.sqrt(_unbiased_hsic(k, k) * _unbiased_hsic(l_, l_))
    return float(_unbiased_hsic(k, l_) / denominator) if denominator > 0 else float("nan")


def _zero_diagonal(gram: np.ndarray) -> np.ndarray:
    gram = gram.copy()
    np.fill_diagonal(gram, 0.0)
    return gram


def _unbiased_hsic(k: np.ndarray, l_: np.ndarray) -> float:
    """Song et al. (2012)'s unbiased HSIC of two Gram matrices with zeroed diagonals (up to the
    factor 1/(n(n-3)), which cancels in CKA)."""
    n = len(k)
    k_sums, l_sums = k.sum(axis=0), l_.sum(axis=0)
    return float(np.sum(k * l_) + k_sums.sum() * l_sums.sum() / ((n - 1) * (n - 2)) - 2 * (k_sums @ l_sums) / (n - 2))


def bootstrap_cka(
    x: np.ndarray, y: np.ndarray, draws: int, seed: int, form: str = "debiased"
) -> tuple[float, float, float]:
    """CKA and its bootstrap interval over stimuli (rows resampled with replacement)."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(len(x), size=(draws, len(x)))
    samples = np.array([linear_cka(x[drawn], y[drawn], form) for drawn in rows])
    return (linear_cka(x, y, form), *interval(samples))


# --- predictivity in Brain-Score's convention ---------------------------------------------


@dataclass(frozen=True)
class PredictivitySettings:
    """Brain-Score's MajajHong2015 IT-pls: PLS with 25 components, 10 splits of 90/10."""

    components: int = 25
    splits: int = 10
    test_fraction: float = 0.1


def stratified_splits(
    categories: np.ndarray, splits: int, test_fraction: float, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) row indices of `splits` random splits, stratified by category."""
    classes, held_out = len(set(np.asarray(categories).tolist())), int(np.ceil(test_fraction * len(categories)))
    if held_out < classes:
        raise ValueError(
            f"screening.test_fraction = {test_fraction} holds out {held_out} of {len(categories)} stimuli, fewer than "
            f"their {classes} categories, so a split cannot hold one of each; raise screening.test_fraction to at "
            f"least {classes / len(categories):.2f}"
        )
    # train_size as Brain-Score gives it (test_size would round the other way for some counts)
    splitter = StratifiedShuffleSplit(n_splits=splits, train_size=1 - test_fraction, random_state=seed)
    rows = np.zeros((len(categories), 1))
    return [(train, test) for train, test in splitter.split(rows, np.asarray(categories))]


def usable_components(requested: int, train_rows: int, features: int) -> int:
    """PLS components the data allow: at most the features and one fewer than the training rows."""
    return max(1, min(requested, features, train_rows - 1))


def split_correlations(
    features: np.ndarray,
    responses: np.ndarray,
    categories: np.ndarray,
    settings: PredictivitySettings,
    seed: int,
) -> tuple[np.ndarray, int]:
    """Pearson r of every site on the held-out stimuli of every split, (splits, sites), and
    the PLS components used (scikit-learn's PLSRegression, scale=False as Brain-Score)."""
    features = np.asarray(features, dtype=np.float64)
    responses = np.asarray(responses, dtype=np.float64)
    folds = stratified_splits(categories, settings.splits, settings.test_fraction, seed)
    components = usable_components(settings.components, len(folds[0][0]), features.shape[1])
    scores = []
    for train, test in folds:
        model = PLSRegression(n_components=components, scale=False).fit(features[train], responses[train])
        predicted = np.reshape(model.predict(features[test]), (len(test), -1))
        scores.append(columnwise_pearson(predicted, responses[test]))
    return np.stack(scores), components


def ceiling_per_split(repetitions: np.ndarray, splits: int, seed: int) -> np.ndarray:
    """Brain-Score's internal consistency, one value per split: the repetitions (stimulus,
    repetition, site) split in random halves (scikit-learn's ShuffleSplit, as Brain-Score), Pearson
    r per site between the halves' means, Spearman-Brown corrected per site, median over sites."""
    splitter = ShuffleSplit(n_splits=splits, train_size=0.5, random_state=seed)
    values = []
    for half_a, half_b in splitter.split(np.zeros(repetitions.shape[1])):
        r = columnwise_pearson(np.nanmean(repetitions[:, half_a], axis=1), np.nanmean(repetitions[:, half_b], axis=1))
        values.append(float(np.nanmedian(2 * r / (1 + r))))
    return np.asarray(values)


def ceiled(r: float | np.ndarray, ceiling: float | np.ndarray) -> float | np.ndarray:
    """Brain-Score's ceiled predictivity since January 2026: explained variance r^2 / ceiling."""
    return np.square(r) / ceiling


def predictivity(correlations: np.ndarray, ceilings: np.ndarray, draws: int, seed: int) -> dict[str, float]:
    """Raw r (median over sites, mean over splits), the ceiling, the ceiled score, and bootstrap
    intervals over sites for both (the sites are resampled, the splits kept)."""

    def raw(columns: np.ndarray) -> float:
        return float(np.mean(np.nanmedian(correlations[:, columns], axis=1)))

    sites = correlations.shape[1]
    ceiling = float(np.mean(ceilings))
    r = raw(np.arange(sites))
    rng = np.random.default_rng(seed)
    samples = np.array([raw(columns) for columns in rng.integers(sites, size=(draws, sites))])
    low, high = interval(samples)
    ceiled_low, ceiled_high = interval(np.asarray(ceiled(np.clip(samples, 0, None), ceiling)))
    return {
        "predictivity_r": r,
        "predictivity_r_low": low,
        "predictivity_r_high": high,
        "ceiling": ceiling,
        "predictivity": float(ceiled(r, ceiling)),
        "predictivity_low": ceiled_low,
        "predictivity_high": ceiled_high,
    }


# --- the screening ------------------------------------------------------------------------


def choose(scores: xr.Dataset, criterion: str) -> str:
    """The candidate with the highest score under `criterion` (the first of equals)."""
    if criterion not in CRITERIA:
        raise ValueError(f"screening.criterion {criterion!r}: use one of {', '.join(CRITERIA)}")
    values = scores[criterion].values.astype(np.float64)
    if not np.isfinite(values).any():
        raise ValueError(
            f"no candidate has a finite {criterion} score, so surrogate.network: auto cannot choose by it; "
            "set screening.criterion to another criterion, or name the surrogate in surrogate.network"
        )
    return str(scores["candidate"].values[int(np.nanargmax(values))])


def screen(
    stimuli: xr.Dataset,
    recordings: xr.Dataset,
    networks: Mapping[str, xr.Dataset],
    features: Mapping[str, xr.Dataset],
    surrogate: Mapping[str, Any],
    screening: Mapping[str, Any],
    attack: AttackSettings,
    seed: int,
    sites: int | None = None,
    brain: xr.Dataset | None = None,
    repetitions: int = 0,
    recording_seed: int = 0,
    device: torch.device | None = None,
    layer_features: Mapping[str, xr.Dataset] | None = None,
) -> xr.Dataset:
    """Every criterion for every network, the transfer matrix, and the pick under each criterion.
    Without `brain` (real recordings) the criteria that need recordings of perturbed images are NaN.
    `layer_features` (surrogate.layer: auto), features of networks at other layers (each file's
    attrs name its network and layer): every network's predictivity at each of its layers
    (`layer_predictivity`), and its best layer (`best_layer`)."""
    device = device or torch.device("cpu")
    names = list(networks)
    draws = int(screening["bootstrap"])
    averaged = mean_response(recordings)
    ids = averaged["stimulus_id"].values
    candidates = [
        Candidate(
            name,
            network_from_dataset(networks[name], name, features_layer(features[name])),
            networks[name],
            features[name]["activation"].sel(stimulus_id=ids).values,
            fit_to_recordings(
                features[name],
                recordings,
                stimuli,
                surrogate["alphas"],
                int(surrogate["folds"]),
                int(surrogate["reliability_splits"]),
                seed,
                sites,
            ),
        )
        for name in names
    ]
    neuroids = candidates[0].site_models["neuroid_id"].values
    responses = aligned_sites(averaged, neuroids).values.astype(np.float64)  # (stimulus, site)
    categories = stimuli["category"].sel(stimulus_id=ids).values
    complete = np.asarray(np.isfinite(responses).all(axis=1))  # a stimulus lacking a valid trial of a site: left out
    if not complete.all():
        log.warning(
            "screening: %d of %d stimuli lack a valid trial of some site; CKA and predictivity leave them out",
            int((~complete).sum()),
            len(complete),
        )
    responses, categories = responses[complete], categories[complete]
    cka_form = str(screening.get("cka", "debiased"))
    settings = PredictivitySettings(
        int(screening["pls_components"]),
        int(screening["splits"]),
        float(screening["test_fraction"]),
    )
    repetition_values, _ = repetition_tensor(recordings)
    recorded_order = list(recordings["neuroid_id"].values.astype(str))
    site_columns = [recorded_order.index(str(n)) for n in neuroids]
    ceilings = ceiling_per_split(repetition_values[:, :, site_columns], settings.splits, seed)
    rows: dict[str, list[float]] = {}
    components = 0
    own_layer: dict[str, dict[str, float]] = {}
    for candidate in candidates:
        features_kept = candidate.features[complete]
        cka, cka_low, cka_high = bootstrap_cka(features_kept, responses, draws, seed, cka_form)
        correlations, components = split_correlations(features_kept, responses, categories, settings, seed)
        entry = {
            "cka": cka,
            "cka_low": cka_low,
            "cka_high": cka_high,
            **predictivity(correlations, ceilings, draws, seed),
        }
        for key, value in entry.items():
            rows.setdefault(key, []).append(value)
        own_layer[candidate.name] = entry
        log.info(
            "%s: CKA %.3f, predictivity r %.3f (ceiled %.3f)",
            candidate.name,
            cka,
            entry["predictivity_r"],
            entry["predictivity"],
        )
    result = xr.Dataset(
        {key: ("candidate", np.asarray(values)) for key, values in rows.items()},
        coords={"candidate": names, "neuroid_id": ("site", neuroids)},
    )
    result["training_eps"] = ("candidate", [float(networks[n].attrs.get("training_eps", np.nan)) for n in names])
    result = result.assign_coords(candidate_layer=("candidate", [features_layer(features[n]) for n in names]))
    if layer_features:
        per_layer: dict[str, dict[str, dict[str, float]]] = {name: {} for name in names}
        for other in layer_features.values():  # in the order surrogate.layers lists them
            name, layer = str(other.attrs["network"]), features_layer(other)
            kept = other["activation"].sel(stimulus_id=ids).values[complete]
            correlations, _ = split_correlations(kept, responses, categories, settings, seed)
            per_layer[name][layer] = predictivity(correlations, ceilings, draws, seed)
            log.info("%s at %s: predictivity r %.3f", name, layer, per_layer[name][layer]["predictivity_r"])
        for name in names:  # its own layer last: the penultimate, by default, is the deepest
            per_layer[name][features_layer(features[name])] = own_layer[name]
        result = result.merge(layer_scores(per_layer, names))
    result = result.merge(
        transfer_scores(
            candidates,
            stimuli,
            recordings,
            neuroids,
            screening,
            attack,
            seed,
            brain,
            repetitions,
            recording_seed,
            device,
        )
    )
    result.attrs = {
        "pls_components": components,
        "pls_components_requested": settings.components,
        "splits": settings.splits,
        "test_fraction": settings.test_fraction,
        "bootstrap": draws,
        "confidence": CONFIDENCE,
        "transfer_eps": float(screening["eps"]),
    }
    result.attrs["cka_form"] = cka_form
    for criterion in CRITERIA:
        finite = np.isfinite(result[criterion].values).any()
        result.attrs[f"pick_by_{criterion}"] = choose(result, criterion) if finite else ""
    if brain is not None:
        closeness = closeness_to_brain(result, float(brain.attrs.get("training_eps", np.nan)))
        result["distance_to_brain"] = closeness["distance_to_brain"]
        result.attrs.update(closeness.attrs)
    return result


def _best_layer(scores: Mapping[str, Mapping[str, float]]) -> str:
    """The layer with the highest ceiled predictivity (the first of equals; NaN never wins)."""
    ranked = {layer: float(np.nan_to_num(entry["predictivity"], nan=-np.inf)) for layer, entry in scores.items()}
    return max(ranked, key=ranked.__getitem__)


def layer_scores(per_layer: Mapping[str, Mapping[str, Mapping[str, float]]], names: Sequence[str]) -> xr.Dataset:
    """`layer_predictivity` (and its interval) per (candidate, layer) from each candidate's
    scores by layer (NaN where a layer was not scored), and each candidate's `best_layer`: the
    highest ceiled predictivity (Brain-Score's layer commitment)."""
    # the scored networks' layers in their order (listed, then their own), then others' own
    scored = [name for name in names if len(per_layer[name]) > 1]
    layers = list(dict.fromkeys(layer for name in [*scored, *names] for layer in per_layer[name]))
    values = {
        key: np.array([[per_layer[n].get(layer, {}).get(key, np.nan) for layer in layers] for n in names])
        for key in ("predictivity", "predictivity_low", "predictivity_high")
    }
    best = [_best_layer(per_layer[n]) for n in names]
    return xr.Dataset(
        {
            **{f"layer_{key}": (("candidate", "layer"), value) for key, value in values.items()},
            "best_layer": ("candidate", best),
        },
        coords={"candidate": list(names), "layer": layers},
    )


def best_layer_features(screening: xr.Dataset, network: str, features: Mapping[str, xr.Dataset]) -> xr.Dataset:
    """Of `features` (one file per layer of `network`), the one at the screening's `best_layer`
    for it, marked as chosen."""
    if "best_layer" not in screening:
        raise ValueError("the screening file has no per-layer scores; rerun it with surrogate.layer: auto")
    best = str(screening["best_layer"].sel(candidate=network).values)
    at_best = [f for f in features.values() if features_layer(f) == best]
    if not at_best:
        raise ValueError(f"network {network}: the screening chose layer {best!r}, but no features file is at it")
    chosen = at_best[0].copy()
    predictivity = float(screening["layer_predictivity"].sel(candidate=network, layer=best))
    chosen.attrs["layer_chosen_by"] = f"the screening's ceiled predictivity ({predictivity:.3f})"
    return chosen


def closeness_to_brain(scores: xr.Dataset, brain_eps: float) -> xr.Dataset:
    """In silico the answer is known: `distance_to_brain` = |training eps - the brain network's|,
    and per criterion the Spearman correlation between its scores and closeness (-distance):
    1 when the criterion ranks the candidates exactly by closeness to the brain."""
    distance = np.abs(scores["training_eps"].values.astype(np.float64) - brain_eps)
    agreement = {}
    for criterion in CRITERIA:
        values = scores[criterion].values.astype(np.float64)
        usable = np.isfinite(values)
        closeness = pd.Series(-distance[usable])
        rho = pd.Series(values[usable]).corr(closeness, method="spearman") if usable.sum() > 2 else np.nan
        agreement[f"closeness_rank_correlation_{criterion}"] = float(rho)
    result = xr.Dataset({"distance_to_brain": ("candidate", distance)}, coords={"candidate": scores["candidate"]})
    result.attrs = {"brain_training_eps": brain_eps, **agreement}
    return result
