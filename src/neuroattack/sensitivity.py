"""Normalised adversarial sensitivity s~(eps) (DESIGN.md section 1).

Every estimator returns per-sample normalised changes with dims
(unit, image, eps); `summarize` averages them over units and images and adds a
two-way (units x images) bootstrap confidence interval.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

DIRECTIONS = ("increase", "decrease")
DIRECTION_SIGN = xr.DataArray([1.0, -1.0], dims="direction", coords={"direction": list(DIRECTIONS)})


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
    return np.sign(predicted_chosen) * recorded_chosen / sigma


def random_pair_level(responses: np.ndarray, pairs: int, seed: int) -> float:
    """Mean over units of E|r(x) - r(x')| / sigma for random pairs of clean images.
    `responses` is (images, units)."""
    responses = np.asarray(responses, dtype=np.float64)
    sigma = responses.std(axis=0, ddof=1)
    usable = sigma > 0
    rng = np.random.default_rng(seed)
    first = rng.integers(len(responses), size=pairs)
    second = (first + rng.integers(1, len(responses), size=pairs)) % len(responses)
    gaps = np.abs(responses[first][:, usable] - responses[second][:, usable]) / sigma[usable]
    return float(gaps.mean())


def summarize(normalized: xr.DataArray, bootstrap: int, seed: int, confidence: float = 0.95) -> xr.Dataset:
    """s~(eps) = mean over units and images, with a units x images bootstrap CI."""
    values = normalized.transpose("unit", "image", "eps").values.astype(np.float64)
    n_units, n_images, _ = values.shape
    rng = np.random.default_rng(seed)
    samples = np.empty((bootstrap, values.shape[2]))
    for b in range(bootstrap):
        units = rng.integers(n_units, size=n_units)
        images = rng.integers(n_images, size=n_images)
        samples[b] = np.nanmean(values[units][:, images], axis=(0, 1))
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
