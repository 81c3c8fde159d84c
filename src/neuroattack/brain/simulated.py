"""The in-silico monkey: a simulated IT population the workflow may only record from.

A held-out network (any network the config can name: a small ResNet of its own seed, width
and training eps, a torchvision or timm model, a factory's, a robustness checkpoint), seen at
one of its layers (default: the penultimate), feeds a fixed random readout to m sites; each
site's expected spike count is a softplus-rectified drive scaled to realistic counts;
recordings are Poisson counts over repetitions. A network measured like for like beside real
recordings gets their noise instead (`with_matched_noise`): Gaussian, per site, sized so that
each site's split-half reliability is one of the recorded sites'.

`record` is the only way the workflow observes the brain. `expected_responses`
reads the brain's parameters directly and exists for white-box validation only.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from neuroattack.config import PENULTIMATE
from neuroattack.data.recordings import MIN_VALID_REPETITIONS, make_recordings, valid_repetitions
from neuroattack.networks.build import network_from_dataset
from neuroattack.networks.readouts import LinearSiteResponse, infer

READOUT_VARIABLES = ["readout_weight", "readout_bias"]


def build_brain(
    network_weights: xr.Dataset,
    calibration_pixels: np.ndarray,
    n_sites: int,
    mean_count: float,
    baseline_count: float,
    beta: float,
    drive_offset: float,
    seed: int,
    layer: str = PENULTIMATE,
) -> xr.Dataset:
    """Fix a random readout of the held-out network's features at `layer`, calibrated so that
    drives are standardised over the calibration images (then shifted by `drive_offset`) and
    the mean count is `mean_count`. `network_weights` is the held-out network's weights file."""
    network = network_from_dataset(network_weights, "brain.network", layer)
    rng = np.random.default_rng(seed)
    features = infer(network.features, calibration_pixels).astype(np.float64)
    raw = rng.standard_normal((n_sites, features.shape[1])) / np.sqrt(features.shape[1])
    drive = features @ raw.T
    scale = drive.std(axis=0).clip(min=1e-8)
    weight = raw / scale[:, None]
    bias = -drive.mean(axis=0) / scale + drive_offset
    rectified = np.logaddexp(0.0, beta * (features @ weight.T + bias)) / beta
    gain = (mean_count - baseline_count) / rectified.mean()
    ds = network_weights.copy()
    ds["readout_weight"] = (("site", "feature"), weight.astype(np.float32))
    ds["readout_bias"] = ("site", bias.astype(np.float32))
    ds = ds.assign_coords(neuroid_id=("site", [f"site{i:03d}" for i in range(n_sites)]))
    ds.attrs.update(
        {
            "gain": float(gain),
            "baseline_count": float(baseline_count),
            "beta": float(beta),
            "layer": layer,
            "role": "simulated brain",
        }
    )
    return ds


def _site_model(brain: xr.Dataset) -> LinearSiteResponse:
    # a brain built before it could read out at another layer has no `layer`: the penultimate
    layer = str(brain.attrs.get("layer", PENULTIMATE))
    network = network_from_dataset(brain.drop_vars(READOUT_VARIABLES), "brain", layer)
    rectify = {
        "gain": float(brain.attrs["gain"]),
        "baseline": float(brain.attrs["baseline_count"]),
        "beta": float(brain.attrs["beta"]),
    }
    model = LinearSiteResponse(network, brain["readout_weight"].values, brain["readout_bias"].values, rectify)
    return model.eval().requires_grad_(False)


def expected_responses(brain: xr.Dataset) -> LinearSiteResponse:
    """The brain's noise-free expected counts as a differentiable model (validation only)."""
    return _site_model(brain)


RELIABILITY_RANGE = (0.02, 0.98)  # matched reliabilities are clipped here: no infinite or zero noise


def with_matched_noise(
    brain: xr.Dataset, calibration_pixels: np.ndarray, reliability: np.ndarray, repetitions: int, seed: int
) -> xr.Dataset:
    """`brain` recorded with Gaussian noise instead of Poisson: each site gets one of the
    `reliability` values (Spearman-Brown corrected split-half reliabilities of recorded sites,
    one per brain site, in a seeded random order) and the noise s.d. at which the mean of
    `repetitions` presentations has that reliability over the calibration images:
    r = v / (v + sd^2 / n), so sd = sqrt(n v (1 - r) / r), v the site's variance of expected counts."""
    if len(reliability) != brain.sizes["site"]:
        raise ValueError(f"{len(reliability)} reliabilities for {brain.sizes['site']} sites; give one per site")
    rate = infer(_site_model(brain).all_sites, calibration_pixels).astype(np.float64)
    target = np.random.default_rng(seed).permutation(np.clip(np.asarray(reliability, float), *RELIABILITY_RANGE))
    sd = np.sqrt(repetitions * rate.var(axis=0) * (1 - target) / target)
    matched = brain.copy()
    matched["noise_sd"] = ("site", sd.astype(np.float32))
    matched["matched_reliability"] = ("site", target.astype(np.float32))
    matched.attrs.update({"noise": "gaussian, matched to recorded reliabilities", "repetitions": int(repetitions)})
    return matched


def matched_repetitions(recordings: xr.Dataset, sites: xr.Dataset) -> int:
    """The repetitions a measured network is recorded with beside real `recordings`: the median
    number of valid presentations per (stimulus, site) over the `sites` kept (their neuroid_id),
    at least MIN_VALID_REPETITIONS (its sites' split-half reliabilities need a trial a half)."""
    kept = recordings.isel(site=np.isin(recordings["neuroid_id"].values, sites["neuroid_id"].values))
    return max(MIN_VALID_REPETITIONS, int(np.median(valid_repetitions(kept).values)))


def record(brain: xr.Dataset, pixels: np.ndarray, stimulus_ids: list[str], repetitions: int, seed: int) -> xr.Dataset:
    """Show uint8 images `repetitions` times each; return Poisson spike counts (recordings), or
    with a matched brain (`with_matched_noise`) expected counts plus its Gaussian noise."""
    rate = infer(_site_model(brain).all_sites, pixels).astype(np.float64)
    rng = np.random.default_rng(seed)
    expected = np.repeat(rate[None], repetitions, axis=0)  # (rep, stimulus, site)
    counts: np.ndarray
    if "noise_sd" in brain:
        counts = expected + rng.standard_normal(expected.shape) * brain["noise_sd"].values.astype(np.float64)
    else:
        counts = rng.poisson(expected)
    n_stimuli, n_sites = rate.shape
    return make_recordings(
        counts.reshape(repetitions * n_stimuli, n_sites),
        stimulus_id=np.tile(np.asarray(stimulus_ids, dtype=str), repetitions),
        repetition=np.repeat(np.arange(repetitions), n_stimuli),
        neuroid_id=brain["neuroid_id"].values.tolist(),
        region="IT",
        animal="in-silico",
    )
