"""Surrogate screening: CKA, Brain-Score-convention predictivity, the noise-corrected
population change, and the choice of `surrogate.network: auto`."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import scipy.stats
import xarray as xr
from sklearn.cross_decomposition import PLSRegression
from sklearn.model_selection import StratifiedShuffleSplit

from neuroattack import screening


def synthetic(seed: int = 0, stimuli: int = 80, units: int = 40, sites: int = 9) -> tuple[np.ndarray, ...]:
    """Features, responses made from them (plus noise), categories (8 of 10 stimuli each)."""
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((stimuli, units))
    responses = features @ rng.standard_normal((units, sites)) * 0.3 + rng.standard_normal((stimuli, sites))
    categories = np.repeat([f"c{i}" for i in range(stimuli // 10)], 10)
    return features, responses, categories


def test_predictivity_matches_a_direct_scikit_learn_computation() -> None:
    features, responses, categories = synthetic()
    settings = screening.PredictivitySettings(components=25, splits=10, test_fraction=0.1)
    correlations, components = screening.split_correlations(features, responses, categories, settings, seed=3)
    score = screening.predictivity(correlations, np.array([0.8]), draws=10, seed=0)
    # Brain-Score's recipe, written out: 10 stratified 90/10 splits, PLS(25, scale=False),
    # Pearson r per site on the held-out stimuli, median over sites, mean over splits.
    splitter = StratifiedShuffleSplit(n_splits=10, test_size=0.1, random_state=3)
    per_split = []
    for train, test in splitter.split(features, categories):
        predicted = PLSRegression(n_components=25, scale=False).fit(features[train], responses[train]).predict(
            features[test]
        )
        per_site = [scipy.stats.pearsonr(predicted[:, s], responses[test, s])[0] for s in range(responses.shape[1])]
        per_split.append(np.median(per_site))
    direct = float(np.mean(per_split))
    assert components == 25
    assert abs(score["predictivity_r"] - direct) < 1e-6
    assert abs(score["predictivity"] - direct**2 / 0.8) < 1e-6
    assert score["predictivity_r_low"] <= score["predictivity_r"] <= score["predictivity_r_high"]


def test_pls_components_are_capped_at_what_the_data_allow() -> None:
    features, responses, categories = synthetic(units=6)
    settings = screening.PredictivitySettings(components=25, splits=3, test_fraction=0.1)
    _, components = screening.split_correlations(features, responses, categories, settings, seed=0)
    assert components == 6
    assert screening.usable_components(25, train_rows=12, features=100) == 11


def test_ceiling_is_the_spearman_brown_corrected_median_split_half_correlation() -> None:
    rng = np.random.default_rng(1)
    signal = rng.standard_normal((60, 1, 5))
    repetitions = signal + rng.standard_normal((60, 20, 5))  # reliability of a 20-trial mean: 20 / 21
    ceilings = screening.ceiling_per_split(repetitions, splits=10, seed=0)
    assert ceilings.shape == (10,)
    assert 0.85 < float(ceilings.mean()) < 0.99


def test_cka_is_one_for_identical_and_invariant_to_scaling_and_rotation() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((50, 12))
    y = x @ rng.standard_normal((12, 7)) + 0.5 * rng.standard_normal((50, 7))
    rotation, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    base = screening.linear_cka(x, y)
    assert screening.linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    assert screening.linear_cka(3.7 * x, y) == pytest.approx(base, abs=1e-12)
    assert screening.linear_cka(x @ rotation, 0.2 * y) == pytest.approx(base, abs=1e-12)
    assert screening.linear_cka(x, rng.standard_normal((50, 7))) < base < 1.0
    value, low, high = screening.bootstrap_cka(x, y, draws=200, seed=0)
    assert value == base and low < value < high


def scores(**criteria: list[float]) -> xr.Dataset:
    return xr.Dataset(
        {name: ("candidate", values) for name, values in criteria.items()}, coords={"candidate": ["a", "b", "c"]}
    )


def test_auto_picks_the_best_candidate_under_the_criterion() -> None:
    table = scores(cka=[0.2, 0.9, 0.5], predictivity=[0.6, 0.1, np.nan], transfer=[np.nan] * 3)
    assert screening.choose(table, "cka") == "b"
    assert screening.choose(table, "predictivity") == "a"
    with pytest.raises(ValueError, match=r"no candidate has a finite transfer score.*screening.criterion"):
        screening.choose(table, "transfer")
    with pytest.raises(ValueError, match=r"screening\.criterion 'rsa'"):
        screening.choose(table, "rsa")


def test_the_network_that_made_the_responses_wins_on_cka_and_predictivity() -> None:
    source, responses, categories = synthetic(seed=4, units=30)
    unrelated = np.random.default_rng(5).standard_normal(source.shape)
    settings = screening.PredictivitySettings(components=10, splits=5, test_fraction=0.1)
    table: dict[str, list[float]] = {"cka": [], "predictivity": []}
    for features in (unrelated, source):
        table["cka"].append(screening.linear_cka(features, responses))
        correlations, _ = screening.split_correlations(features, responses, categories, settings, seed=0)
        table["predictivity"].append(screening.predictivity(correlations, np.array([1.0]), 10, 0)["predictivity"])
    named = xr.Dataset({k: ("candidate", v) for k, v in table.items()}, coords={"candidate": ["unrelated", "source"]})
    assert screening.choose(named, "cka") == "source"
    assert screening.choose(named, "predictivity") == "source"


def test_the_noise_corrected_population_change_is_unbiased() -> None:
    rng = np.random.default_rng(6)
    images, repetitions, sites = 400, 10, 8
    sigma = np.full(sites, 2.0)
    clean = 5 + 3 * rng.standard_normal((images, repetitions, sites))
    same = 5 + 3 * rng.standard_normal((images, repetitions, sites))
    shifted = 6 + 3 * rng.standard_normal((images, repetitions, sites))  # change 1 = 0.5 s.d.
    assert abs(screening.noise_corrected_change(clean, same, sigma).mean()) < 0.05
    assert screening.noise_corrected_change(clean, shifted, sigma).mean() == pytest.approx(0.25, abs=0.06)
    # the naive estimate, |mean change|^2, is biased up by the noise of the means
    naive = np.mean(np.square((same.mean(axis=1) - clean.mean(axis=1)) / sigma))
    assert naive > 0.3
    value, low, high = screening.population_change(screening.noise_corrected_change(clean, shifted, sigma), 200, 0)
    assert low <= value <= high and value == pytest.approx(0.5, abs=0.07)


def test_own_site_takes_each_perturbed_images_target_site() -> None:
    values = np.arange(2 * 3 * 2 * 3).reshape(2, 3, 2, 3)
    own = screening.own_site(values)
    assert own.shape == (2, 3, 2)
    assert own[1, 2, 0] == values[1, 2, 0, 2] and own[0, 1, 1] == values[0, 1, 1, 1]


def test_predictivity_agrees_with_brainscores_own_metric() -> None:
    if importlib.util.find_spec("brainscore_vision") is None:
        pytest.skip(
            "brainscore-vision is not installed: it needs brainscore-core, which requires numpy < 2 and "
            "xarray < 2022.6, in conflict with envs/constraints.txt (README, 'Reproducing the paper')"
        )
    from brainscore_vision.metrics.regression_correlation.metric import (  # pragma: no cover
        CrossRegressedCorrelation,
        pearsonr_correlation,
        pls_regression,
    )

    raise AssertionError(f"compare with {CrossRegressedCorrelation, pearsonr_correlation, pls_regression}")
