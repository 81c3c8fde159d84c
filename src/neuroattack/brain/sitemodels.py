"""Site models: a linear readout from a surrogate network's features (at its layer) to each
recorded site, with cross-validated predictivity and split-half reliability.

A layer wider than `Reduction.above` features (an early feature map of an ImageNet network:
ResNet-50's layer3 at 224 px has 200,704) is read out through a fixed linear projection to
`Reduction.dims` features, fitted on the stimuli the readout is fitted on; the projection is
folded into the readout's weights, so a site model stays one affine map of the layer's
features and the attack differentiates through it unchanged."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr
from torch import nn

from neuroattack.config import PENULTIMATE
from neuroattack.data.recordings import (
    MIN_USABLE_FRACTION,
    MIN_VALID_REPETITIONS,
    columnwise_pearson,
    mean_response,
    split_half_reliability,
    usable_sites,
)
from neuroattack.networks.build import network_from_dataset
from neuroattack.networks.features import features_layer
from neuroattack.networks.readouts import LinearSiteResponse, MeanResponse

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Reduction:
    """Above `above` features, fit on a projection to `dims`: `pca` (principal components of
    the standardised features) or `random` (a seeded Gaussian random projection)."""

    kind: str = "pca"
    above: int = 20_000  # float64 copies of 3,200 stimuli x 20,000 features: 0.5 GB each
    dims: int = 1_000

    def applies(self, features: int) -> bool:
        return features > self.above


DEFAULT_REDUCTION = Reduction()


# scikit-learn is imported where a fit needs it: the attack jobs, which import this module for
# the site models' responses, start about a second sooner without it.
def readout_pipeline(alphas: list[float], reduction: Reduction | None = None, dims: int = 0, seed: int = 0):  # type: ignore[no-untyped-def]
    from sklearn.decomposition import PCA
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.random_projection import GaussianRandomProjection

    steps = [StandardScaler()]
    if reduction is not None and reduction.kind == "pca":
        steps.append(PCA(n_components=dims, svd_solver="randomized", random_state=seed))
    elif reduction is not None and reduction.kind == "random":
        steps.append(GaussianRandomProjection(n_components=dims, random_state=seed))
    elif reduction is not None:
        raise ValueError(f"unknown projection {reduction.kind!r}: use pca or random")
    return make_pipeline(*steps, RidgeCV(alphas=alphas, alpha_per_target=True))


def as_affine(model: Any) -> tuple[np.ndarray, np.ndarray]:  # a fitted readout_pipeline pipeline
    """The pipeline as one affine map of the raw features: (weight (site, feature), bias)."""
    scaler, *projection, ridge = [step for _, step in model.steps]
    weight, bias = np.atleast_2d(ridge.coef_), np.atleast_1d(ridge.intercept_)
    if projection:  # z -> (z - centre) @ components.T: fold it into the readout
        weight_z = weight @ projection[0].components_
        bias = bias - weight_z @ getattr(projection[0], "mean_", np.zeros(weight_z.shape[1]))
        weight = weight_z
    scaled = weight / scaler.scale_[None, :]  # z = (x - mu) / sd
    return scaled, bias - scaled @ scaler.mean_


def fit_site_models(
    features: np.ndarray,
    responses: np.ndarray,
    categories: np.ndarray,
    neuroid_id: list[str],
    reliability: np.ndarray,
    alphas: list[float],
    folds: int,
    seed: int,
    reduction: Reduction = DEFAULT_REDUCTION,
) -> xr.Dataset:
    """Ridge (alpha chosen per site by efficient leave-one-out) on standardised features
    (projected first where `reduction` applies), folded into one affine map of the features.

    Predictivity is the Pearson r between held-out predictions (stratified k-fold
    by category) and the trial-averaged responses; the noise ceiling is the
    Spearman-Brown split-half reliability, and `predictivity_corrected` = r / sqrt(reliability).
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    features = np.asarray(features, dtype=np.float64)
    responses = np.asarray(responses, dtype=np.float64)
    projected = reduction if reduction.applies(features.shape[1]) else None
    # at most what the smallest training fold allows (PCA), the same in every fold and the final fit
    smallest_training_fold = len(features) - math.ceil(len(features) / folds)
    dims = min(reduction.dims, smallest_training_fold - 1)
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    model = readout_pipeline(alphas, projected, dims, seed)
    held_out = cross_val_predict(model, features, responses, cv=splitter.split(features, categories))
    held_out = np.reshape(held_out, responses.shape)  # one site comes back as a vector
    predictivity = columnwise_pearson(held_out, responses)
    model = readout_pipeline(alphas, projected, dims, seed).fit(features, responses)
    weight, bias = as_affine(model)
    ridge = model.steps[-1][1]
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
        attrs={"projection": f"{projected.kind} to {dims} features" if projected else "none"},
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
    name: str = "recordings",
    reduction: Reduction = DEFAULT_REDUCTION,
) -> xr.Dataset:
    """Fit a readout from the surrogate's `features` to every usable recorded site; with
    `sites`, only to that many most reliable ones. `name` (the recordings' file) labels messages.

    Sites that `recordings.usable_sites` rejects (too few valid repetitions, or no finite
    reliability) are dropped with a warning that counts them, before any ranking, so a NaN
    never ranks a site. A kept site's trial means use its valid trials; a stimulus with no
    valid trial of a site is left out of that site's fit only."""
    unknown = sorted(set(recordings["stimulus_id"].values.tolist()) - set(stimuli["stimulus_id"].values.tolist()))
    if unknown:
        raise KeyError(f"recordings name {len(unknown)} stimuli missing from the stimulus set, e.g. {unknown[:3]}")
    reliability = split_half_reliability(recordings, reliability_splits, seed).values
    keep, unusable = _chosen_sites(recordings, reliability, sites, name)
    recordings, reliability = recordings.isel(site=keep), reliability[keep]
    averaged = mean_response(recordings)
    ids = averaged["stimulus_id"].values
    fitted = _fit_where_recorded(
        features["activation"].sel(stimulus_id=ids).values,
        averaged.values,
        stimuli["category"].sel(stimulus_id=ids).values,
        averaged["neuroid_id"].values.tolist(),
        reliability,
        list(alphas),
        folds,
        seed,
        reduction,
    )
    fitted.attrs["surrogate_network"] = features.attrs["network"]
    fitted.attrs["surrogate_layer"] = features_layer(features)
    fitted.attrs["unusable_sites"] = unusable
    return fitted


def _chosen_sites(
    recordings: xr.Dataset, reliability: np.ndarray, sites: int | None, name: str
) -> tuple[np.ndarray, list[str]]:
    """Positions of the usable sites (the `sites` most reliable of them), in recorded order,
    and the names of the unusable ones."""
    usable = usable_sites(recordings, reliability)
    names = recordings["neuroid_id"].values.astype(str)
    if not usable.all():
        log.warning(
            "%s: dropped %d of %d sites: fewer than %d valid repetitions for more than %d%% of the stimuli, "
            "or no finite split-half reliability: %s",
            name,
            int((~usable).sum()),
            len(usable),
            MIN_VALID_REPETITIONS,
            round(100 * MIN_USABLE_FRACTION),
            ", ".join(names[~usable][:10]) + (", ..." if (~usable).sum() > 10 else ""),
        )
    keep = np.flatnonzero(usable)
    if keep.size == 0:
        raise ValueError(
            f"{name}: none of the {len(usable)} recorded sites is usable: each needs {MIN_VALID_REPETITIONS} valid "
            f"(non-NaN) repetitions for at least {round(100 * MIN_USABLE_FRACTION)}% of the stimuli and a finite "
            "split-half reliability; check the recordings (the table or assembly they come from)"
        )
    if sites is not None and sites < keep.size:
        ranked = keep[np.argsort(-reliability[keep], kind="stable")]
        keep = np.sort(ranked[:sites])
    elif sites is not None and sites > keep.size:
        log.warning("recordings.sites = %d, but only %d sites are usable: keeping those", sites, keep.size)
    return keep, names[~usable].tolist()


def _fit_where_recorded(
    features: np.ndarray,
    responses: np.ndarray,
    categories: np.ndarray,
    neuroid_id: list[str],
    reliability: np.ndarray,
    alphas: list[float],
    folds: int,
    seed: int,
    reduction: Reduction = DEFAULT_REDUCTION,
) -> xr.Dataset:
    """`fit_site_models`, each site on the stimuli it has a trial mean for (sites that
    share a pattern of missing stimuli are fitted together; without gaps, all at once)."""
    recorded = np.isfinite(responses)
    if recorded.all():
        return fit_site_models(features, responses, categories, neuroid_id, reliability, alphas, folds, seed, reduction)
    groups: dict[bytes, list[int]] = {}
    for column in range(responses.shape[1]):
        groups.setdefault(recorded[:, column].tobytes(), []).append(column)
    incomplete = int((~recorded.all(axis=0)).sum())
    log.warning("%d sites have stimuli without a valid trial; each is fitted on the stimuli it has", incomplete)
    parts = []
    for columns in groups.values():
        rows = recorded[:, columns[0]]
        parts.append(
            fit_site_models(
                features[rows],
                responses[np.ix_(rows, columns)],
                categories[rows],
                [neuroid_id[c] for c in columns],
                reliability[columns],
                alphas,
                folds,
                seed,
                reduction,
            )
        )
    order = np.argsort(np.concatenate([np.asarray(columns) for columns in groups.values()]))
    return xr.concat(parts, dim="site").isel(site=order)


def surrogate_response(surrogate: xr.Dataset, models: xr.Dataset, name: str = "surrogate") -> LinearSiteResponse:
    """Every site's predicted response: the surrogate network's features through its fitted readout.
    `name` labels the weights in error messages."""
    network = network_from_dataset(surrogate, name, str(models.attrs.get("surrogate_layer", PENULTIMATE)))
    return LinearSiteResponse(network, models["weight"].values, models["bias"].values)


def ensemble_response(surrogates: Sequence[xr.Dataset], models: Sequence[xr.Dataset]) -> nn.Module:
    """Every site's predicted response averaged over an ensemble: member k is surrogate
    network k's features through its own fitted readout (models[k]) of the same sites.
    One member is that member's response itself."""
    if len(surrogates) != len(models) or not models:
        raise ValueError(f"{len(surrogates)} surrogate networks but {len(models)} site models; give one per member")
    sites = models[0]["neuroid_id"].values.astype(str).tolist()
    for number, member in enumerate(models[1:], start=2):
        if member["neuroid_id"].values.astype(str).tolist() != sites:
            raise ValueError(
                f"ensemble member {number}'s site models ({member.attrs.get('surrogate_network', '?')}) are not "
                "fitted for the same sites, in the same order, as member 1's; fit every member on the same recordings"
            )
    members = [
        surrogate_response(network, fitted, str(fitted.attrs.get("surrogate_network", "surrogate")))
        for network, fitted in zip(surrogates, models, strict=True)
    ]
    return members[0] if len(members) == 1 else MeanResponse(members)
