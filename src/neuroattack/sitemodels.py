"""Site models: a linear readout from a surrogate network's penultimate features to
each recorded site, with cross-validated predictivity and split-half reliability."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from neuroattack.models import network_from_dataset
from neuroattack.readouts import LinearSiteResponse
from neuroattack.recordings import columnwise_pearson, mean_response, split_half_reliability


def _ridge(alphas: list[float]):  # type: ignore[no-untyped-def]
    return make_pipeline(StandardScaler(), RidgeCV(alphas=alphas, alpha_per_target=True))


def fit_site_models(
    features: np.ndarray,
    responses: np.ndarray,
    categories: np.ndarray,
    neuroid_id: list[str],
    reliability: np.ndarray,
    alphas: list[float],
    folds: int,
    seed: int,
) -> xr.Dataset:
    """Ridge (alpha chosen per site by efficient leave-one-out) on standardised features.

    Predictivity is the Pearson r between held-out predictions (stratified k-fold
    by category) and the trial-averaged responses; the noise ceiling is the
    Spearman-Brown split-half reliability, and `predictivity_corrected` = r / sqrt(reliability).
    """
    features = np.asarray(features, dtype=np.float64)
    responses = np.asarray(responses, dtype=np.float64)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    held_out = cross_val_predict(_ridge(alphas), features, responses, cv=splitter.split(features, categories))
    predictivity = columnwise_pearson(held_out, responses)
    model = _ridge(alphas).fit(features, responses)
    scaler, ridge = model.named_steps["standardscaler"], model.named_steps["ridgecv"]
    # Fold the standardisation into one affine map: w . (z - mu) / sd + b.
    weight = ridge.coef_ / scaler.scale_[None, :]
    bias = ridge.intercept_ - weight @ scaler.mean_
    with np.errstate(invalid="ignore", divide="ignore"):
        corrected = predictivity / np.sqrt(np.clip(reliability, 1e-6, None))
    return xr.Dataset(
        {
            "weight": (("site", "feature"), weight.astype(np.float32)),
            "bias": ("site", bias.astype(np.float32)),
            "alpha": ("site", np.broadcast_to(ridge.alpha_, (len(neuroid_id),)).astype(np.float32)),
            "predictivity": ("site", predictivity.astype(np.float32)),
            "reliability": ("site", np.asarray(reliability, dtype=np.float32)),
            "predictivity_corrected": ("site", corrected.astype(np.float32)),
        },
        coords={"neuroid_id": ("site", np.asarray(neuroid_id, dtype=str))},
    )


def fit_to_recordings(
    features: xr.Dataset,
    recordings: xr.Dataset,
    stimuli: xr.Dataset,
    alphas: Sequence[float],
    folds: int,
    reliability_splits: int,
    seed: int,
    sites: int | None = None,
) -> xr.Dataset:
    """Fit a readout from the surrogate's `features` to every recorded site; with
    `sites`, only to that many most reliable sites (a NaN reliability ranks last)."""
    unknown = sorted(set(recordings["stimulus_id"].values.tolist()) - set(stimuli["stimulus_id"].values.tolist()))
    if unknown:
        raise KeyError(f"recordings name {len(unknown)} stimuli missing from the stimulus set, e.g. {unknown[:3]}")
    reliability = split_half_reliability(recordings, reliability_splits, seed).values
    if sites is not None and sites < len(reliability):
        keep = np.sort(np.argsort(-np.nan_to_num(reliability, nan=-np.inf))[:sites])
        recordings, reliability = recordings.isel(neuroid=keep), reliability[keep]
    averaged = mean_response(recordings)
    ids = averaged["stimulus_id"].values
    fitted = fit_site_models(
        features["activation"].sel(stimulus_id=ids).values,
        averaged.values,
        stimuli["category"].sel(stimulus_id=ids).values,
        averaged["neuroid_id"].values.tolist(),
        reliability,
        list(alphas),
        folds,
        seed,
    )
    fitted.attrs["surrogate_network"] = features.attrs["network"]
    return fitted


def surrogate_response(surrogate: xr.Dataset, models: xr.Dataset, name: str = "surrogate") -> LinearSiteResponse:
    """Every site's predicted response: the surrogate network's features through its fitted readout.
    `name` labels the weights in error messages."""
    return LinearSiteResponse(network_from_dataset(surrogate, name), models["weight"].values, models["bias"].values)
