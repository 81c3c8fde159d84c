"""Predictivity in Brain-Score's convention for MajajHong2015 IT: PLS regression, stratified
splits, Pearson r per site on the held-out stimuli, median over sites, mean over splits;
ceiling = split-half reliability (median over sites, Spearman-Brown), ceiled score = r^2 / ceiling."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cross_decomposition import PLSRegression
from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit

from neuroattack.analysis.sensitivity import interval
from neuroattack.data.recordings import columnwise_pearson


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


def pls_components(units: int, categories: np.ndarray, settings: PredictivitySettings, seed: int) -> int:
    """The PLS components `split_correlations` uses for features of `units` units."""
    folds = stratified_splits(categories, settings.splits, settings.test_fraction, seed)
    return usable_components(settings.components, len(folds[0][0]), units)


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
