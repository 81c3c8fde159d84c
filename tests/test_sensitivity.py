"""Sensitivity estimators: unbiasedness, white-box maximum, references, bootstrap."""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from neuroattack.analysis import sensitivity as sens

DIMS = ("site", "image", "eps", "direction")


def synthetic(true_change: float, noise: float, n_images: int, seed: int) -> tuple[xr.DataArray, xr.DataArray]:
    """A surrogate that predicts a +/- change of the right sign; noisy recordings of it."""
    rng = np.random.default_rng(seed)
    shape = (5, n_images, 2, 2)
    predicted = np.empty(shape)
    predicted[..., 0] = rng.uniform(0.5, 1.0, shape[:3])  # increase
    predicted[..., 1] = -rng.uniform(0.2, 0.9, shape[:3])  # decrease
    truth = np.sign(predicted) * true_change
    recorded = truth + rng.normal(0, noise, shape)
    coords = {"eps": [0.5, 1.0], "direction": list(sens.DIRECTIONS)}
    return xr.DataArray(predicted, dims=DIMS, coords=coords), xr.DataArray(recorded, dims=DIMS, coords=coords)


def test_sign_corrected_estimator_is_unbiased_where_naive_is_not() -> None:
    sigma = xr.DataArray(np.ones(5), dims="site")
    estimates, naive = [], []
    for seed in range(200):
        predicted, recorded = synthetic(true_change=0.3, noise=1.0, n_images=20, seed=seed)
        estimates.append(float(sens.sign_corrected(predicted, recorded, sigma).mean()))
        chosen = (predicted * sens.DIRECTION_SIGN).argmax("direction")
        naive.append(float(np.abs(recorded.isel(direction=chosen)).mean()))
    standard_error = np.std(estimates) / math.sqrt(len(estimates))
    assert abs(np.mean(estimates) - 0.3) < 4 * standard_error
    assert np.mean(naive) > 0.3 + 10 * standard_error  # |noisy| is biased upward


def test_sign_corrected_is_a_lower_bound_when_the_sign_is_wrong() -> None:
    predicted, recorded = synthetic(true_change=0.3, noise=0.0, n_images=10, seed=0)
    flipped = sens.sign_corrected(-predicted, recorded, xr.DataArray(np.ones(5), dims="site"))
    assert float(flipped.mean()) < 0.3


def test_white_box_takes_the_larger_objective_and_normalises() -> None:
    change = xr.DataArray(
        np.array([[[2.0, -1.0]], [[0.5, -3.0]], [[-0.1, 0.2]]]),
        dims=("unit", "eps", "direction"),
        coords={"direction": list(sens.DIRECTIONS)},
    )
    sigma = xr.DataArray([2.0, 1.0, 1.0], dims="unit")
    np.testing.assert_allclose(sens.white_box(change, sigma).values.ravel(), [1.0, 3.0, 0.0])


def test_random_pair_level_of_gaussian_units() -> None:
    responses = np.random.default_rng(0).normal(size=(4000, 10))
    # E|X - X'| / sigma = 2 / sqrt(pi) for independent Gaussians
    assert abs(sens.random_pair_level(responses, 20000, 0) - 2 / math.sqrt(math.pi)) < 0.03


def test_summarize_mean_and_bootstrap_interval() -> None:
    rng = np.random.default_rng(1)
    values = xr.DataArray(
        rng.normal(1.0, 0.5, size=(30, 40, 2)), dims=("unit", "image", "eps"), coords={"eps": [0.1, 1.0]}
    )
    summary = sens.summarize(values, bootstrap=500, seed=0)
    np.testing.assert_allclose(summary["s_tilde"].values, values.mean(("unit", "image")).values)
    low, value, high = summary["ci_low"].values, summary["s_tilde"].values, summary["ci_high"].values
    # resampling units and images alike gives independent values 3 sigma^2 / (units x images)
    # of variance (units', images' and their own share): a 95% width of 2 x 1.96 x that root
    width = 2 * 1.96 * math.sqrt(3 * 0.5**2 / (30 * 40))
    np.testing.assert_allclose(high - low, width, rtol=0.25)  # measured 0.89 and 0.95 of 0.098
    # central: the value splits the interval in two halves of comparable size (0.5 to 2)
    assert bool(((value - low) / (high - value) > 0.5).all() and ((value - low) / (high - value) < 2).all())
