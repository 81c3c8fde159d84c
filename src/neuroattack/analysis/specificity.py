"""Off-target specificity: how far a perturbation aimed at one site moves the other sites.

The rig (and the simulated brain) records every site for every image, so each perturbed image
made for one target site also measures every other site's change (`loop.every_site_changes`).
Per (target, image, eps), in the direction the black-box estimate shows (the one whose
predicted change is larger):

- the target's change is the black-box estimate itself, sign(predicted) x recorded / sigma;
- the off-target change is the root mean square over the other sites of the noise-corrected
  squared change / sigma^2 (unbiased in its square, as the recorded random baseline is; the
  site models predict no sign for the sites they were not aimed at).

The specificity ratio is the mean target change over the off-target root mean square: a lower
bound on the target change is divided by a quantity at least the mean |change| of the other
sites, so the ratio errs low. Where the other sites' change cannot be told from zero (its
noise-corrected mean square is at most 0) the ratio is infinite. A random direction of the same
norm (the round's random-direction images) moves every site by `random_change`: off-target
changes near it mean the perturbation moved the other sites no more than chance would. In
silico the same numbers from the brain's noise-free responses (`true_*`) say what the
estimates should find.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import xarray as xr

from neuroattack.analysis.sensitivity import CONFIDENCE, DIRECTION_SIGN

Statistic = Callable[[Mapping[str, np.ndarray]], dict[str, np.ndarray]]


def chosen_direction(responses: xr.Dataset) -> xr.DataArray:
    """Per (site, image, eps): the direction whose predicted change is larger (what the
    black-box estimate shows)."""
    return (responses["predicted_change"] * DIRECTION_SIGN).argmax("direction")


def perturbation_changes(responses: xr.Dataset, sigma: np.ndarray, truth: bool = False) -> dict[str, np.ndarray]:
    """Per (target, image, eps): `target` (sign-corrected change of the target / sigma) and
    `offtarget_squared` (mean over the other sites of the squared change / sigma^2; noise-corrected
    from recordings, or exact with `truth`: from the noise-free `every_site_true_change`)."""
    chosen = chosen_direction(responses)
    sign = np.sign(responses["predicted_change"].isel(direction=chosen).values)
    if truth:
        change = responses["every_site_true_change"].isel(direction=chosen).values.astype(np.float64)
        squared, own_change = change**2, np.einsum("tiet->tie", change)
    else:
        squared = responses["every_site_squared_change"].isel(direction=chosen).values.astype(np.float64)
        own_change = responses["recorded_change"].isel(direction=chosen).values  # as the black-box estimate's
    own = np.eye(len(sigma), dtype=bool)[:, None, None, :]  # (target, 1, 1, recorded_site)
    target = own_change * sign / sigma[:, None, None]
    normalised = np.where(own, np.nan, squared / sigma**2)
    return {"target": target, "offtarget_squared": np.nanmean(normalised, axis=3)}


def ratio_statistic(values: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per eps: the mean target change, the off-target root mean square and their ratio."""
    target = np.nanmean(values["target"], axis=(0, 1))
    offtarget = np.sqrt(np.clip(np.nanmean(values["offtarget_squared"], axis=(0, 1)), 0.0, None))
    with np.errstate(divide="ignore", invalid="ignore"):  # no off-target change measurable: infinite
        ratio = target / offtarget
    return {"target_change": target, "offtarget_change": offtarget, "specificity": ratio}


def two_way_bootstrap(
    values: Mapping[str, np.ndarray], statistic: Statistic, bootstrap: int, seed: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The central CONFIDENCE interval of `statistic` over resamples of the first two axes
    (targets and images, as `sensitivity.summarize` resamples units and images)."""
    first = next(iter(values.values()))
    rng = np.random.default_rng(seed)
    samples: dict[str, list[np.ndarray]] = {}
    for _ in range(bootstrap):
        targets = rng.integers(first.shape[0], size=first.shape[0])
        images = rng.integers(first.shape[1], size=first.shape[1])
        for name, value in statistic({k: v[targets][:, images] for k, v in values.items()}).items():
            samples.setdefault(name, []).append(value)
    tail = (1 - CONFIDENCE) / 2

    def quantile(drawn: list[np.ndarray], level: float) -> np.ndarray:
        # no interpolation: a ratio's resamples may be infinite, and inf - inf would be NaN
        value: np.ndarray = np.nanquantile(np.stack(drawn), level, axis=0, method="inverted_cdf")
        return value

    return {name: (quantile(drawn, tail), quantile(drawn, 1 - tail)) for name, drawn in samples.items()}


def specificity(responses: xr.Dataset, sigma: np.ndarray, bootstrap: int, seed: int) -> xr.Dataset:
    """One round's off-target specificity per eps, with intervals (sigma: each site's spread over
    the clean recordings, in the responses' site order)."""
    sigma = np.asarray(sigma, dtype=np.float64)
    data: dict[str, tuple[str, np.ndarray]] = {}
    sources = {"": False, "true_": True} if "every_site_true_change" in responses else {"": False}
    for prefix, truth in sources.items():
        values = perturbation_changes(responses, sigma, truth)
        point = ratio_statistic(values)
        intervals = two_way_bootstrap(values, ratio_statistic, bootstrap, seed)
        for name, estimate in point.items():
            data[prefix + name] = ("eps", estimate)
            data[f"{prefix}{name}_low"] = ("eps", intervals[name][0])
            data[f"{prefix}{name}_high"] = ("eps", intervals[name][1])
        per_perturbation = np.sqrt(np.clip(values["offtarget_squared"], 0.0, None))
        data[prefix + "median_offtarget_change"] = ("eps", np.nanmedian(per_perturbation, axis=(0, 1)))
    random = responses["random_squared_change"].transpose("site", "image", "eps").values / sigma[:, None, None] ** 2
    data["random_change"] = ("eps", np.sqrt(np.clip(np.nanmean(random, axis=(0, 1)), 0.0, None)))
    return xr.Dataset(data, coords={"eps": responses["eps"].values}, attrs={"bootstrap": bootstrap})
