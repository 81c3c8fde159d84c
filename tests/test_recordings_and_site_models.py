"""Recordings layout, reliability, site models and the simulated brain."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import xarray as xr

from neuroattack.analysis.sensitivity import random_pair_level
from neuroattack.attacks.targeted import natural_references
from neuroattack.brain import simulated as brain
from neuroattack.brain.sitemodels import Reduction, as_affine, fit_site_models, fit_to_recordings, readout_pipeline
from neuroattack.data.recordings import make_recordings, mean_response, split_half_reliability
from neuroattack.networks.build import build_network, weights_to_dataset
from neuroattack.networks.models import Architecture


def noisy_recordings(signal: np.ndarray, noise: float, repetitions: int, seed: int):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    n_stimuli, n_sites = signal.shape
    values = signal[None] + rng.normal(0, noise, (repetitions, n_stimuli, n_sites))
    return make_recordings(
        values.reshape(-1, n_sites),
        stimulus_id=np.tile([f"s{i}" for i in range(n_stimuli)], repetitions),
        repetition=np.repeat(np.arange(repetitions), n_stimuli),
        neuroid_id=[f"n{i}" for i in range(n_sites)],
        region="IT",
        animal="m",
    )


def test_layout_and_trial_average() -> None:
    signal = np.arange(12, dtype=float).reshape(4, 3)
    recordings = noisy_recordings(signal, 0.0, 3, 0)
    assert recordings["response"].dims == ("presentation", "site")
    assert set(recordings.coords) >= {"stimulus_id", "repetition", "neuroid_id", "region", "animal"}
    assert recordings.attrs["time_window_start_ms"] == 70 and recordings.attrs["time_window_end_ms"] == 170
    np.testing.assert_allclose(mean_response(recordings).values, signal)
    assert mean_response(recordings)["stimulus_id"].values.tolist() == ["s0", "s1", "s2", "s3"]


def test_split_half_reliability_tracks_noise() -> None:
    signal = np.random.default_rng(0).normal(size=(200, 2))
    clean = split_half_reliability(noisy_recordings(signal, 0.01, 10, 1), 5, 0).values
    noisy = split_half_reliability(noisy_recordings(signal, 3.0, 10, 1), 5, 0).values
    assert np.all(clean > 0.99) and np.all(noisy < 0.8)
    # theory: Spearman-Brown of split halves equals the reliability of the full mean
    expected = 1 / (1 + 9.0 / 10)
    assert noisy.mean() == pytest.approx(expected, abs=0.1)


def test_site_models_recover_a_linear_map() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(240, 20))
    weight = rng.normal(size=(3, 20))
    responses = features @ weight.T + 5.0 + rng.normal(0, 0.1, (240, 3))
    categories = np.repeat(np.arange(6), 40)
    models = fit_site_models(features, responses, categories, ["a", "b", "c"], np.ones(3), [0.01, 1.0, 100.0], 5, 0)
    assert float(models["predictivity"].min()) > 0.99
    predicted = features @ models["weight"].values.T + models["bias"].values
    np.testing.assert_allclose(predicted, responses, atol=0.5)


@pytest.mark.parametrize("kind", ["pca", "random"])
def test_a_wide_layer_is_read_out_through_a_projection_folded_into_the_weights(kind: str) -> None:
    rng = np.random.default_rng(1)
    latent = rng.normal(size=(240, 8))  # 8 directions carry the signal among 400 features
    features = latent @ rng.normal(size=(8, 400)) + rng.normal(0, 0.05, (240, 400)) + 3.0
    responses = latent @ rng.normal(size=(8, 3)) + 5.0 + rng.normal(0, 0.1, (240, 3))
    categories = np.repeat(np.arange(6), 40)
    reduction = Reduction(kind, above=100, dims=40)
    model = readout_pipeline([0.01, 1.0, 100.0], reduction, 40, 0).fit(features, responses)
    weight, bias = as_affine(model)
    assert weight.shape == (3, 400)  # one affine map of the layer's own features
    np.testing.assert_allclose(features @ weight.T + bias, model.predict(features), rtol=1e-6, atol=1e-6)
    fitted = fit_site_models(
        features, responses, categories, ["a", "b", "c"], np.ones(3), [0.01, 1.0, 100.0], 5, 0, reduction
    )
    assert fitted.attrs["projection"] == f"{kind} to 40 features" and fitted["weight"].shape == (3, 400)
    assert float(fitted["predictivity"].min()) > 0.95
    narrow = fit_site_models(
        features[:, :90], responses, categories, ["a", "b", "c"], np.ones(3), [1.0], 5, 0, reduction
    )
    assert narrow.attrs["projection"] == "none"


def test_brain_counts_are_poisson_around_the_calibrated_mean() -> None:
    torch.manual_seed(0)
    arch = Architecture(widths=(8, 16), blocks=(1, 1), num_classes=3)
    network = build_network(arch).eval().requires_grad_(False)
    weights = weights_to_dataset(network, arch, {})
    pixels = np.random.default_rng(0).integers(0, 256, size=(64, 16, 16, 3), dtype=np.uint8)
    simulated = brain.build_brain(
        weights, pixels, n_sites=5, mean_count=4.0, baseline_count=0.5, beta=2.0, drive_offset=-0.5, seed=0
    )
    expected = brain.expected_responses(simulated).all_sites(
        torch.rand(0, 3, 16, 16).new_tensor(pixels).permute(0, 3, 1, 2) / 255
    )
    assert float(expected.mean()) == pytest.approx(4.0, rel=1e-3)
    assert float(expected.min()) >= 0.5
    recordings = brain.record(simulated, pixels, [f"s{i}" for i in range(64)], repetitions=200, seed=1)
    counts = recordings["response"].values
    assert np.all(counts == np.round(counts)) and counts.min() >= 0
    averaged = mean_response(recordings).values
    standard_error = np.sqrt(expected.numpy() / 200)
    assert np.all(np.abs(averaged - expected.numpy()) < 5 * standard_error)
    # Poisson: variance over repetitions equals the mean
    per_stimulus = counts.reshape(200, 64, 5)
    ratio = per_stimulus.var(axis=0).mean() / per_stimulus.mean()
    assert ratio == pytest.approx(1.0, abs=0.1)


# --- missing trials (NaN responses) ---------------------------------------------------------

# Noise per site: the most reliable are n1, n5, n2; n0, the least reliable, comes first.
SITE_NOISE = [3.0, 0.2, 0.3, 2.0, 2.5, 0.25]


def linear_world(nan_fraction: float, seed: int = 0):  # type: ignore[no-untyped-def]
    """Features, stimuli and recordings of sites that are linear in the features, each with
    its own trial noise, and `nan_fraction` of the single-trial responses missing (NaN)."""
    rng = np.random.default_rng(seed)
    n_stimuli, n_features, repetitions = 120, 8, 10
    ids = [f"s{i:03d}" for i in range(n_stimuli)]
    activation = rng.normal(size=(n_stimuli, n_features))
    signal = activation @ rng.normal(size=(n_features, len(SITE_NOISE)))
    values = signal[None] + rng.normal(size=(repetitions, n_stimuli, len(SITE_NOISE))) * np.asarray(SITE_NOISE)
    values[rng.random(values.shape) < nan_fraction] = np.nan
    recordings = make_recordings(
        values.reshape(-1, len(SITE_NOISE)),
        stimulus_id=np.tile(ids, repetitions),
        repetition=np.repeat(np.arange(repetitions), n_stimuli),
        neuroid_id=[f"n{i}" for i in range(len(SITE_NOISE))],
        region="IT",
        animal="m",
    )
    features = xr.Dataset(
        {"activation": (("stimulus_id", "unit"), activation)}, coords={"stimulus_id": ids}, attrs={"network": "net"}
    )
    stimuli = xr.Dataset(coords={"stimulus_id": ids, "category": ("stimulus_id", [f"c{i % 4}" for i in range(120)])})
    return features, recordings, stimuli


def fit(world, sites: int | None) -> xr.Dataset:  # type: ignore[no-untyped-def]
    features, recordings, stimuli = world
    return fit_to_recordings(
        features, recordings, stimuli, [0.1, 10.0], folds=3, reliability_splits=5, seed=0, sites=sites
    )


def test_nan_responses_keep_the_most_reliable_sites() -> None:
    models = fit(linear_world(nan_fraction=0.05), sites=3)
    assert models["neuroid_id"].values.tolist() == ["n1", "n2", "n5"]
    assert bool(np.isfinite(models["reliability"]).all()) and bool(np.isfinite(models["predictivity"]).all())
    assert float(models["reliability"].min()) > 0.9
    assert bool(np.isfinite(models["weight"]).all())


def test_split_half_reliability_ignores_missing_trials() -> None:
    complete = split_half_reliability(linear_world(0.0)[1], 5, 0).values
    missing = split_half_reliability(linear_world(0.05)[1], 5, 0).values
    assert bool(np.isfinite(missing).all())
    np.testing.assert_allclose(missing, complete, atol=0.05)


def test_sites_with_too_few_valid_trials_are_dropped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    features, recordings, stimuli = linear_world(nan_fraction=0.05)
    response = recordings["response"].values.copy()
    rng = np.random.default_rng(1)
    response[rng.random(len(response)) < 0.9, 3] = np.nan  # n3: most stimuli keep fewer than 2 valid trials
    response[:, 4] = 2.0  # n4: no variance, so no finite reliability
    recordings["response"].values = response
    with caplog.at_level(logging.WARNING):
        models = fit((features, recordings, stimuli), sites=None)
    assert models["neuroid_id"].values.tolist() == ["n0", "n1", "n2", "n5"]
    assert models.attrs["unusable_sites"] == ["n3", "n4"]
    assert "recordings: dropped 2 of 6 sites: fewer than 2 valid repetitions for more than 50% of the stimuli" in (
        caplog.text
    )
    assert bool(np.isfinite(models["reliability"]).all())
    recordings["response"].values = np.full_like(response, np.nan)
    with pytest.raises(ValueError, match=r"^clean\.nc: none of the 6 recorded sites is usable"):
        fit_to_recordings(features, recordings, stimuli, [1.0], folds=3, reliability_splits=2, seed=0, name="clean.nc")


def test_a_stimulus_without_valid_trials_is_left_out_of_that_site_only() -> None:
    features, recordings, stimuli = linear_world(nan_fraction=0.0)
    response = recordings["response"].values.copy()
    response[recordings["stimulus_id"].values == "s007", 1] = np.nan  # n1 never saw s007
    recordings["response"].values = response
    models = fit((features, recordings, stimuli), sites=None)
    assert models["neuroid_id"].values.tolist() == [f"n{i}" for i in range(6)]
    assert bool(np.isfinite(models["weight"]).all()) and float(models["predictivity"].sel(site=1)) > 0.9


def test_random_pair_level_and_natural_references_skip_missing_means() -> None:
    responses = np.random.default_rng(0).normal(size=(50, 3))
    responses[4, 1] = np.nan
    assert np.isfinite(random_pair_level(responses, 200, 0))
    labels = np.array(["a", "b"] * 25)
    references = natural_references(responses, responses, labels, np.array(["a"] * 3), np.array(["b"] * 3))
    for name, values in references.items():
        assert bool(np.isfinite(values).all()), name


def test_the_repetition_tensor_keeps_each_stimulus_trials_in_recorded_order_padded_with_nan() -> None:
    from neuroattack.data.recordings import repetition_tensor

    # interleaved presentations, a stimulus shown fewer times than the others
    shown = ["b", "a", "b", "c", "a", "b", "c", "a"]
    response = np.arange(len(shown) * 2, dtype=np.float64).reshape(-1, 2)
    recordings = xr.Dataset(
        {"response": (("presentation", "site"), response)},
        coords={"stimulus_id": ("presentation", shown), "neuroid_id": ("site", ["n0", "n1"])},
    )
    tensor, ids = repetition_tensor(recordings)
    assert ids == ["b", "a", "c"]  # first seen first
    expected = np.full((3, 3, 2), np.nan)
    for i, sid in enumerate(ids):
        rows = response[[k for k, s in enumerate(shown) if s == sid]]
        expected[i, : len(rows)] = rows
    np.testing.assert_array_equal(tensor, expected)
